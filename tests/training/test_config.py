import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from training.config import (
    ConfigError,
    Environment,
    SFTRunConfig,
    config_from_dict,
    parse_args,
    resolve_runtime,
    sft_config_kwargs,
)

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"
CPU = Environment(
    cuda=False, bf16_supported=False, liger_available=False, flash_attn_available=False
)
GPU = Environment(cuda=True, bf16_supported=True, liger_available=True, flash_attn_available=False)


def test_paper_defaults():
    cfg = SFTRunConfig()
    assert cfg.learning_rate == 7e-6
    assert cfg.num_train_epochs == 3
    assert cfg.lr_scheduler_type == "cosine"
    assert cfg.warmup_ratio == 0.03
    assert cfg.max_length == 16384
    assert cfg.packing is True
    assert cfg.on_overlong == "report"


def test_every_field_has_help():
    for f in dataclasses.fields(SFTRunConfig):
        assert f.metadata.get("help"), f.name


def test_yaml_then_flags_override(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "model_name_or_path: base\ndataset: d.jsonl\nlearning_rate: 1.0e-5\n"
        "packing: true\nmax_length: 4096\nbf16: null\n",
        encoding="utf-8",
    )
    cfg = parse_args(["--config", str(path)])
    assert (cfg.model_name_or_path, cfg.learning_rate, cfg.max_length) == ("base", 1e-5, 4096)
    assert cfg.bf16 is None
    cfg = parse_args(
        [
            "--config",
            str(path),
            "--learning_rate",
            "2e-4",
            "--packing=false",
            "--max_length",
            "512",
            "--bf16",
            "true",
            "--packing_length",
            "none",
        ]
    )
    assert cfg.learning_rate == 2e-4 and cfg.packing is False and cfg.max_length == 512
    assert cfg.bf16 is True and cfg.packing_length is None
    assert cfg.dataset == "d.jsonl"  # from the file
    assert parse_args(["--seed", "7"]).seed == 7  # no file at all


def test_bad_input_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown config keys: warmup_steps"):
        config_from_dict({"warmup_steps": 10})
    with pytest.raises(ConfigError, match="max_length"):
        config_from_dict({"max_length": "long"})
    with pytest.raises(ConfigError, match="packing"):
        config_from_dict({"packing": "maybe"})
    with pytest.raises(ConfigError, match="max_steps"):
        config_from_dict({"max_steps": 2.5})
    with pytest.raises(ConfigError, match="not found"):
        parse_args(["--config", str(tmp_path / "missing.yaml")])
    (tmp_path / "list.yaml").write_text("- a\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        parse_args(["--config", str(tmp_path / "list.yaml")])
    with pytest.raises(SystemExit):
        parse_args(["--no_such_flag", "1"])


def _valid(tmp_path, **changes):
    data = tmp_path / "d.jsonl"
    data.write_text("{}\n", encoding="utf-8")
    values = {"model_name_or_path": "m", "dataset": str(data), "output_dir": "o", **changes}
    return SFTRunConfig(**values)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"warmup_ratio": 1.0}, "warmup_ratio"),
        ({"warmup_ratio": -0.1}, "warmup_ratio"),
        ({"packing_length": 100, "max_length": 200}, "packing_length"),
        ({"per_device_train_batch_size": 0}, "per_device_train_batch_size"),
        ({"on_overlong": "cut"}, "on_overlong"),
        ({"attn_implementation": "flash"}, "attn_implementation"),
        ({"model_dtype": "int8"}, "model_dtype"),
        ({"output_dir": ""}, "output_dir is required"),
        ({"dataset": "/no/such/file.jsonl"}, "dataset file not found"),
        ({"num_train_epochs": 0, "max_steps": -1}, "num_train_epochs"),
    ],
)
def test_validate(tmp_path, changes, message):
    _valid(tmp_path).validate()
    with pytest.raises(ConfigError, match=message):
        _valid(tmp_path, **changes).validate()


