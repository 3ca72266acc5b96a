"""One endpoint per engine host that serves every policy on the shared policies volume.

    python -m workers.engines.serving --port 8000 --policies-root /app/.cache/policies \\
        [--model Qwen/QwQ-32B] [--max-engines 1] [--idle-s 600] [--max-model-len 32768] \\
        [--enforce-eager] [--kv-cache-gib N] [-- vLLM's own flags]

It answers the part of the OpenAI API the rollout uses: ``GET /v1/models`` lists every policy it
can serve (each directory with a ``config.json`` under a ``--policies-root``, and each ``--model``),
``POST /v1/completions`` runs one (``POST /reset_prefix_cache`` empties every engine's cache, for
benchmarks). A completion for a policy no engine here runs yet starts
``python -m vllm.entrypoints.openai.api_server`` for it on a free local port (server_main's
command: prefix caching, the CPU block size, ``--enable-prompt-tokens-details``), waits until it
answers and forwards the request; later requests for it go straight through. At most
``--max-engines`` run at once: a new policy waits until one is idle, which is stopped; an engine
idle for ``--idle-s`` stops by itself. Engines run in their own process groups and die with this
process.

A policy outside the roots (or whose ``config.json`` cannot be read here) is refused with 404 and
the reason; an engine that fails to start, or dies under a request, answers 503 with the end of
its log. The pool in front (``pool.PoolEngine``) takes a 503 as a dead endpoint and moves on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
import logging
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from workers.engines.base import EngineConfig
from workers.engines.server_main import (
    add_engine_flags,
    engine_config_from,
    server_command,
    split_extra,
)

log = logging.getLogger("workers.engines.serving")

POLL_S = 0.5
STOP_GRACE_S = 30.0


class StartError(RuntimeError):
    """An engine did not come up: the message ends with its log's last lines."""


