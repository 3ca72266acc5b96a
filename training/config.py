"""The SFT run's configuration: a dataclass, a YAML file, command-line overrides (TRL's style).

    cfg = parse_args(["--config", "training/configs/tiny-cpu.yaml", "--learning_rate", "1e-4"])

Precedence: field defaults < YAML < command line. The "auto" values (bf16, attention, Liger) are
resolved against the machine by `resolve_runtime`; `sft_config_kwargs` turns config + runtime into
the keyword arguments of TRL's `SFTConfig`. Nothing here imports torch or TRL.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ON_OVERLONG = ("report", "truncate", "drop")
ATTENTION = (
    "auto",
    "eager",
    "sdpa",
    "sdpa_varlen",
    "flex_attention",
    "flash_attention_2",
    "flash_attention_3",
)


class ConfigError(ValueError):
    """The configuration is invalid (unknown key, wrong type, impossible value)."""


@dataclass
class SFTRunConfig:
    model_name_or_path: str = field(
        default="",
        metadata={"help": "Base model: a local directory (config, weights, tokenizer), a hub id."},
    )
    dataset: str = field(
        default="",
        metadata={
            "help": "JSONL file of rows in TRL's conversational format plus `mask_spans` (char "
            "spans of the assistant content that carry no loss: hints and ```output blocks)."
        },
    )
    output_dir: str = field(
        default="",
        metadata={
            "help": "Where the trained model and tokenizer go: written atomically at the end "
            "(trained in a hidden sibling directory, then renamed). Must not exist or be empty."
        },
    )
    learning_rate: float = field(default=7e-6, metadata={"help": "Peak learning rate (AdamW)."})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Passes over the dataset."})
    max_steps: int = field(
        default=-1,
        metadata={"help": "If > 0, stop after this many optimizer steps (wins over epochs)."},
    )
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule."})
    warmup_ratio: float = field(
        default=0.03,
        metadata={
            "help": "Fraction of the optimizer steps spent warming up, in [0, 1). TRL 1.16's "
            "SFTConfig has no warmup_ratio: it goes in as a fractional `warmup_steps`, which "
            "transformers turns into ceil(ratio * optimizer steps) once the packed dataset's "
            "length is known."
        },
    )
    max_length: int = field(
        default=16384,
        metadata={
            "help": "Longest training text in tokens (prompt + completion + end-of-turn). Longer "
            "texts are handled by `on_overlong`, never cut silently."
        },
    )
    packing_length: int | None = field(
        default=None,
        metadata={
            "help": "Tokens per packed row (the paper packed 16k texts into 32k rows). Unset: "
            "max_length. Must be >= max_length."
        },
    )
    per_device_train_batch_size: int = field(
        default=1,
        metadata={"help": "Rows per device per micro-step: packed rows, or texts when padding."},
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Micro-steps per optimizer step."}
    )
    packing: bool = field(
        default=True,
        metadata={
            "help": "Pack texts into rows without padding (TRL's best-fit-decreasing packing; "
            "padding-free batches with per-text position_ids, so attention never crosses texts). "
            "False: pad each batch to its longest text."
        },
    )
    seed: int = field(default=42, metadata={"help": "Seed for initialisation and shuffling."})
    bf16: bool | None = field(
        default=None,
        metadata={"help": "bf16 mixed precision. Unset: on when a GPU supports bf16."},
    )
    model_dtype: str = field(
        default="float32",
        metadata={
            "help": "dtype the weights are loaded in: float32 with bf16 autocast is standard "
            "mixed precision; bfloat16 halves memory but, with a plain optimizer, loses updates "
            "below bf16's precision (DeepSpeed ZeRO with bf16 keeps fp32 master weights, so "
            "bfloat16 is fine there).",
            "choices": ("float32", "bfloat16", "float16", "auto"),
        },
    )
    attn_implementation: str = field(
        default="auto",
        metadata={
            "help": "Attention kernel. auto, with packing: on a GPU flash_attention_2 if "
            "flash-attn is installed, else flex_attention; on a CPU sdpa_varlen (training."
            "attention: causal sdpa per packed text). All three skip the blocks between texts. "
            "auto without packing: sdpa.",
            "choices": ATTENTION,
        },
    )
    use_liger: bool | None = field(
        default=None,
        metadata={
            "help": "Liger's Triton kernels (RMSNorm, RoPE, SwiGLU). Unset: on when a GPU is "
            "present and liger-kernel is importable. TRL 1.16 always computes the loss with its "
            "own chunked fused LM head and refuses Liger's fused cross-entropy."
        },
    )
    gradient_checkpointing: bool = field(
        default=True,
        metadata={"help": "Recompute activations in the backward pass (TRL's default)."},
    )
    logging_steps: int = field(default=10, metadata={"help": "Log the loss every N steps."})
    on_overlong: str = field(
        default="report",
        metadata={
            "help": "Texts longer than max_length. report: count and list them, refuse to train; "
            "truncate: keep their first max_length tokens; drop: leave them out. The count is "
            "always in the result.",
            "choices": ON_OVERLONG,
        },
    )
    mask_hints: bool = field(
        default=True,
        metadata={
            "help": "Hints carry no loss (the paper's reported setting); interpreter outputs never "
            "do. False: the model is also trained to write the hints, so it learns to call the "
            "tool unprompted even when it is too small to generalise from the code alone."
        },
    )
    eos_token: str | None = field(
        default=None,
        metadata={
            "help": "End-of-turn token appended to each completion and trained, so the model "
            "learns to stop. Unset: the tokenizer's eos_token."
        },
    )

    def validate(self) -> None:
        """Raise ConfigError for values that cannot work; cheap, touches only the file system."""
        for name in ("model_name_or_path", "dataset", "output_dir"):
            if not getattr(self, name):
                raise ConfigError(f"{name} is required")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.max_length < 2:
            raise ConfigError(f"max_length must be at least 2, got {self.max_length}")
        if self.packing_length is not None and self.packing_length < self.max_length:
            raise ConfigError(
                f"packing_length ({self.packing_length}) must be >= max_length ({self.max_length})"
            )
        for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "logging_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise ConfigError("set num_train_epochs > 0 or max_steps > 0")
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                value = getattr(self, f.name)
                raise ConfigError(f"{f.name} must be one of {choices}, got {value!r}")
        if not Path(self.dataset).is_file():
            raise ConfigError(f"dataset file not found: {self.dataset}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Environment:
    """What the machine offers, as far as the config's "auto" values care."""

    cuda: bool
    bf16_supported: bool
    liger_available: bool
    flash_attn_available: bool


