"""The GPU check's CPU-side logic (no GPU here: the run itself needs one)."""

import json

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from training import gpu_check
from training.config import Environment

H100 = Environment(cuda=True, bf16_supported=True, liger_available=True, flash_attn_available=False)


def test_model_shape_and_mfu_reproduce_the_measured_table():
    with torch.device("meta"):
        model = Qwen2ForCausalLM(Qwen2Config(**gpu_check.QWEN2_05B))
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 494_032_768  # Qwen2.5-0.5B
    # MEASURED.md, one H200: 24.4k tokens/s = 7.3 % MFU, 75.1k tokens/s = 22.5 % MFU (6N)
    peak = gpu_check.peak_bf16_flops("NVIDIA H200")
    assert gpu_check.mfu(24.4e3, n_params, peak) == pytest.approx(0.073, abs=5e-4)
    assert gpu_check.mfu(75.1e3, n_params, peak) == pytest.approx(0.225, abs=5e-4)
    assert gpu_check.mfu(75.1e3, n_params, None) is None


@pytest.mark.parametrize(
    ("name", "tflops"),
    [
        ("NVIDIA H100 80GB HBM3", 989.4),
        ("NVIDIA H100 PCIe", 756),
        ("NVIDIA H100 NVL", 835),
        ("NVIDIA H200", 989.4),
        ("NVIDIA A100-SXM4-80GB", 312),
        ("NVIDIA L40S", 362),
        ("NVIDIA L4", 121),
        ("Tesla T4", None),
    ],
)
def test_peak_flops_by_device_name(name, tflops):
    peak = gpu_check.peak_bf16_flops(name)
    assert (peak / 1e12 if peak else None) == (pytest.approx(tflops) if tflops else None)


def test_trl_defaults_run_changes_only_what_it_must(tmp_path):
    from trl import SFTConfig

    kwargs = gpu_check.trl_default_kwargs(str(tmp_path), max_steps=13, max_length=4096)
    assert set(kwargs) == {
        "output_dir",
        "max_steps",
        "max_length",
        "logging_steps",
        "save_strategy",
        "report_to",
        "include_num_input_tokens_seen",
        "disable_tqdm",
    }
    args = SFTConfig(**kwargs, use_cpu=True, bf16=False)  # only to read TRL's defaults here
    assert not args.packing and not args.padding_free
    assert args.per_device_train_batch_size == 8 and args.gradient_checkpointing
    assert args.model_init_kwargs is None  # sdpa, float32 weights


def test_project_run_uses_the_sft_runner_defaults_on_a_gpu(tmp_path):
    kwargs, runtime = gpu_check.project_default_kwargs(str(tmp_path), max_steps=13, env=H100)
    assert runtime.attn_implementation == "flex_attention"
    assert kwargs["packing"] and kwargs["padding_free"] and kwargs["packing_strategy"] == "bfd"
    assert kwargs["max_length"] == 16384 and kwargs["per_device_train_batch_size"] == 1
    assert kwargs["bf16"] and kwargs["use_liger_kernel"] and not kwargs["use_cpu"]
    assert kwargs["model_init_kwargs"]["attn_implementation"] == "flex_attention"
    assert kwargs["max_steps"] == kwargs["logging_steps"] == 13
    with_flash = Environment(True, True, False, True)
    _, runtime = gpu_check.project_default_kwargs(str(tmp_path), max_steps=13, env=with_flash)
    assert runtime.attn_implementation == "flash_attention_2" and not runtime.use_liger


def test_text_lengths_are_seeded_and_in_range():
    lengths = gpu_check.text_lengths(256, 128, 4096, seed=0)
    assert lengths == gpu_check.text_lengths(256, 128, 4096, seed=0)
    assert min(lengths) >= 128 and max(lengths) <= 4096 and len(set(lengths)) > 200


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU exit")
def test_without_a_gpu_it_says_so(capsys):
    assert gpu_check.main([]) == 2
    captured = capsys.readouterr()
    assert "needs a CUDA GPU" in captured.err
    assert "needs a CUDA GPU" in json.loads(captured.out.strip().splitlines()[-1])["error"]
