"""Preference pairs of a frozen version (TRL's conversational preference format) and the dataset
card of the Hugging Face folder layout: both loaded back by `datasets`, the pairs by TRL."""

import io
import json

import pyarrow.parquet as pq
import pytest
import yaml
from django.core.management import CommandError, call_command
from huggingface_hub import DatasetCard

from curation import review
from curation.datasets import dataset_version_freeze
from curation.exporting import Export, dataset_card, export_folder, preference_pair_counts
from curation.models import Candidate, Dataset, DatasetKind, ReviewStatus, Trajectory
from curation.trajectory import loss_mask_spans, output_block, parse
from tests.factories import ProblemFactory, RoundFactory, TrajectoryFactory, UserFactory

pytestmark = pytest.mark.django_db

HINT = "Wait, I can use Python to check if my approach is correct and refine it, if necessary."


def _text(n: int, words: str = "Let me add") -> str:
    return (
        f"<think>\n{words} {n} and {n}.\n{HINT}```python\nprint({n} + {n})\n```\n"
        f"{output_block(str(2 * n))}So it is {2 * n}.\n</think>\n\n"
        f"The answer is \\boxed{{{2 * n}}}."
    )


def _trajectory(round_, problem, n: int, **fields) -> Trajectory:
    return TrajectoryFactory(
        round=round_,
        problem=problem,
        text=_text(n),
        hints=[HINT],
        candidate=Candidate.SEED,
        **fields,
    )


def _decide(trajectory, user, decision: str) -> Trajectory:
    current = Trajectory.objects.get(pk=trajectory.pk)
    reason = "Wrong final answer" if decision == ReviewStatus.REJECTED else ""
    return review.trajectory_decide(
        trajectory=current,
        decision=decision,
        user=user,
        base_version=current.version,
        reason=reason,
    )


@pytest.fixture
def history():
    """Two problems reviewed in a seed round, then frozen; more happens after the freeze.

    Problem A: `fixed` (its reasoning edited, then approved) and `wrong` (rejected).
    Problem B: `clean` (approved as generated) and `reopened` (rejected, then edited, which
    reopens it: not rejected at the freeze). Another round's rejection of problem A and a
    rejection after the freeze make no pair.
    """
    ann = UserFactory(username="ann")
    round_, other_round = RoundFactory(), RoundFactory()
    a, b = ProblemFactory(prompt="What is 3 + 3?"), ProblemFactory(prompt="What is 4 + 4?")
    fixed, wrong, late = (_trajectory(round_, a, n) for n in (3, 30, 31))
    clean, reopened = _trajectory(round_, b, 4), _trajectory(round_, b, 40)
    elsewhere = _trajectory(other_round, a, 32)

    review.trajectory_edit_segment(
        trajectory=fixed, segment_index=0, text="<think>\nAdd 3 to 3.\n", author=ann, base_version=1
    )
    for trajectory, decision in (
        (fixed, ReviewStatus.APPROVED),
        (wrong, ReviewStatus.REJECTED),
        (clean, ReviewStatus.APPROVED),
        (reopened, ReviewStatus.REJECTED),
        (elsewhere, ReviewStatus.REJECTED),
    ):
        _decide(trajectory, ann, decision)
    current = Trajectory.objects.get(pk=reopened.pk)
    review.trajectory_edit_segment(
        trajectory=current,
        segment_index=0,
        text="<think>\nHm.\n",
        author=ann,
        base_version=current.version,
    )
    dataset = Dataset.objects.create(name="d-seed", kind=DatasetKind.SEED)
    version = dataset_version_freeze(dataset=dataset, rounds=[round_])
    _decide(late, ann, ReviewStatus.REJECTED)
    return version, {t.pk: t for t in (fixed, wrong, clean)}, {"a": a, "b": b}


def _rows(version, format: str = "preference") -> list[dict]:
    body = b"".join(Export(version, format).chunks())
    if format == "preference_parquet":
        return pq.read_table(io.BytesIO(body)).to_pylist()
    return [json.loads(line) for line in body.splitlines()]