def test_runtime_on_cpu():
    runtime = resolve_runtime(SFTRunConfig(), CPU)
    assert runtime.attn_implementation == "sdpa_varlen"
    assert resolve_runtime(SFTRunConfig(packing=False), CPU).attn_implementation == "sdpa"
    assert (runtime.bf16, runtime.use_liger, runtime.use_cpu) == (False, False, True)


def test_runtime_on_gpu_takes_the_fast_path():
    runtime = resolve_runtime(SFTRunConfig(), GPU)
    assert runtime.attn_implementation == "flex_attention"
    assert (runtime.bf16, runtime.use_liger, runtime.use_cpu) == (True, True, False)
    with_flash = dataclasses.replace(GPU, flash_attn_available=True)
    assert resolve_runtime(SFTRunConfig(), with_flash).attn_implementation == "flash_attention_2"
    padded = resolve_runtime(SFTRunConfig(packing=False), GPU)
    assert padded.attn_implementation == "sdpa"
    no_liger = dataclasses.replace(GPU, liger_available=False)
    assert resolve_runtime(SFTRunConfig(), no_liger).use_liger is False


def test_explicit_values_win():
    cfg = SFTRunConfig(attn_implementation="eager", bf16=False, use_liger=False)
    runtime = resolve_runtime(cfg, GPU)
    assert (runtime.attn_implementation, runtime.bf16, runtime.use_liger) == ("eager", False, False)
    with pytest.raises(ConfigError, match="liger-kernel"):
        resolve_runtime(SFTRunConfig(use_liger=True), CPU)


def test_sft_config_kwargs_make_a_valid_trl_config(tmp_path):
    from trl import SFTConfig

    cfg = SFTRunConfig(max_length=1024, packing_length=4096, logging_steps=3)
    kwargs = sft_config_kwargs(cfg, resolve_runtime(cfg, CPU), str(tmp_path))
    args = SFTConfig(**kwargs)
    assert args.packing and args.padding_free and args.packing_strategy == "bfd"
    assert args.max_length == 4096  # the packed row
    assert args.learning_rate == 7e-6 and args.num_train_epochs == 3
    assert args.lr_scheduler_type == "cosine"
    # 3 % of the optimizer steps, rounded up, once the number of steps is known
    assert args.get_warmup_steps(100) == 3
    assert args.get_warmup_steps(1000) == 30
    assert args.get_warmup_steps(5) == 1
    assert args.bf16 is False and args.use_cpu is True
    assert args.save_strategy == "no"
    assert args.model_init_kwargs["attn_implementation"] == "sdpa_varlen"
    assert args.model_init_kwargs["device_map"] is None

    padded = SFTConfig(
        **sft_config_kwargs(
            SFTRunConfig(packing=False),
            resolve_runtime(SFTRunConfig(packing=False), CPU),
            str(tmp_path),
        )
    )
    assert not padded.packing and not padded.padding_free and padded.max_length == 16384


def test_shipped_configs_parse():
    tiny = parse_args(["--config", str(CONFIGS / "tiny-cpu.yaml")])
    assert tiny.bf16 is False and tiny.gradient_checkpointing is False and tiny.packing
    qwq = parse_args(["--config", str(CONFIGS / "qwq-32b-zero3.yaml")])
    assert qwq.model_name_or_path == "Qwen/QwQ-32B-Preview"
    assert (qwq.learning_rate, qwq.num_train_epochs, qwq.warmup_ratio) == (7e-6, 3, 0.03)
    assert (qwq.max_length, qwq.packing_length) == (16384, 32768)
    import yaml

    for name in ("fsdp.yaml", "deepspeed_zero3.yaml"):
        accelerate = yaml.safe_load((CONFIGS / "accelerate" / name).read_text(encoding="utf-8"))
        assert accelerate["mixed_precision"] == "bf16"
    assert (
        yaml.safe_load((CONFIGS / "accelerate" / "deepspeed_zero3.yaml").read_text())[
            "deepspeed_config"
        ]["zero_stage"]
        == 3
    )


def test_cli_parses_without_importing_torch():
    code = (
        "import sys; from training.sft import parse_args; "
        "parse_args(['--seed', '3']); assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=CONFIGS.parents[1])
