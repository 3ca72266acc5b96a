"""The bundled sample set is the tiny policy's problem pool, so the demo has seed candidates.

A model of this size learns a few dozen problems rather than arithmetic (see
training.tiny_policy.problem_pool): on other problems it would have no hinted successes at all.
"""

import json
from pathlib import Path

from curation.problems import normalize_record
from training.tiny_policy import problem_pool

DATA = Path(__file__).resolve().parent.parent / "curation" / "data"


def test_bundled_sample_problems_are_the_tiny_policys_pool():
    records = [
        json.loads(line) for line in (DATA / "sample_problems.jsonl").read_text().splitlines()
    ]
    bundled = [(s.prompt, s.answer, s.tests) for s in map(normalize_record, records)]
    pool = [(e.problem.prompt, e.problem.answer, e.problem.tests) for e in problem_pool()]
    assert bundled == pool


def test_the_sample_eval_set_is_held_out():
    train = {json.loads(line)["problem"] for line in (DATA / "sample_problems.jsonl").open()}
    held_out = [json.loads(line)["problem"] for line in (DATA / "sample_eval.jsonl").open()]
    assert held_out and not train.intersection(held_out)
