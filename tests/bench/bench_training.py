"""Training throughput on CPU: packed (the project's default) over padded (TRL's default).

    python -m tests.bench.bench_training

The same synthetic START trajectories (lengths long-tailed, about 120 to 800 tokens, as reasoning
lengths are) train the tiny Qwen2-shaped policy for one epoch through `training.sft.main`, three
times each way, alternating; the best run of each counts. Torch runs on one thread: on a shared
machine two OpenMP threads wait on each other whenever one is descheduled, and runs then swing
by 2-5x.

- padded: batches of 8 texts padded to the longest (TRL's default batch size), sdpa;
- packed: texts packed into 1024-token rows, two rows (about the same real tokens per step),
  padding-free, with the CPU's varlen attention (training.attention.sdpa_varlen).

Tokens are real tokens (padding excluded) per second of `trainer.train()`. Goal: >= 1.4.

training.accelerate_overhead_s: what launching through `accelerate launch` (as the train worker
does, training.launch) adds before the first optimizer step, over `python -m training.sft` with
the same config: seconds from the start of each command to its first step's progress line,
best of two each, alternating. training.accelerate_first_step_s is the launched one's figure.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
from pathlib import Path

from tests.training import synthetic

ROOT = Path(__file__).resolve().parents[2]

ROWS = 96
MAX_LENGTH = 1024
REPEATS = 3


def _rows(seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [
        synthetic.row(i, rng, min(700, int(rng.lognormvariate(math.log(60), 1.0))))
        for i in range(ROWS)
    ]


def run_bench() -> dict[str, float]:
    import torch

    from training.config import SFTRunConfig
    from training.sft import main
    from training.tiny import build_model, build_tokenizer

    rows = _rows()
    with tempfile.TemporaryDirectory(prefix="bench_training_") as tmp:
        root = Path(tmp)
        data = root / "data.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        tokenizer = build_tokenizer(synthetic.corpus(rows))
        tokenizer.save_pretrained(root / "base")
        build_model(tokenizer).save_pretrained(root / "base")

        def tokens_per_second(name: str, packing: bool, batch_size: int) -> float:
            cfg = SFTRunConfig(
                model_name_or_path=str(root / "base"),
                dataset=str(data),
                output_dir=str(root / name),
                learning_rate=1e-3,
                num_train_epochs=1,
                max_length=MAX_LENGTH,
                packing=packing,
                per_device_train_batch_size=batch_size,
                gradient_checkpointing=False,
                logging_steps=1000,
            )
            return main(cfg).tokens_per_second

        padded, packed = [], []
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for repeat in range(REPEATS):
                padded.append(tokens_per_second(f"padded{repeat}", packing=False, batch_size=8))
                packed.append(tokens_per_second(f"packed{repeat}", packing=True, batch_size=2))
        finally:
            torch.set_num_threads(threads)
    launched, plain = accelerate_first_step_s()
    return {
        "training.accelerate_overhead_s": launched - plain,
        "training.accelerate_first_step_s": launched,
        "training.packed_over_padded": max(packed) / max(padded),
        "training.packed_tokens_per_s": max(packed),
        "training.padded_tokens_per_s": max(padded),
    }


def _first_step_s(cmd: list[str], stop_file: Path) -> float:
    """Seconds from starting `cmd` to its first step's progress line; then it is stopped."""
    import subprocess
    import time

    from training.launch import supervised_env

    stop_file.unlink(missing_ok=True)
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=supervised_env(stop_file=stop_file),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        for line in proc.stdout:
            if line.startswith('{"status"') and json.loads(line)["step"] >= 1:
                return time.monotonic() - started
        raise RuntimeError(f"{cmd} ended without a step (exit {proc.wait()})")
    finally:
        stop_file.touch()
        proc.wait()


def accelerate_first_step_s() -> tuple[float, float]:
    """(through accelerate launch, plain python -m training.sft), best of two each."""
    import sys

    import yaml

    from training.launch import LaunchOptions, launch_command, visible_gpus
    from training.tiny import build_model, build_tokenizer

    rows = _rows()[:16]
    with tempfile.TemporaryDirectory(prefix="bench_accelerate_") as tmp:
        root = Path(tmp)
        data = root / "data.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        tokenizer = build_tokenizer(synthetic.corpus(rows))
        tokenizer.save_pretrained(root / "base")
        build_model(tokenizer).save_pretrained(root / "base")
        launched, plain = [], []
        for repeat in range(2):
            config = root / f"sft{repeat}.yaml"
            for name, runs in (("plain", plain), ("launched", launched)):
                settings = {
                    "model_name_or_path": str(root / "base"),
                    "dataset": str(data),
                    "output_dir": str(root / f"{name}{repeat}"),
                    "max_steps": 50,
                    "max_length": MAX_LENGTH,
                    "logging_steps": 1,
                }
                config.write_text(yaml.safe_dump(settings), encoding="utf-8")
                cmd = (
                    [sys.executable, "-m", "training.sft", "--config", str(config)]
                    if name == "plain"
                    else launch_command(LaunchOptions(), config_path=config, gpus=visible_gpus())
                )
                runs.append(_first_step_s(cmd, root / "stop"))
    return min(launched), min(plain)


if __name__ == "__main__":
    print(json.dumps(run_bench()))
