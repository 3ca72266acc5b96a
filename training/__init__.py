"""SFT on START trajectories with TRL; runs without Django or Celery.

- `training.sft.main(cfg, callbacks) -> TrainResult`, CLI `python -m training.sft --config FILE`
- `training.config.SFTRunConfig` (YAML + `--key value` overrides), `training.data` (loss masking),
  `training.progress.ProgressCallback` (progress reports and cancellation),
  `training.attention` (varlen attention for packed CPU training), `training.tiny` (offline tiny
  tokenizer and model), `training.gpu_check` (`python -m training.gpu_check`).
"""
