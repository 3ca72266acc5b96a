import csv
import io
import re

import pytest

from curation import selectors, services
from curation.evaluation import (
    Cell,
    Record,
    Setting,
    build_table,
    scaling_chart,
    scaling_series,
    setting_of,
    wilson_interval,
)
from curation.models import Round, RoundKind, RunStatus
from tests.factories import (
    PolicyFactory,
    ProblemFactory,
    ProblemSetFactory,
    RoundFactory,
    TrajectoryFactory,
)


def test_wilson_interval_matches_known_values():
    # 8/10: the textbook Wilson 95 % interval is about (0.490, 0.943).
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3)
    assert high == pytest.approx(0.9433, abs=1e-3)


@pytest.mark.parametrize("successes,n", [(0, 30), (30, 30), (1, 1)])
def test_wilson_interval_stays_inside_0_1_and_contains_the_estimate(successes, n):
    low, high = wilson_interval(successes, n)
    assert 0.0 <= low <= successes / n <= high <= 1.0


def setting(**changes) -> Setting:
    base = {
        "hinted": False,
        "tools": True,
        "samples": 1,
        "temperature": 0.0,
        "max_tool_calls": 6,
        "end_repeats": 0,
        "top_p": 1.0,
        "max_tokens": 2048,
    }
    return Setting(**{**base, **changes})


def test_rows_of_one_setting_add_up_and_unlike_settings_never_share_a_cell():
    greedy, warm = setting(), setting(temperature=0.6)
    table = build_table(
        [
            Record("base", greedy, "aime24", "r1", Cell(3, 10, tool_used=2, calls=5, tokens=100)),
            Record("base", greedy, "aime24", "r2", Cell(2, 10, tool_used=0, calls=0, tokens=300)),
            Record("base", warm, "aime24", "r3", Cell(9, 10)),
            Record("base", setting(hinted=True, end_repeats=1), "aime24", "r4", Cell(9, 20)),
            Record("base", greedy, "amc23", "r1", Cell(1, 4, unscored=1)),
        ]
    )
    assert table.columns == ["aime24", "amc23"]
    assert [(row.label, row.setting.temperature) for row in table.rows] == [
        ("base", 0.0),
        ("base", 0.6),
        ("base + Hint-infer", 0.0),
    ]
    first = table.rows[0]
    assert first.rounds == ["r1", "r2"]
    cell = first.cells["aime24"]
    assert (cell.correct, cell.n, cell.tool_used) == (5, 20, 2)
    assert cell.tool_rate == 0.1 and cell.mean_calls == 0.25 and cell.mean_tokens == 20.0
    assert table.rows[1].cells["aime24"].n == 10  # the T=0.6 round is a row of its own
    assert "amc23" not in table.rows[1].cells


def test_csv_has_the_settings_and_every_cell_figure():
    table = build_table(
        [
            Record("base", setting(), "aime24", "r1", Cell(1, 4, tool_used=2, calls=3, tokens=8)),
            Record("base", setting(tools=False, max_tool_calls=0), "amc23", "r2", Cell(0, 2)),
        ]
    )
    rows = list(csv.reader(io.StringIO(table.to_csv())))
    header = rows[0]
    assert header[:7] == [
        "policy",
        "hinted",
        "tools",
        "samples",
        "temperature",
        "max_tool_calls",
        "end_repeats",
    ]
    record = dict(zip(header, rows[1], strict=True))
    assert record["aime24 acc %"] == "25.0" and record["aime24 n"] == "4"
    assert record["aime24 ci_low %"] == "4.6" and record["aime24 ci_high %"] == "69.9"
    assert record["aime24 tool_rate %"] == "50.0" and record["aime24 mean_calls"] == "0.75"
    assert record["aime24 mean_tokens"] == "2.0" and record["amc23 acc %"] == ""
    second = dict(zip(header, rows[2], strict=True))
    assert second["tools"] == "False" and second["rounds"] == "r2"


