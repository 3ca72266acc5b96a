"""The tiny policy's synthetic corpus and its content-hash cache (the training itself runs in
the engine and rollout tests, which use the built policy)."""

from __future__ import annotations

import time

from curation.hints import HINTS
from curation.trajectory import parse, render
from training.tiny_policy import (
    TinyPolicyConfig,
    build_corpus,
    build_tiny_policy,
    content_hash,
    corpus_rows,
    problem_pool,
    sample_problems,
)
from workers import sandbox

SMALL = TinyPolicyConfig(n_trajectories=120)


def test_the_corpus_is_start_format_with_real_outputs():
    samples = build_corpus(SMALL)
    assert len(samples) == 120
    hint_texts = [h.text for h in HINTS]
    for sample in samples:
        text = sample.completion
        segments = parse(text, hints=hint_texts)
        assert render(segments) == text
        assert text.startswith("<think>\n") and "</think>" in text
        kinds = [s.kind for s in segments]
        for i, segment in enumerate(segments):
            if segment.kind == "code" and i + 1 < len(kinds) and kinds[i + 1] == "output":
                assert segment.closed
                # The output block holds what the sandbox prints for that code.
                assert segments[i + 1].body == sandbox.run(segment.body).as_output_block_text()
    assert any(not s.correct for s in samples) and any(s.correct for s in samples)
    assert {s.problem.domain for s in samples} == {"math", "code"}


def test_rows_mask_hints_and_outputs():
    rows = corpus_rows(build_corpus(SMALL))
    hinted = 0
    for row in rows:
        content = row["messages"][-1]["content"]
        masked = "".join(content[a:b] for a, b in row["mask_spans"])
        assert masked.count("```output") == content.count("```output")
        hinted += any(h.text.removesuffix("```python") in masked for h in HINTS)
    assert hinted > 0
    assert [m["role"] for m in rows[0]["messages"]] == ["system", "user", "assistant"]


def test_the_same_config_gives_the_same_corpus_and_hash():
    rows = corpus_rows(build_corpus(SMALL))
    assert rows == corpus_rows(build_corpus(SMALL))
    assert content_hash(SMALL, rows) == content_hash(SMALL, corpus_rows(build_corpus(SMALL)))
    other = TinyPolicyConfig(n_trajectories=120, seed=7)
    assert content_hash(other, corpus_rows(build_corpus(other))) != content_hash(SMALL, rows)


def test_sample_problems_come_from_the_pool_the_policy_learnt():
    prompts = {entry.problem.prompt for entry in problem_pool()}
    for kind in ("single", "multi", "code"):
        problems = sample_problems(5, seed=3, kind=kind)
        assert all(p.prompt in prompts for p in problems)
    assert len({p.prompt for p in sample_problems(5, seed=3)}) == 5


def test_a_cached_policy_is_returned_without_building(tmp_path, monkeypatch):
    monkeypatch.setenv("TINY_POLICY_CACHE", str(tmp_path))
    digest = content_hash(SMALL, corpus_rows(build_corpus(SMALL)))
    (tmp_path / digest).mkdir()
    (tmp_path / digest / "config.json").write_text("{}")
    started = time.perf_counter()
    assert build_tiny_policy(config=SMALL) == tmp_path / digest
    assert time.perf_counter() - started < 5