def test_pairs_of_fixes_and_of_decisions_in_trls_format(history):
    version, trajectories, problems = history
    fixed_id = min(trajectories)  # fixed, wrong, clean were created in that order
    fixed, wrong = (Trajectory.objects.get(pk=pk) for pk in sorted(trajectories)[:2])
    rows = _rows(version)
    assert [(r["pair"], r["chosen_trajectory_id"], r["rejected_trajectory_id"]) for r in rows] == [
        ("correction", fixed_id, fixed_id),
        ("decision", fixed_id, wrong.pk),
    ]
    assert preference_pair_counts(version) == {"correction": 1, "decision": 1}
    assert Export(version, "preference").row_count == 2
    correction, decision = rows
    system, user = correction["prompt"]
    assert system["role"] == "system" and user == {"role": "user", "content": "What is 3 + 3?"}
    assert correction["chosen"] == [{"role": "assistant", "content": fixed.text}]
    assert correction["rejected"] == [{"role": "assistant", "content": fixed.original_text}]
    assert decision["rejected"] == [{"role": "assistant", "content": wrong.text}]
    assert decision["problem_id"] == problems["a"].pk and decision["dataset_version"] == "d-seed/v1"
    # Mask spans kept on both sides: the hint and the output block carry no loss.
    item = version.items.get(trajectory_id=fixed_id)
    assert correction["chosen_mask_spans"] == item.mask_spans
    assert correction["rejected_mask_spans"] == loss_mask_spans(
        parse(fixed.original_text, hints=[HINT])
    )
    for row in rows:
        for side in ("chosen", "rejected"):
            text = row[side][0]["content"]
            masked = [text[start:end] for start, end in row[f"{side}_mask_spans"]]
            assert len(masked) == 2 and masked[0].startswith(HINT), masked
            assert masked[1].startswith("```output\n"), masked
    assert _rows(version, "preference_parquet") == rows


def test_pairs_are_those_of_the_freeze_whatever_happens_later(history):
    version, trajectories, _ = history
    before = b"".join(Export(version, "preference").chunks())
    wrong = Trajectory.objects.get(pk=sorted(trajectories)[1])
    ann = UserFactory(username="ann")
    _decide(wrong, ann, ReviewStatus.PENDING)  # reopened and edited after the freeze
    current = Trajectory.objects.get(pk=wrong.pk)
    review.trajectory_edit_segment(
        trajectory=current,
        segment_index=0,
        text="<think>\nChanged later.\n",
        author=ann,
        base_version=current.version,
    )
    assert b"".join(Export(version, "preference").chunks()) == before


def test_each_rejected_text_is_paired_once_with_the_members_in_turn(monkeypatch):
    ann = UserFactory(username="ann")
    round_, problem = RoundFactory(), ProblemFactory()
    members = [_trajectory(round_, problem, n, review_status="approved") for n in (1, 2)]
    rejected = [_trajectory(round_, problem, n) for n in (10, 11, 12)]
    for trajectory in rejected:
        _decide(trajectory, ann, ReviewStatus.REJECTED)
    dataset = Dataset.objects.create(name="many", kind=DatasetKind.CUSTOM)
    version = dataset_version_freeze(dataset=dataset, rounds=[round_])
    pairs = [(r["chosen_trajectory_id"], r["rejected_trajectory_id"]) for r in _rows(version)]
    m, r = [t.pk for t in members], [t.pk for t in rejected]
    assert pairs == [(m[0], r[0]), (m[1], r[1]), (m[0], r[2])]
    monkeypatch.setattr("curation.exporting.CHOSEN_PER_PROBLEM", 1)  # memory stays bounded
    assert [c for c, _ in ((r["chosen_trajectory_id"], 0) for r in _rows(version))] == [m[0]] * 3


def test_a_version_without_fixes_or_rejections_has_no_pairs(history):
    round_ = RoundFactory()
    _trajectory(round_, ProblemFactory(), 5, review_status=ReviewStatus.APPROVED)
    dataset = Dataset.objects.create(name="plain", kind=DatasetKind.SEED)
    version = dataset_version_freeze(dataset=dataset, rounds=[round_])
    assert _rows(version) == [] and _rows(version, "preference_parquet") == []
    assert Export(version, "preference").row_count == 0


