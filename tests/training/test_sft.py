import json
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from tests.training.conftest import write_jsonl
from training.config import ConfigError, SFTRunConfig
from training.data import IGNORE_INDEX, DatasetError, build_dataset
from training.progress import ProgressCallback
from training.sft import RESULT_FILE, ModelNotFoundError, cli, main, partial_dir


def _cfg(base, data, out, **changes):
    values = {
        "model_name_or_path": str(base),
        "dataset": str(data),
        "output_dir": str(out),
        "learning_rate": 3e-3,
        "max_steps": 5,
        "per_device_train_batch_size": 4,
        "max_length": 512,
        "logging_steps": 1,
        "gradient_checkpointing": False,
        **changes,
    }
    return SFTRunConfig(**values)


def test_five_step_sft_learns_and_saves_a_reloadable_model(tmp_path, base_model_dir, dataset_file):
    reports = []
    out = tmp_path / "start-0"
    progress = ProgressCallback(report=reports.append, min_interval_s=0)
    result = main(_cfg(base_model_dir, dataset_file, out), callbacks=[progress])

    assert result.status == "completed" and result.output_dir == str(out)
    assert (result.steps, result.total_steps, result.n_rows, result.overlong) == (5, 5, 20, 0)
    assert result.warmup_steps == 1  # ceil(0.03 * 5)
    losses = [r["loss"] for r in reports if r["loss"] is not None]
    assert result.final_loss == losses[-1] < losses[0]
    assert result.tokens > 0 and result.tokens_per_second > 0 and result.train_runtime_s > 0
    assert (result.attn_implementation, result.bf16) == ("sdpa_varlen", False)
    assert result.use_liger is False

    assert reports[0]["status"] == "running" and reports[-1]["status"] == "saving"
    steps = [r["step"] for r in reports]
    assert steps == sorted(steps) and steps[-1] == 5
    assert all(r["total_steps"] == 5 for r in reports)
    last = reports[-1]
    assert last["tokens"] == result.tokens and last["eta_s"] == 0 and last["learning_rate"] > 0

    assert not partial_dir(out).exists()
    record = json.loads((out / RESULT_FILE).read_text())
    assert record["result"]["steps"] == 5 and record["config"]["max_length"] == 512
    tokenizer = AutoTokenizer.from_pretrained(out)
    trained = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(base_model_dir)
    assert tokenizer.chat_template == AutoTokenizer.from_pretrained(base_model_dir).chat_template
    assert not torch.equal(trained.model.embed_tokens.weight, base.model.embed_tokens.weight)
    ids = torch.tensor([tokenizer("What is 2 + 3?")["input_ids"]])
    assert torch.isfinite(trained(ids).logits).all()


@pytest.fixture(scope="module")
def packed_trainer(tmp_path_factory, base_model_dir, rows, tokenizer):
    """TRL's SFTTrainer as `main` builds it (packing, padding-free), not trained."""
    from trl import SFTConfig, SFTTrainer

    from training import attention
    from training.config import detect_environment, resolve_runtime, sft_config_kwargs

    attention.register()
    out = tmp_path_factory.mktemp("packed")
    cfg = _cfg(base_model_dir, "unused", out, max_length=1024)
    built = build_dataset(rows, tokenizer, max_length=1024)
    trainer = SFTTrainer(
        model=str(base_model_dir),
        args=SFTConfig(
            **sft_config_kwargs(cfg, resolve_runtime(cfg, detect_environment()), str(out))
        ),
        train_dataset=built.dataset,
        processing_class=tokenizer,
    )
    return trainer, built


def test_trainer_receives_our_labels_in_packed_rows(packed_trainer, rows):
    trainer, built = packed_trainer
    ours = {tuple(r["input_ids"]): r["labels"] for r in built.dataset}
    packed = trainer.train_dataset
    assert len(packed) < len(rows)  # texts were packed together
    seen = 0
    for row in packed:
        start = 0
        for length in row["seq_lengths"]:
            ids = tuple(row["input_ids"][start : start + length])
            assert row["labels"][start : start + length] == ours[ids]
            start += length
            seen += 1
    assert seen == len(rows)

    batch = trainer.data_collator([packed[0], packed[1]])
    assert "attention_mask" not in batch  # padding-free: one row, positions restart per text
    starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist()
    assert len(starts) == len(packed[0]["seq_lengths"]) + len(packed[1]["seq_lengths"])
    flat_labels = [label for r in (packed[0], packed[1]) for label in r["labels"]]
    assert batch["labels"][0].tolist() == flat_labels  # each text starts in its prompt anyway


