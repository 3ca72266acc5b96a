"""Notebook sessions by replay.

A session keeps the code (and stdin) of its earlier blocks that ran without error; a later block
runs in a fresh child that first re-runs those blocks with their output discarded, then the new
block. We chose replay over a persistent process per session because it keeps every call in a
fresh fork with fresh limits (a crash, timeout or fork bomb in one block cannot lose or poison
the session), needs no process or memory while a session is idle, and lets any slot serve any
session. The costs: earlier blocks run again (their time counts toward the call's wall and CPU
budget, which grows by what they took), a block that raised is dropped whole (a notebook would
keep what it did before the exception), and side effects outside the process (files in /tmp)
are redone rather than kept. Each session has a fixed random seed, so `random` and
`numpy.random` give the same values on replay; clocks and process ids still differ.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Block:
    code: str
    stdin: str
    exec_s: float
    cpu_s: float


@dataclass
class Session:
    seed: int
    blocks: list[Block] = field(default_factory=list)
    used: float = 0.0


class SessionStore:
    """Sessions by id, dropped after `ttl_s` idle and beyond `max_sessions` (least recent first)."""

    def __init__(
        self,
        *,
        ttl_s: float = 1800.0,
        max_sessions: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session_id: str) -> Session:
        """The session (new if unknown or expired), marked as just used."""
        now = self.clock()
        with self._lock:
            self._expire(now)
            session = self._sessions.pop(session_id, None)
            if session is None:
                session = Session(seed=zlib.crc32(session_id.encode()))
            session.used = now
            self._sessions[session_id] = session
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
            return session

    def append(self, session_id: str, block: Block) -> None:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None:
                session.blocks.append(block)
                session.used = self.clock()

    def end(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        with self._lock:
            self._expire(self.clock())
            return len(self._sessions)

    def _expire(self, now: float) -> None:
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if now - oldest.used <= self.ttl_s:
                return
            self._sessions.popitem(last=False)
