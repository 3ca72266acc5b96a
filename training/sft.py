"""Supervised fine-tuning on START trajectories with TRL's SFTTrainer.

    python -m training.sft --config training/configs/tiny-cpu.yaml [--key value ...]
    accelerate launch --config_file training/configs/accelerate/deepspeed_zero3.yaml \\
        -m training.sft --config training/configs/qwq-32b-zero3.yaml

From Python: `main(cfg, callbacks=[ProgressCallback(report, should_stop)]) -> TrainResult`.

Order of work: the config, the base model path, the output directory, the rows, the tokenizer and
the tokenized dataset are all checked before any model weights are loaded, so bad input fails in
seconds with ConfigError, ModelNotFoundError or DatasetError. The model is trained into a hidden
sibling of output_dir and renamed into place only once it and its tokenizer are saved: a failed,
cancelled or killed run never leaves a model at output_dir (a stale sibling is removed by the next
run with the same output_dir).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training import attention
from training.config import (
    ConfigError,
    SFTRunConfig,
    detect_environment,
    parse_args,
    resolve_runtime,
    sft_config_kwargs,
)
from training.data import DatasetError, build_dataset, load_rows

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, TrainerCallback

RESULT_FILE = "training_result.json"


class ModelNotFoundError(FileNotFoundError):
    """The base model (or its tokenizer) cannot be found."""


class TrainingError(RuntimeError):
    """Training failed for a reason worth a clear message (e.g. out of memory)."""


@dataclass
class TrainResult:
    status: str  # "completed" or "cancelled"
    output_dir: str | None  # None unless completed
    steps: int
    total_steps: int
    warmup_steps: int  # ceil(warmup_ratio * total optimizer steps)
    final_loss: float | None  # the last logged training loss
    mean_loss: float | None  # averaged over the run
    tokens: int  # input tokens trained on (padding excluded), all processes
    tokens_per_second: float
    train_runtime_s: float
    n_rows: int
    overlong: int  # rows longer than max_length (truncated or dropped, per on_overlong)
    attn_implementation: str
    use_liger: bool
    bf16: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_model_path(name: str) -> None:
    """Fail fast on a base model that cannot exist: a path that is missing or not a model.

    Names shaped like a hub id ("org/model") that are not local directories are left to the
    tokenizer load, which fails clearly when offline."""
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"base model {name!r} is not a model directory (no config.json)"
            )
        return
    parts = name.split("/")
    hub_like = len(parts) == 2 and all(parts) and not name.startswith((".", "~"))
    if not hub_like:
        raise ModelNotFoundError(f"base model path does not exist: {name}")


def check_output_dir(output_dir: Path) -> None:
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise ConfigError(f"output_dir {output_dir} already exists and is not empty")


def partial_dir(output_dir: Path) -> Path:
    """The hidden sibling a run trains into; the same name on every rank."""
    return output_dir.with_name(f".{output_dir.name}.partial")


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(
            f"cannot load the tokenizer of base model {name!r}: {exc}"
        ) from exc


def _publish(partial: Path, output_dir: Path) -> None:
    if output_dir.exists():
        output_dir.rmdir()  # checked empty at the start
    partial.rename(output_dir)


def main(cfg: SFTRunConfig, callbacks: Sequence[TrainerCallback] = ()) -> TrainResult:
    """Train `cfg.model_name_or_path` on `cfg.dataset`; see the module docstring."""
    cfg.validate()
    check_model_path(cfg.model_name_or_path)
    output_dir = Path(cfg.output_dir).expanduser().resolve()
    check_output_dir(output_dir)
    tokenizer = load_tokenizer(cfg.model_name_or_path)
    built = build_dataset(
        load_rows(cfg.dataset),
        tokenizer,
        max_length=cfg.max_length,
        on_overlong=cfg.on_overlong,
        eos_token=cfg.eos_token,
        mask_hints=cfg.mask_hints,
    )
    runtime = resolve_runtime(cfg, detect_environment())
    if runtime.attn_implementation == attention.NAME:
        attention.register()

    import torch
    from accelerate import PartialState
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from training.progress import LogCallback

    state = PartialState()
    partial = partial_dir(output_dir)
    if state.is_main_process:
        output_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
    state.wait_for_everyone()
    try:
        trainer = SFTTrainer(
            model=cfg.model_name_or_path,
            args=SFTConfig(**sft_config_kwargs(cfg, runtime, str(partial))),
            train_dataset=built.dataset,
            processing_class=tokenizer,
            callbacks=[*callbacks, LogCallback()],
        )
        trainer.remove_callback(PrinterCallback)
        try:
            output = trainer.train()
        except torch.OutOfMemoryError as exc:
            raise TrainingError(
                f"out of memory at step {trainer.state.global_step}: lower "
                "per_device_train_batch_size or packing_length/max_length, or use more devices"
            ) from exc
        steps, total = trainer.state.global_step, trainer.state.max_steps
        completed = steps >= total
        losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
        runtime_s = float(output.metrics.get("train_runtime", 0.0))
        tokens = int(trainer.state.num_input_tokens_seen or 0)
        result = TrainResult(
            status="completed" if completed else "cancelled",
            output_dir=str(output_dir) if completed else None,
            steps=steps,
            total_steps=total,
            warmup_steps=trainer.args.get_warmup_steps(total),
            final_loss=losses[-1] if losses else None,
            mean_loss=output.training_loss,
            tokens=tokens,
            tokens_per_second=tokens / runtime_s if runtime_s > 0 else 0.0,
            train_runtime_s=runtime_s,
            n_rows=built.n_rows,
            overlong=len(built.overlong_ids),
            attn_implementation=runtime.attn_implementation,
            use_liger=runtime.use_liger,
            bf16=runtime.bf16,
        )
        if completed:
            # every rank takes part: FSDP and ZeRO-3 gather the sharded weights here
            trainer.save_model(str(partial))
            if state.is_main_process:
                record = {"result": result.to_dict(), "config": cfg.to_dict()}
                (partial / RESULT_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
                _publish(partial, output_dir)
            state.wait_for_everyone()
        return result
    finally:
        if state.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)


def cli(argv: Sequence[str] | None = None) -> int:
    """stdout: one JSON line per progress report, then {"result": ...}; logs go to stderr.

    Supervised by the app (training.launch sets SFT_STOP_FILE): the process dies with its
    launcher, and stops after the current step once the stop file exists."""
    from training.launch import STOP_FILE_ENV, die_with_parent
    from training.progress import ProgressCallback

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop_file = os.environ.get(STOP_FILE_ENV)
    if stop_file:
        die_with_parent()

    try:
        cfg = parse_args(argv)
        progress = ProgressCallback(
            report=lambda d: print(json.dumps(d), flush=True),
            should_stop=(lambda: Path(stop_file).exists()) if stop_file else None,
        )
        result = main(cfg, callbacks=[progress])
    except (ConfigError, DatasetError, ModelNotFoundError, TrainingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") == "0":  # under a multi-process launch, once
        print(json.dumps({"result": result.to_dict()}), flush=True)
    return 0 if result.status == "completed" else 1


if __name__ == "__main__":
    sys.exit(cli())