@dataclass(frozen=True)
class ServingConfig:
    engine: EngineConfig  # every engine's settings; ``model`` is set per policy
    policies_roots: tuple[Path, ...] = ()
    models: tuple[str, ...] = ()  # served though under no root: hub ids, mounted base models
    max_engines: int = 1
    idle_s: float = 600.0
    start_timeout_s: float = 900.0
    log_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    extra: tuple[str, ...] = ()  # vLLM's own flags, for every engine

    def __post_init__(self) -> None:
        if self.max_engines < 1:
            raise ValueError(f"max_engines must be at least 1, got {self.max_engines}")
        if not self.policies_roots and not self.models:
            raise ValueError("nothing to serve: give --policies-root or --model")

    def refusal(self, model: object) -> str | None:
        """Why this endpoint cannot serve ``model``, or None when it can."""
        if not isinstance(model, str) or not model:
            return "the request names no model"
        if model in self.models:
            return None
        path = Path(model)
        roots = ", ".join(str(root) for root in self.policies_roots) or "none"
        if not path.is_absolute() or not any(
            path.resolve().is_relative_to(root.resolve()) for root in self.policies_roots
        ):
            return f"policy {model!r} is not under this host's policies roots ({roots})"
        if not os.access(path / "config.json", os.R_OK):
            return f"policy {model!r} cannot be read on this host (no readable config.json)"
        return None

    def servable(self) -> list[str]:
        found = list(self.models)
        for root in self.policies_roots:
            for pattern in ("*/config.json", "*/*/config.json"):
                found += sorted(str(p.parent.resolve()) for p in root.glob(pattern))
        return list(dict.fromkeys(found))


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Child:
    model: str
    port: int
    process: asyncio.subprocess.Process
    log_path: Path
    ready: asyncio.Future
    starting: asyncio.Task | None = None
    in_flight: int = 0
    last_used: float = field(default_factory=time.monotonic)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Supervisor:
    """Starts, shares and stops the vLLM servers of this host, one per policy."""

    def __init__(self, config: ServingConfig) -> None:
        self.config = config
        self.children: dict[str, Child] = {}
        self.served: dict[str, int] = {}  # completions answered per policy, shown by /health
        self._lock = asyncio.Lock()
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=5.0))

    async def acquire(self, model: str) -> Child:
        """The ready engine for ``model`` (started if needed), counted as in use until release."""
        async with self._lock:
            child = self.children.get(model)
            if child is not None and child.process.returncode is not None:
                log.warning("the engine for %s had exited: starting another", model)
                await self.stop(child)
                child = None
            if child is None:
                await self._make_room()
                child = await self._spawn(model)
            child.in_flight += 1
        try:
            await asyncio.shield(child.ready)
        except BaseException:
            self.release(child)
            raise
        return child

    def release(self, child: Child) -> None:
        child.in_flight -= 1
        child.last_used = time.monotonic()

    async def _make_room(self) -> None:
        deadline = time.monotonic() + self.config.start_timeout_s
        while len(self.children) >= self.config.max_engines:
            idle = [c for c in self.children.values() if c.in_flight == 0]
            if idle:
                await self.stop(min(idle, key=lambda c: c.last_used))
                continue
            if time.monotonic() > deadline:
                busy = ", ".join(sorted(self.children))
                raise StartError(
                    f"this host's {self.config.max_engines} engine(s) stay busy: {busy}"
                )
            await asyncio.sleep(POLL_S)

    async def _spawn(self, model: str) -> Child:
        port = _free_port()
        engine = dataclasses.replace(self.config.engine, model=model)
        argv, env = server_command(engine, port=port, extra=self.config.extra)
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.config.log_dir / f"vllm-{port}.log"
        with open(log_path, "wb") as out:
            process = await asyncio.create_subprocess_exec(
                *argv,
                env={**os.environ, **env},
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own group: stopping it reaches the engine core
                preexec_fn=_die_with_parent,
            )
        child = Child(model, port, process, log_path, asyncio.get_running_loop().create_future())
        self.children[model] = child
        log.info("starting an engine for %s on port %d (log %s)", model, port, log_path)
        child.starting = asyncio.ensure_future(self._await_ready(child))
        return child

    async def _await_ready(self, child: Child) -> None:
        deadline = time.monotonic() + self.config.start_timeout_s
        try:
            while True:
                if child.process.returncode is not None:
                    raise StartError(
                        f"the engine for {child.model} exited with {child.process.returncode}:\n"
                        + child.log_tail()
                    )
                with contextlib.suppress(httpx.HTTPError):
                    response = await self._client.get(f"{child.url}/v1/models", timeout=2)
                    if response.status_code == 200:
                        log.info("engine for %s ready on port %d", child.model, child.port)
                        child.ready.set_result(None)
                        return
                if time.monotonic() > deadline:
                    raise StartError(
                        f"the engine for {child.model} did not answer within "
                        f"{self.config.start_timeout_s:g} s:\n" + child.log_tail()
                    )
                await asyncio.sleep(POLL_S)
        except StartError as exc:
            log.error("%s", exc)
            child.ready.set_exception(exc)
            await self.stop(child)

    async def stop(self, child: Child) -> None:
        if self.children.get(child.model) is child:
            del self.children[child.model]
        if child.process.returncode is None:
            log.info("stopping the engine for %s (port %d)", child.model, child.port)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(child.process.wait(), STOP_GRACE_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                await child.process.wait()

    async def reap_idle(self) -> None:
        """Stop engines idle for longer than ``idle_s``, for as long as the server runs."""
        while True:
            await asyncio.sleep(min(self.config.idle_s, 5.0))
            now = time.monotonic()
            for child in list(self.children.values()):
                idle = child.in_flight == 0 and now - child.last_used > self.config.idle_s
                if idle and child.ready.done():
                    await self.stop(child)

    async def forward(self, child: Child, path: str, body: bytes) -> httpx.Response:
        return await self._client.post(
            f"{child.url}{path}", content=body, headers={"content-type": "application/json"}
        )

    async def close(self) -> None:
        await asyncio.gather(*(self.stop(child) for child in list(self.children.values())))
        await self._client.aclose()


def make_app(config: ServingConfig):
    """The ASGI app (Starlette, which vLLM's server is built on too)."""
    import json

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    supervisor = Supervisor(config)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "code": status}}, status_code=status)

    async def models(request: Request) -> JSONResponse:
        data = [
            {
                "id": model,
                "object": "model",
                "owned_by": "start-curation",
                "max_model_len": config.engine.max_model_len,
                "running": model in supervisor.children,
            }
            for model in config.servable()
        ]
        return JSONResponse({"object": "list", "data": data})

    async def health(request: Request) -> JSONResponse:
        engines = {
            model: {"port": c.port, "in_flight": c.in_flight, "ready": c.ready.done()}
            for model, c in supervisor.children.items()
        }
        return JSONResponse({"engines": engines, "served": supervisor.served})

    async def completions(request: Request) -> Response:
        body = await request.body()
        try:
            model = json.loads(body).get("model")
        except (ValueError, AttributeError):
            return error(400, "the body is not a JSON object")
        refusal = config.refusal(model)
        if refusal:
            return error(404, refusal)
        try:
            child = await supervisor.acquire(model)
        except StartError as exc:
            return error(503, str(exc))
        try:
            answer = await supervisor.forward(child, "/v1/completions", body)
        except httpx.TransportError as exc:
            # Gone for every request on it: the next one starts another engine.
            await supervisor.stop(child)
            return error(503, f"the engine for {model} went away: {type(exc).__name__}: {exc}")
        finally:
            supervisor.release(child)
        supervisor.served[model] = supervisor.served.get(model, 0) + 1
        return Response(answer.content, answer.status_code, media_type="application/json")

    async def reset_prefix_cache(request: Request) -> JSONResponse:
        """Passed to every running engine (vLLM serves it with VLLM_SERVER_DEV_MODE=1)."""
        answers = {}
        for model, child in list(supervisor.children.items()):
            if child.ready.done() and not child.ready.exception():
                answer = await supervisor.forward(child, "/reset_prefix_cache", b"")
                answers[model] = answer.status_code
        ok = all(status == 200 for status in answers.values())
        return JSONResponse({"engines": answers}, status_code=200 if ok else 502)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        reaper = asyncio.ensure_future(supervisor.reap_idle())
        try:
            yield
        finally:
            reaper.cancel()
            await supervisor.close()

    routes = [
        Route("/health", health),
        Route("/v1/models", models),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/reset_prefix_cache", reset_prefix_cache, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.supervisor = supervisor
    return app


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--policies-root",
        action="append",
        type=Path,
        default=[],
        help="a directory on the shared volume; every policy under it is served (repeatable)",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        help="a model served though under no root: a hub id or a mounted path (repeatable)",
    )
    parser.add_argument("--max-engines", type=int, default=1, help="engines running at once")
    parser.add_argument("--idle-s", type=float, default=600.0, help="stop an engine idle this long")
    parser.add_argument("--start-timeout-s", type=float, default=900.0)
    parser.add_argument("--log-dir", type=Path, default=Path(tempfile.gettempdir()))
    add_engine_flags(parser, skip=("model", "tokenizer"))
    return parser


def config_from_argv(argv: Sequence[str]) -> tuple[ServingConfig, argparse.Namespace]:
    ours, extra = split_extra(argv)
    args = _parser().parse_args(ours)
    config = ServingConfig(
        engine=engine_config_from(args, model=""),
        policies_roots=tuple(args.policies_root),
        models=tuple(args.model),
        max_engines=args.max_engines,
        idle_s=args.idle_s,
        start_timeout_s=args.start_timeout_s,
        log_dir=args.log_dir,
        extra=tuple(extra),
    )
    return config, args


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one line per forwarded request
    config, args = config_from_argv(sys.argv[1:] if argv is None else argv)
    uvicorn.run(make_app(config), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