def test_the_scaling_figure_joins_rows_that_differ_only_in_end_repeats():
    records = [
        Record("START", setting(hinted=True, end_repeats=k), "aime24", f"s{k}", Cell(c, 10))
        for k, c in ((0, 3), (2, 6), (1, 5))
    ]
    # Another temperature is another line; a lone point and plain rows are no line.
    warm = setting(hinted=True, end_repeats=1, temperature=0.6)
    records += [
        Record("START", warm, "aime24", "x", Cell(1, 2)),
        Record("START", setting(), "aime24", "plain", Cell(2, 10)),
    ]
    table = build_table(records)
    [series] = scaling_series(table)
    assert series.label == "START on aime24"
    assert [(p.end_repeats, p.cell.correct) for p in series.points] == [(0, 3), (1, 5), (2, 6)]

    chart = scaling_chart([series], width=400, height=200)
    [line] = chart["lines"]
    xs = [mark["x"] for mark in line["marks"]]
    ys = [mark["y"] for mark in line["marks"]]
    assert xs == sorted(xs) and xs[0] == chart["left"] and xs[-1] == chart["right"]
    assert ys[0] > ys[1] > ys[2]  # higher accuracy is drawn higher
    assert all(m["y_high"] <= m["y"] <= m["y_low"] for m in line["marks"])
    assert [tick["label"] for tick in chart["x_ticks"]] == [0, 1, 2]
    assert scaling_chart([]) is None


def test_setting_of_a_round_reads_the_cap_the_workers_use():
    plain = setting_of(
        hinted=False,
        samples=4,
        temperature=0.6,
        top_p=0.95,
        max_tokens=512,
        hint_config={"end_repeats": 3, "max_tool_calls": 2},
        tool_config={},
    )
    assert (plain.tools, plain.max_tool_calls, plain.end_repeats, plain.hints) == (
        True,
        2,
        0,
        "",
    )
    hinted = setting_of(
        hinted=True,
        samples=1,
        temperature=0.0,
        top_p=1.0,
        max_tokens=512,
        hint_config={"end_repeats": 3, "max_tool_calls": 2},
        tool_config={"max_calls": 0},
    )
    assert (hinted.tools, hinted.max_tool_calls, hinted.end_repeats) == (False, 0, 3)
    assert hinted.sandbox == "" and "texts " in hinted.hints
    # The paper's seed baseline: code runs for hinted samples only.
    only_hinted = {"hint_config": {}, "tool_config": {"run_code": "hinted", "max_calls": 4}}
    common = {"samples": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 512, **only_hinted}
    assert setting_of(hinted=True, **common).max_tool_calls == 4
    assert setting_of(hinted=False, **common).tools is False


# --- From the database ------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_table_of_eval_rounds_keeps_rounds_of_unlike_settings_apart():
    policy = PolicyFactory(name="base")
    problem_set = ProblemSetFactory(name="aime24")
    problems = ProblemFactory.create_batch(2, problem_set=problem_set)
    greedy = RoundFactory(kind=RoundKind.EVAL, policy=policy, samples_hinted=1, samples_plain=1)
    sampled = RoundFactory(kind=RoundKind.EVAL, policy=policy, samples_plain=4, temperature=0.6)
    RoundFactory(kind=RoundKind.SEED, policy=policy)  # not an eval round: not in the table
    for problem in problems:
        for hinted, calls, tokens in ((False, 0, 10), (True, 3, 30)):
            TrajectoryFactory(
                round=greedy,
                problem=problem,
                hinted=hinted,
                is_correct=True,
                num_tool_calls=calls,
                num_tokens=tokens,
            )
        for index in range(4):  # one correct, three unscored; calls on every other sample
            TrajectoryFactory(
                round=sampled,
                problem=problem,
                hinted=False,
                sample_index=index,
                is_correct=True if index == 0 else None,
                num_tool_calls=index % 2,
            )

    table = selectors.evaluation_table()
    assert table.columns == ["aime24"]
    by_key = {(row.setting.hinted, row.setting.temperature): row for row in table.rows}
    assert list(by_key) == [(False, 0.0), (False, 0.6), (True, 0.0)]
    plain = by_key[False, 0.0].cells["aime24"]
    assert (plain.correct, plain.n, plain.tool_rate, plain.mean_tokens) == (2, 2, 0.0, 10.0)
    hinted = by_key[True, 0.0].cells["aime24"]
    assert (hinted.n, hinted.tool_rate, hinted.mean_calls) == (2, 1.0, 3.0)
    warm = by_key[False, 0.6]
    assert warm.setting.samples == 4 and warm.rounds == [sampled.name]
    assert (warm.cells["aime24"].correct, warm.cells["aime24"].n) == (2, 8)
    assert warm.cells["aime24"].unscored == 6 and warm.cells["aime24"].tool_rate == 0.5

    other = ProblemSetFactory(name="amc23")
    TrajectoryFactory(round=greedy, problem=ProblemFactory(problem_set=other), hinted=False)
    assert selectors.evaluation_table(problem_sets=[other]).columns == ["amc23"]
    assert selectors.evaluation_table(policies=[PolicyFactory()]).rows == []