@dataclass(frozen=True)
class Runtime:
    """The config's "auto" values, resolved."""

    bf16: bool
    attn_implementation: str
    use_liger: bool
    use_cpu: bool


def detect_environment() -> Environment:
    import importlib.util

    import torch

    cuda = torch.cuda.is_available()
    return Environment(
        cuda=cuda,
        bf16_supported=cuda and torch.cuda.is_bf16_supported(),
        liger_available=importlib.util.find_spec("liger_kernel") is not None,
        flash_attn_available=importlib.util.find_spec("flash_attn") is not None,
    )


def resolve_runtime(cfg: SFTRunConfig, env: Environment) -> Runtime:
    """Resolve bf16, attention and Liger for this machine (explicit values win over "auto")."""
    attn = cfg.attn_implementation
    if attn == "auto":
        if not cfg.packing:
            attn = "sdpa"
        elif env.cuda:
            attn = "flash_attention_2" if env.flash_attn_available else "flex_attention"
        else:
            attn = "sdpa_varlen"
    if cfg.use_liger and not env.liger_available:
        raise ConfigError("use_liger is true but liger-kernel is not installed")
    return Runtime(
        bf16=env.bf16_supported if cfg.bf16 is None else cfg.bf16,
        attn_implementation=attn,
        use_liger=(env.cuda and env.liger_available) if cfg.use_liger is None else cfg.use_liger,
        use_cpu=not env.cuda,
    )