def test_the_folder_loads_with_datasets_and_its_card_describes_the_version(history, tmp_path):
    import datasets

    version, trajectories, _ = history
    for file_type in ("jsonl", "parquet"):
        folder = tmp_path / file_type
        written = export_folder(version=version, folder=folder, file_type=file_type, license="mit")
        assert sorted(p.relative_to(folder).as_posix() for p in written.values()) == [
            "README.md",
            f"preference/train.{file_type}",
            f"sft/train.{file_type}",
        ]
        cache = str(tmp_path / "cache" / file_type)  # its own: never an earlier run's rows
        sft = datasets.load_dataset(str(folder), split="train", cache_dir=cache)
        assert sorted(sft["trajectory_id"]) == sorted(trajectories.keys() - {min(trajectories) + 1})
        assert sft[0]["messages"][2]["role"] == "assistant" and "mask_spans" in sft.column_names
        pairs = datasets.load_dataset(str(folder), "preference", split="train", cache_dir=cache)
        assert pairs["pair"] == ["correction", "decision"]
        assert {"prompt", "chosen", "rejected"} <= set(pairs.column_names)

    card = (tmp_path / "jsonl" / "README.md").read_text()
    front, body = card.removeprefix("---\n").split("\n---\n", 1)
    meta = yaml.safe_load(front)
    assert meta["license"] == "mit"
    assert [c["config_name"] for c in meta["configs"]] == ["sft", "preference"]
    own = meta["start_curation"]
    assert own["content_hash"] == version.content_hash and own["rows"] == 2
    assert [r["name"] for r in own["source_rounds"]] == [
        version.items.first().trajectory.round.name
    ]
    assert own["funnel"] == version.funnel and own["rules"]["rounds"] == version.rules["rounds"]
    assert own["preference_pairs"] == {"correction": 1, "decision": 1}
    assert "agreement" not in card  # not computed by this app: left out, not made up
    hub = DatasetCard(card)  # what the Hub's client reads from README.md
    assert hub.data.license == "mit" and hub.data.pretty_name == "d-seed v1"
    assert [c["config_name"] for c in hub.data.configs] == ["sft", "preference"]
    assert "# d-seed v1" in body and "## Loss masks" in body


def test_the_folder_must_be_new_or_empty(history, tmp_path):
    version, _, _ = history
    (tmp_path / "old.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not an empty folder"):
        export_folder(version=version, folder=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["old.txt"]
    with pytest.raises(CommandError, match="not an empty folder"):
        call_command("export_dataset", "d-seed", "--output-dir", str(tmp_path))
    with pytest.raises(CommandError, match="not both"):
        call_command(
            "export_dataset", "d-seed", "--output-dir", str(tmp_path / "x"), "--output", "f"
        )


def test_the_command_writes_pairs_and_the_folder(history, tmp_path):
    version, _, _ = history
    out = tmp_path / "pairs.jsonl"
    call_command("export_dataset", "d-seed", "--format", "preference", "--output", str(out))
    assert [json.loads(line)["pair"] for line in out.read_text().splitlines()] == [
        "correction",
        "decision",
    ]
    call_command("export_dataset", "d-seed", "--output-dir", str(tmp_path / "hf"))
    assert (tmp_path / "hf" / "README.md").read_text() == dataset_card(version=version)


@pytest.mark.train
def test_trls_dpo_trainer_takes_the_pairs_and_runs_a_step(history, tmp_path, tiny_policy_path):
    import math

    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    version, _, _ = history
    export_folder(version=version, folder=tmp_path / "hf")
    pairs = datasets.load_dataset(
        str(tmp_path / "hf"), "preference", split="train", cache_dir=str(tmp_path / "cache")
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_policy_path)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    args = DPOConfig(
        output_dir=str(tmp_path / "out"),
        max_steps=1,
        per_device_train_batch_size=2,
        max_length=1024,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
    )
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=pairs,
        processing_class=AutoTokenizer.from_pretrained(tiny_policy_path),
    )
    result = trainer.train()
    assert result.global_step == 1 and math.isfinite(result.training_loss)
    assert any(not torch.equal(before[name], p) for name, p in model.named_parameters())


def test_the_api_serves_the_pairs_and_the_card(history):
    from django.contrib.auth.models import Group
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    from curation.roles import ANNOTATOR

    version, _, _ = history
    user = UserFactory(username="trainer")
    user.groups.add(Group.objects.get(name=ANNOTATOR))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    base = "/api/datasets/d-seed/versions/1"
    pairs = client.get(f"{base}/export", {"format": "preference"})
    assert pairs.status_code == 200 and pairs["X-Row-Count"] == "2"
    assert pairs["Content-Disposition"] == 'attachment; filename="d-seed-v1.preference.jsonl"'
    body = b"".join(pairs.streaming_content)
    assert body == b"".join(Export(version, "preference").chunks())
    parquet = client.get(f"{base}/export", {"format": "preference_parquet"})
    assert parquet["Content-Type"] == "application/vnd.apache.parquet"
    card = client.get(f"{base}/card/")
    assert card.status_code == 200 and card["Content-Type"].startswith("text/markdown")
    assert card.content.decode() == dataset_card(version=version)
    assert client.get("/api/datasets/d-seed/versions/9/card/").status_code == 404
    assert client.get(f"{base}/export", {"format": "dpo"}).status_code == 400
