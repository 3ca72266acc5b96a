"""Progress reporting and cancellation for a running SFT job, as a transformers TrainerCallback.

    progress = ProgressCallback(report=write_to_job_row, should_stop=job_was_cancelled)
    result = training.sft.main(cfg, callbacks=[progress])

`report(dict)` receives: status ("running", "cancelled", "saving"), step, total_steps, epoch,
loss, learning_rate (from the last log), tokens (input tokens seen, padding excluded),
tokens_per_second, elapsed_s, eta_s. It is called on the main process only.

`should_stop()` is polled after optimizer steps (at most every `min_interval_s`); when it returns
True the Trainer stops after the current step and `main` returns a "cancelled" result without
writing a model. Under a multi-process launch the main process decides and the decision is
broadcast, so every rank stops at the same step.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

Report = Callable[[dict[str, Any]], None]
logger = logging.getLogger("training")


class ProgressCallback(TrainerCallback):
    def __init__(
        self,
        report: Report | None = None,
        should_stop: Callable[[], bool] | None = None,
        *,
        min_interval_s: float = 1.0,
    ) -> None:
        self.report = report
        self.should_stop = should_stop
        self.min_interval_s = min_interval_s
        self.cancelled = False
        self._started = 0.0
        self._last_report = float("-inf")
        self._last_check = float("-inf")
        self._loss: float | None = None
        self._learning_rate: float | None = None

    def snapshot(self, state: TrainerState, status: str) -> dict[str, Any]:
        elapsed = time.monotonic() - self._started
        step, total = state.global_step, state.max_steps
        tokens = int(state.num_input_tokens_seen or 0)
        return {
            "status": status,
            "step": step,
            "total_steps": total,
            "epoch": state.epoch,
            "loss": self._loss,
            "learning_rate": self._learning_rate,
            "tokens": tokens,
            "tokens_per_second": tokens / elapsed if elapsed > 0 else 0.0,
            "elapsed_s": elapsed,
            "eta_s": elapsed / step * (total - step) if step else None,
        }

    def _emit(self, state: TrainerState, status: str) -> None:
        if self.report is not None and state.is_world_process_zero:
            self.report(self.snapshot(state, status))
            self._last_report = time.monotonic()

    def _stop_requested(self, state: TrainerState) -> bool:
        """The main process's answer, shared with every rank so that they stop together."""
        if self.should_stop is None:
            return False
        now = time.monotonic()
        due = now - self._last_check >= self.min_interval_s
        stop = False
        if state.is_world_process_zero and due:
            self._last_check = now
            stop = bool(self.should_stop())
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            flag = [stop]
            dist.broadcast_object_list(flag, src=0)
            stop = bool(flag[0])
        return stop

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._started = time.monotonic()
        self._emit(state, "running")

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        # a stop asked for at the last step comes too late: the run is complete
        if self._stop_requested(state) and state.global_step < state.max_steps:
            self.cancelled = True
            control.should_training_stop = True
            self._emit(state, "cancelled")
        elif state.global_step % args.logging_steps and (
            time.monotonic() - self._last_report >= self.min_interval_s
        ):
            # on logging steps `on_log` follows with the fresh loss
            self._emit(state, "running")

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if logs and "loss" in logs:
            self._loss = float(logs["loss"])
            self._learning_rate = float(logs.get("learning_rate", self._learning_rate or 0.0))
            if not self.cancelled:
                self._emit(state, "running")

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not self.cancelled:
            self._emit(state, "saving")


class LogCallback(TrainerCallback):
    """The Trainer's logs as JSON lines on the "training" logger, in place of transformers'
    PrinterCallback, which prints Python dicts to stdout."""

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if logs and state.is_world_process_zero:
            logger.info(json.dumps({"step": state.global_step, **logs}))
