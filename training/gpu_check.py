"""GPU check: TRL's defaults against the project's default SFT configuration, one JSON line.

    python -m training.gpu_check [--timed-steps 10] [--warmup-steps 3] [--texts 256]

Builds a 0.5B-parameter Qwen2-shaped model from a config (Qwen2.5-0.5B's shape, random weights, no
download), random token texts with lengths uniform in 128..4096, and runs a short SFT twice on the
same data:

- trl_defaults: TRL 1.16's SFTConfig as it comes (padded batches of 8, sdpa, bf16 autocast,
  gradient checkpointing), except max_length=4096 so that no text is cut (TRL's default is 1024);
- project_default: `training.config.SFTRunConfig()`'s defaults through `sft_config_kwargs`, the
  same code path as `python -m training.sft` (packing into 16k rows, padding-free batches, a
  varlen-aware attention, Liger kernels when installed).

Each reports tokens/s (timed after the warm-up steps, which include flex attention's
compilation), peak GPU memory, MFU and which attention and kernels ran. MFU counts 6 * N FLOPs per
token (N: all parameters; the tied embedding is the LM head's matmul) over the GPU's dense bf16
peak, so attention's own FLOPs are not counted. The last line of stdout is the JSON; without a
GPU it is {"error": ...} and the exit status is 2.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.config import (
    Environment,
    Runtime,
    SFTRunConfig,
    detect_environment,
    resolve_runtime,
    sft_config_kwargs,
)

GIB = 1024**3
SPEEDUP_GOAL = 3.0

# Qwen2.5-0.5B's shape: about 494M parameters with the tied embedding.
QWEN2_05B = {
    "vocab_size": 151936,
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}

# Dense bf16 tensor-core peaks (FLOP/s), most specific names first.
PEAK_BF16 = (
    ("GB200", 2.5e15),
    ("B200", 2.25e15),
    ("H200", 989.4e12),
    ("H100 NVL", 835e12),
    ("H100 PCIe", 756e12),
    ("H100", 989.4e12),
    ("H800", 989.4e12),
    ("H20", 148e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
)


def peak_bf16_flops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU named like torch.cuda.get_device_name(), if known."""
    for key, flops in PEAK_BF16:
        if key.lower() in device_name.lower():
            return flops
    return None


def mfu(tokens_per_second: float, n_params: int, peak_flops: float | None) -> float | None:
    return 6 * n_params * tokens_per_second / peak_flops if peak_flops else None


def text_lengths(n: int, lo: int = 128, hi: int = 4096, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(lo, hi) for _ in range(n)]


def trl_default_kwargs(output_dir: str, *, max_steps: int, max_length: int) -> dict[str, Any]:
    """SFTConfig kwargs for TRL's defaults: only what a run needs (where, how long, no cut texts)
    and what the measurement needs (token counting, quiet logs, no checkpoints)."""
    return {
        "output_dir": output_dir,
        "max_steps": max_steps,
        "max_length": max_length,
        **_measurement_kwargs(max_steps),
    }


def project_default_kwargs(
    output_dir: str, *, max_steps: int, env: Environment | None = None
) -> tuple[dict[str, Any], Runtime]:
    """SFTConfig kwargs and the resolved Runtime for the project's defaults on this machine."""
    cfg = SFTRunConfig(max_steps=max_steps)
    runtime = resolve_runtime(cfg, env or detect_environment())
    kwargs = sft_config_kwargs(cfg, runtime, output_dir)
    kwargs.update(_measurement_kwargs(max_steps))
    return kwargs, runtime


def _measurement_kwargs(max_steps: int) -> dict[str, Any]:
    return {
        "logging_steps": max_steps,
        "save_strategy": "no",
        "report_to": "none",
        "include_num_input_tokens_seen": "non_padding",
        "disable_tqdm": True,
    }


