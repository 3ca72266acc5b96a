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
"""

from __future__ import annotations

import json
import math
import random
import tempfile
from pathlib import Path

from tests.training import synthetic

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
    return {
        "training.packed_over_padded": max(packed) / max(padded),
        "training.packed_tokens_per_s": max(packed),
        "training.padded_tokens_per_s": max(padded),
    }


if __name__ == "__main__":
    print(json.dumps(run_bench()))
