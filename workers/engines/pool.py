"""Several engines serving one model, as one ``Engine``: prefix affinity and failover.

Every request of a trajectory extends the prompt of its first request (the rollout resends the
prompt plus everything generated and appended so far), so the pool routes by that first prompt:
a request whose prompt starts with a prompt it routed before goes where that one went, and the
engine that computed the prefix serves it from its prefix cache. A prompt it has not seen goes to
the engine with the fewest requests in flight. The samples of one problem share their first
prompt, so they share an engine too, and its cache holds the problem's prompt once.

An engine that stops answering (EngineUnavailable: refused, dropped connection, 502-504) is taken
out; the request that found it dead is sent again to another engine (the same prompt and
sampling seed: nothing generated twice is stored, since the rollout stores a trajectory only at
its end), and the prompts it held move with it. A dead engine is probed in the background and
taken back when it answers. Only when none answers does the pool raise EngineUnavailable, naming
every address and why.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import logging
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from workers.engines.base import (
    Engine,
    EngineError,
    EngineUnavailable,
    Generation,
    GenerationParams,
)

log = logging.getLogger(__name__)

# First prompts remembered (the oldest are forgotten first: a round's problems, many times over).
ROOTS_LIMIT = 100_000
REVIVE_EVERY_S = 10.0


def _address(engine: Engine) -> str:
    return getattr(engine, "base_url", None) or engine.name


class _Roots:
    """First prompts and where each went; finds the longest that a prompt starts with."""

    def __init__(self, limit: int = ROOTS_LIMIT) -> None:
        self.limit = limit
        self._where: OrderedDict[tuple[int, bytes], int] = OrderedDict()
        self._lengths: list[int] = []  # sorted, distinct
        self._per_length: dict[int, int] = {}
        self._per_member: dict[int, int] = {}

    @staticmethod
    def _digests(prompt: Sequence[int], lengths: Sequence[int]):
        data = array("i", prompt).tobytes()
        step = array("i").itemsize
        digest = hashlib.blake2b(digest_size=16)
        done = 0
        for length in lengths:
            digest.update(data[done * step : length * step])
            done = length
            yield length, digest.copy().digest()

    def find(self, prompt: Sequence[int]) -> tuple[tuple[int, bytes], int] | None:
        """The longest known first prompt that ``prompt`` starts with, and its engine."""
        usable = self._lengths[: bisect.bisect_right(self._lengths, len(prompt))]
        found = None
        for key in self._digests(prompt, usable):
            if key in self._where:
                found = key
        if found is None:
            return None
        self._where.move_to_end(found)
        return found, self._where[found]

    def add(self, prompt: Sequence[int], member: int) -> tuple[int, bytes]:
        key = next(self._digests(prompt, [len(prompt)]))
        if key in self._where:
            self.move(key, member)
            return key
        if key[0] not in self._per_length:
            bisect.insort(self._lengths, key[0])
        self._per_length[key[0]] = self._per_length.get(key[0], 0) + 1
        self._where[key] = member
        self._per_member[member] = self._per_member.get(member, 0) + 1
        while len(self._where) > self.limit:
            (length, _), gone = self._where.popitem(last=False)
            self._per_member[gone] -= 1
            self._per_length[length] -= 1
            if not self._per_length[length]:
                del self._per_length[length]
                self._lengths.remove(length)
        return key

    def move(self, key: tuple[int, bytes], member: int) -> None:
        self._per_member[self._where[key]] -= 1
        self._per_member[member] = self._per_member.get(member, 0) + 1
        self._where[key] = member

    def count(self, member: int) -> int:
        return self._per_member.get(member, 0)


class PoolEngine:
    """An ``Engine`` over ``members`` (engines for the same model at different addresses)."""

    def __init__(self, members: Sequence[Engine], *, revive_every_s: float = REVIVE_EVERY_S):
        if not members:
            raise ValueError("a pool needs at least one engine")
        self.members = list(members)
        self.addresses = [_address(member) for member in self.members]
        self.name = self.members[0].name
        self.tokenizer: Any = self.members[0].tokenizer
        self.max_model_len = min(member.max_model_len for member in self.members)
        self.revive_every_s = revive_every_s
        self.in_flight = [0] * len(self.members)
        self.requests = [0] * len(self.members)  # sent to each member, for benchmarks and tests
        self.down: dict[int, str] = {}  # member index -> why it was taken out
        self._roots = _Roots()
        self._revivers: dict[int, asyncio.Task] = {}

    def _why_none(self) -> str:
        return "; ".join(f"{self.addresses[i]}: {why}" for i, why in sorted(self.down.items()))

    def _least_loaded(self) -> int:
        live = [i for i in range(len(self.members)) if i not in self.down]
        if not live:
            raise EngineUnavailable(f"no engine of the pool answers ({self._why_none()})")
        return min(live, key=lambda i: (self.in_flight[i], self._roots.count(i), i))

    def route(self, prompt_ids: Sequence[int]) -> int:
        """The member for a request: where its first prompt went, else the least loaded."""
        found = self._roots.find(prompt_ids)
        if found is None:
            member = self._least_loaded()
            self._roots.add(prompt_ids, member)
            return member
        key, member = found
        if member in self.down:
            member = self._least_loaded()
            self._roots.move(key, member)
        return member

    def _take_out(self, member: int, exc: EngineError) -> None:
        if member in self.down:
            return
        self.down[member] = str(exc)
        live = [self.addresses[i] for i in range(len(self.members)) if i not in self.down]
        log.warning(
            "engine %s taken out of the pool (%s); its trajectories go on at %s",
            self.addresses[member],
            exc,
            ", ".join(live) or "no other engine",
        )
        self._revivers[member] = asyncio.ensure_future(self._revive(member))

    async def _revive(self, member: int) -> None:
        while True:
            await asyncio.sleep(self.revive_every_s)
            try:
                await self.members[member].check()
            except EngineError:
                continue
            log.warning("engine %s answers again: back in the pool", self.addresses[member])
            self.down.pop(member, None)
            self._revivers.pop(member, None)
            return

    async def check(self) -> None:
        """Check every member; raise EngineUnavailable unless at least one can take requests."""
        results = await asyncio.gather(
            *(member.check() for member in self.members), return_exceptions=True
        )
        for member, result in enumerate(results):
            if isinstance(result, EngineError):
                self._take_out(member, result)
            elif isinstance(result, BaseException):
                raise result
        live = [i for i in range(len(self.members)) if i not in self.down]
        if not live:
            raise EngineUnavailable(f"no engine of the pool answers ({self._why_none()})")
        self.max_model_len = min(self.members[i].max_model_len for i in live)

    async def generate(self, prompt_ids: list[int], params: GenerationParams) -> Generation:
        while True:
            member = self.route(prompt_ids)
            self.in_flight[member] += 1
            self.requests[member] += 1
            try:
                return await self.members[member].generate(prompt_ids, params)
            except EngineUnavailable as exc:
                self._take_out(member, exc)  # and send the same request to another engine
            finally:
                self.in_flight[member] -= 1

    async def close(self) -> None:
        for task in self._revivers.values():
            task.cancel()
        await asyncio.gather(*self._revivers.values(), return_exceptions=True)
        self._revivers.clear()
        await asyncio.gather(*(member.close() for member in self.members))