def test_packed_texts_do_not_attend_to_each_other(packed_trainer):
    """TRL's loss on a padding-free batch of two texts equals the losses of each text alone."""
    trainer, built = packed_trainer
    a, b = (
        {"input_ids": built.dataset[i]["input_ids"], "labels": built.dataset[i]["labels"]}
        for i in (0, 1)
    )

    def loss_and_count(examples):
        batch = trainer.data_collator(examples)
        with torch.no_grad():
            loss = trainer.compute_loss(trainer.model, dict(batch))
        return loss.item(), int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())

    trainer.model.eval()
    (la, na), (lb, nb), (lab, nab) = (loss_and_count(x) for x in ([a], [b], [a, b]))
    assert nab == na + nb
    assert lab * nab == pytest.approx(la * na + lb * nb, rel=1e-5)

    # the same row without its text boundaries: the second text sees the first, the loss moves
    batch = trainer.data_collator([a, b])
    batch["position_ids"] = torch.arange(batch["input_ids"].shape[1])[None]
    for key in ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k", "seq_idx"):
        del batch[key]
    with torch.no_grad():
        leaking = trainer.compute_loss(trainer.model, dict(batch)).item()
    assert leaking * nab != pytest.approx(la * na + lb * nb, rel=1e-3)


def test_should_stop_cancels_cleanly(tmp_path, base_model_dir, dataset_file):
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) >= 2

    reports = []
    out = tmp_path / "cancelled"
    progress = ProgressCallback(reports.append, should_stop, min_interval_s=0)
    result = main(_cfg(base_model_dir, dataset_file, out, max_steps=50), callbacks=[progress])
    assert result.status == "cancelled" and result.output_dir is None
    assert result.steps == 2 < result.total_steps == 50
    assert reports[-1]["status"] == "cancelled" and reports[-1]["step"] == 2
    assert not out.exists() and not partial_dir(out).exists()


def test_a_failing_run_leaves_no_model(tmp_path, base_model_dir, dataset_file):
    class Boom(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise RuntimeError("worker lost")

    out = tmp_path / "failed"
    with pytest.raises(RuntimeError, match="worker lost"):
        main(_cfg(base_model_dir, dataset_file, out), callbacks=[Boom()])
    assert not out.exists() and not partial_dir(out).exists()


def test_padded_run_replaces_a_stale_partial_directory(tmp_path, base_model_dir, dataset_file):
    out = tmp_path / "padded"
    stale = partial_dir(out)
    stale.mkdir()
    (stale / "model.safetensors").write_text("half-written by a killed worker")
    out.mkdir()  # an empty output_dir is fine
    result = main(_cfg(base_model_dir, dataset_file, out, packing=False, max_steps=2))
    assert result.status == "completed" and result.steps == 2
    assert not stale.exists()
    AutoModelForCausalLM.from_pretrained(out)


def test_missing_base_model_fails_before_anything_heavy(tmp_path, dataset_file):
    for missing in (tmp_path / "no-such-model", "./no-such-model", "~/no/such/model"):
        with pytest.raises(ModelNotFoundError, match="does not exist"):
            main(_cfg(missing, dataset_file, tmp_path / "o"))
    not_a_model = tmp_path / "empty-dir"
    not_a_model.mkdir()
    with pytest.raises(ModelNotFoundError, match=r"no config\.json"):
        main(_cfg(not_a_model, dataset_file, tmp_path / "o"))


def test_output_dir_with_files_is_refused(tmp_path, base_model_dir, dataset_file):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "model.safetensors").write_text("someone else's model")
    with pytest.raises(ConfigError, match="not empty"):
        main(_cfg(base_model_dir, dataset_file, out))


def test_dataset_errors_come_before_the_model_is_loaded(tmp_path, base_model_dir, rows):
    broken = tmp_path / "broken-weights"
    shutil.copytree(base_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(DatasetError, match="longer than max_length=64") as err:
        main(_cfg(broken, write_jsonl(tmp_path / "d.jsonl", rows), tmp_path / "o", max_length=64))
    assert len(err.value.ids) == len(rows)
    with pytest.raises(DatasetError, match="empty"):
        main(_cfg(broken, write_jsonl(tmp_path / "e.jsonl", []), tmp_path / "o"))
    no_assistant = [{"messages": [{"role": "user", "content": "hi"}], "trajectory_id": "x"}]
    with pytest.raises(DatasetError, match=r"1 with no assistant message \(x\)$"):
        main(_cfg(broken, write_jsonl(tmp_path / "n.jsonl", no_assistant), tmp_path / "o"))


def test_cli_prints_progress_and_result(tmp_path, base_model_dir, dataset_file, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(
        f"model_name_or_path: {base_model_dir}\ndataset: {dataset_file}\n"
        "learning_rate: 3.0e-3\nmax_length: 512\ngradient_checkpointing: false\n",
        encoding="utf-8",
    )
    out = tmp_path / "cli-out"
    code = cli(["--config", str(config), "--output_dir", str(out), "--max_steps", "2"])
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]  # stdout is all JSON
    assert code == 0
    assert lines[-1]["result"]["status"] == "completed" and lines[-1]["result"]["steps"] == 2
    assert any(line.get("status") == "running" for line in lines)
    assert (out / "config.json").is_file()

    code = cli(["--config", str(config), "--output_dir", str(out), "--model_name_or_path", "/x"])
    assert code == 2
    assert "base model path does not exist: /x" in capsys.readouterr().err