def _build_model_dir(directory: Path, seed: int) -> int:
    """Save a random Qwen2 0.5B and a tiny tokenizer (for pad and eos only); return N."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from training.tiny import build_tokenizer

    torch.manual_seed(seed)
    config = Qwen2Config(**QWEN2_05B, bos_token_id=None, eos_token_id=2, pad_token_id=0)
    with torch.device("cuda"):
        model = Qwen2ForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(directory)
    build_tokenizer(["a b c"]).save_pretrained(directory)
    del model
    torch.cuda.empty_cache()
    return n_params


def _run(
    model_dir: Path,
    dataset: Any,
    sft_kwargs: dict[str, Any],
    warmup_steps: int,
    n_params: int,
    peak_flops: float | None,
) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer, PrinterCallback, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    marks: dict[int, tuple[float, int]] = {}

    class Timer(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (warmup_steps, state.max_steps):
                torch.cuda.synchronize()
                marks[state.global_step] = (time.perf_counter(), state.num_input_tokens_seen)

    # the previous run's trainer is gone once its _run returned: free its cached blocks
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    try:
        trainer = SFTTrainer(
            model=str(model_dir),
            args=SFTConfig(**sft_kwargs),
            train_dataset=dataset,
            processing_class=AutoTokenizer.from_pretrained(model_dir),
            callbacks=[Timer()],
        )
        trainer.remove_callback(PrinterCallback)  # it prints dicts to stdout
        output = trainer.train()
        (t0, n0), (t1, n1) = marks[warmup_steps], marks[sft_kwargs["max_steps"]]
    except Exception as exc:  # one failing configuration still leaves the other's figures
        return {"error": f"{type(exc).__name__}: {exc}"[:2000]}
    tokens_per_second = (n1 - n0) / (t1 - t0)
    return {
        "tokens_per_second": round(tokens_per_second, 1),
        "mfu": _round(mfu(tokens_per_second, n_params, peak_flops), 4),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / GIB, 2),
        "attn_implementation": trainer.model.config._attn_implementation,
        # the Trainer applies them when training starts, or raises
        "liger_kernels": trainer.args.use_liger_kernel,
        "packing": trainer.args.packing,
        "padding_free": trainer.padding_free,
        "per_device_train_batch_size": trainer.args.per_device_train_batch_size,
        "max_length": trainer.args.max_length,
        "bf16": trainer.args.bf16,
        "gradient_checkpointing": trainer.args.gradient_checkpointing,
        "timed_steps": sft_kwargs["max_steps"] - warmup_steps,
        "timed_tokens": int(n1 - n0),
        "timed_seconds": round(t1 - t0, 3),
        "train_loss": round(output.training_loss, 4),
    }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.gpu_check", description=__doc__)
    parser.add_argument("--texts", type=int, default=256, help="random texts in the dataset")
    parser.add_argument("--min-length", type=int, default=128)
    parser.add_argument("--max-length", type=int, default=4096)
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed steps first")
    parser.add_argument("--timed-steps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="dense bf16 peak, if the GPU is not known"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        message = "training.gpu_check needs a CUDA GPU and none is visible to torch"
        print(message, file=sys.stderr)
        print(json.dumps({"error": message}))
        return 2

    import datasets
    import transformers
    import trl

    device = torch.cuda.get_device_name()
    peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_bf16_flops(device)
    max_steps = args.warmup_steps + args.timed_steps
    rng = random.Random(args.seed)
    lengths = text_lengths(args.texts, args.min_length, args.max_length, args.seed)
    vocab = QWEN2_05B["vocab_size"]
    # ids from 3 up: 0-2 are the tokenizer's special tokens (pad would not count as a token)
    texts = [[rng.randrange(3, vocab) for _ in range(n)] for n in lengths]
    dataset = datasets.Dataset.from_dict({"input_ids": texts})
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        model_dir = Path(tmp) / "qwen2-0.5b-random"
        n_params = _build_model_dir(model_dir, args.seed)
        out = str(Path(tmp) / "out")
        defaults = trl_default_kwargs(out, max_steps=max_steps, max_length=args.max_length)
        project, _ = project_default_kwargs(out, max_steps=max_steps)
        runs = {
            name: _run(model_dir, dataset, kwargs, args.warmup_steps, n_params, peak)
            for name, kwargs in (("trl_defaults", defaults), ("project_default", project))
        }
    base = runs["trl_defaults"].get("tokens_per_second")
    fast = runs["project_default"].get("tokens_per_second")
    speedup = round(fast / base, 3) if base and fast else None
    print(
        json.dumps(
            {
                "device": device,
                "peak_bf16_tflops": peak / 1e12 if peak else None,
                "model_parameters": n_params,
                "texts": args.texts,
                "text_tokens": sum(lengths),
                "lengths": [args.min_length, args.max_length],
                "runs": runs,
                "speedup": speedup,
                "speedup_goal": SPEEDUP_GOAL,
                "meets_goal": speedup is not None and speedup >= SPEEDUP_GOAL,
                "versions": {
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "trl": trl.__version__,
                },
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