def sft_config_kwargs(cfg: SFTRunConfig, runtime: Runtime, output_dir: str) -> dict[str, Any]:
    """Keyword arguments for TRL's SFTConfig. The dataset arrives tokenized with `labels` (see
    training.data), so TRL only packs or pads it; checkpoints are not written (save at end only)."""
    return {
        "output_dir": output_dir,
        "learning_rate": cfg.learning_rate,
        "num_train_epochs": cfg.num_train_epochs,
        "max_steps": cfg.max_steps,
        "lr_scheduler_type": cfg.lr_scheduler_type,
        # transformers reads a warmup_steps below 1 as a ratio of the total optimizer steps
        "warmup_steps": cfg.warmup_ratio,
        # with packing TRL's max_length is the packed row's length; texts were checked against ours
        "max_length": (cfg.packing_length or cfg.max_length) if cfg.packing else cfg.max_length,
        "per_device_train_batch_size": cfg.per_device_train_batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "packing": cfg.packing,
        "packing_strategy": "bfd",
        "padding_free": cfg.packing,
        "seed": cfg.seed,
        "bf16": runtime.bf16,
        "use_cpu": runtime.use_cpu,
        "gradient_checkpointing": cfg.gradient_checkpointing,
        "use_liger_kernel": runtime.use_liger,
        "model_init_kwargs": {
            "attn_implementation": runtime.attn_implementation,
            "dtype": cfg.model_dtype,
            # TRL picks device_map="auto" on a GPU unless launched with DDP or DeepSpeed: under FSDP
            # each rank would spread the model over every visible GPU. The Trainer places it.
            "device_map": None,
        },
        "logging_steps": cfg.logging_steps,
        "logging_first_step": True,
        "save_strategy": "no",
        "report_to": "none",
        "include_num_input_tokens_seen": "non_padding",
        "disable_tqdm": True,
    }


# -- parsing -------------------------------------------------------------------------------------

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _convert(name: str, tp: Any, value: Any) -> Any:
    """Coerce a YAML or command-line value to the field's annotated type."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        is_null = value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
        if is_null and type(None) in args:
            return None
        (tp,) = (a for a in args if a is not type(None))
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            text = str(value).lower()
            if text in _TRUE | _FALSE:
                return text in _TRUE
            raise ValueError(value)
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if tp is str:
            if isinstance(value, (dict, list)):
                raise ValueError(value)
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: cannot read {value!r} as {tp.__name__}") from None
    raise ConfigError(f"{name}: unsupported field type {tp}")


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(SFTRunConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(SFTRunConfig)}


def config_from_dict(values: dict[str, Any]) -> SFTRunConfig:
    """Build a config from a mapping (e.g. loaded YAML); unknown keys are an error."""
    types_ = _field_types()
    unknown = sorted(set(values) - set(types_))
    if unknown:
        raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
    return SFTRunConfig(**{k: _convert(k, types_[k], v) for k, v in values.items()})


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.sft",
        description="Supervised fine-tuning on START trajectories (TRL SFTTrainer).",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config", help="YAML file of config keys; flags override it.")
    for f in dataclasses.fields(SFTRunConfig):
        default = "unset" if f.default is None else f.default
        parser.add_argument(
            f"--{f.name}",
            metavar=f.name.upper(),
            help=f"{f.metadata['help']} (default: {default})".replace("%", "%%"),
        )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> SFTRunConfig:
    """Parse `--config FILE` and `--key value` flags into a config (unvalidated: see `validate`)."""
    namespace = vars(build_parser().parse_args(argv))
    values = load_yaml(namespace.pop("config")) if "config" in namespace else {}
    values.update(namespace)
    return config_from_dict(values)