# --- The sweep --------------------------------------------------------------------------------


@pytest.fixture
def eval_set():
    problem_set = ProblemSetFactory(name="held-out")
    ProblemFactory.create_batch(3, problem_set=problem_set, split="test")
    return problem_set


@pytest.mark.django_db
def test_one_call_launches_an_eval_round_per_end_hint_count(
    eval_set, django_capture_on_commit_callbacks, settings
):
    settings.ROLLOUT_CHUNK_SIZE = 2
    policy = PolicyFactory(name="START")
    with django_capture_on_commit_callbacks() as callbacks:
        rounds = services.evaluation_sweep_launch(
            name="tts", policy=policy, problem_sets=[eval_set], end_repeats=[2, 0, 1], samples=2
        )
    assert [r.name for r in rounds] == ["tts-end0", "tts-end1", "tts-end2"]
    for k, round_ in enumerate(rounds):
        assert round_.kind == RoundKind.EVAL and round_.status == RunStatus.QUEUED
        assert (round_.samples_hinted, round_.samples_plain, round_.total) == (2, 0, 6)
        hints = round_.hint_config
        assert hints["end_repeats"] == k and hints["end_of_thinking"] is True
        assert hints["conjunction_probability"] == 0.0 and hints["library"]
    assert len(callbacks) == 3 * 2  # two chunks per round, enqueued once the sweep commits

    # The three rounds differ only in their end repeats: one line of the scaling figure.
    for k, round_ in enumerate(rounds):
        for problem in eval_set.problems.all():
            TrajectoryFactory(round=round_, problem=problem, hinted=True, is_correct=k > 0)
    [series] = scaling_series(selectors.evaluation_table(rounds=rounds))
    assert [(p.end_repeats, p.cell.accuracy) for p in series.points] == [(0, 0), (1, 1), (2, 1)]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"policy": None}, "policy", "needs a policy"),
        ({"problem_sets": []}, "problem_sets", "at least one problem set"),
        ({"end_repeats": [1]}, "end_repeats", "two or more"),
        ({"end_repeats": [1, 1]}, "end_repeats", "two or more"),
        ({"end_repeats": [0, -1]}, "end_repeats", "integer in [0, 32]"),
        ({"samples": 0}, "samples", "positive integer"),
        ({"temperature": 9.0}, "temperature", "must be in"),
        ({"name": " "}, "name", "needs a name"),
    ],
)
def test_a_bad_sweep_is_refused_with_the_field_and_creates_nothing(eval_set, changes, field, words):
    arguments = {"name": "tts", "policy": PolicyFactory(), "problem_sets": [eval_set], **changes}
    with pytest.raises(services.SettingError, match=re.escape(words)) as info:
        services.evaluation_sweep_launch(**arguments)
    assert info.value.field == field
    assert not Round.objects.exists()


@pytest.mark.django_db
def test_a_sweep_is_all_or_nothing(eval_set):
    RoundFactory(name="tts-end2")
    with pytest.raises(services.ConflictError, match="tts-end2"):
        services.evaluation_sweep_launch(
            name="tts", policy=PolicyFactory(), problem_sets=[eval_set]
        )
    # A split without problems fails the launch of the first round: no round is left behind.
    with pytest.raises(services.ConflictError, match="no problems"):
        services.evaluation_sweep_launch(
            name="train-only", policy=PolicyFactory(), problem_sets=[eval_set], split="train"
        )
    assert list(Round.objects.values_list("name", flat=True)) == ["tts-end2"]
