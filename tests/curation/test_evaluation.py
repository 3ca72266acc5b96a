import csv
import io

import pytest

from curation.evaluation import build_table, wilson_interval


def test_wilson_interval_matches_known_values():
    # 8/10: the textbook Wilson 95 % interval is about (0.490, 0.943).
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3)
    assert high == pytest.approx(0.9433, abs=1e-3)


@pytest.mark.parametrize("successes,n", [(0, 30), (30, 30), (1, 1)])
def test_wilson_interval_stays_inside_0_1_and_contains_the_estimate(successes, n):
    low, high = wilson_interval(successes, n)
    assert 0.0 <= low <= successes / n <= high <= 1.0


def test_table_adds_up_repeated_cells_and_writes_csv():
    table = build_table(
        [
            ("base", "aime24", 3, 10),
            ("base", "aime24", 2, 10),
            ("base + Hint-infer", "aime24", 9, 20),
            ("base", "amc23", 1, 4),
        ]
    )
    assert table.columns == ["aime24", "amc23"]
    cells = dict(table.rows)
    assert (cells["base"]["aime24"].correct, cells["base"]["aime24"].n) == (5, 20)
    assert "amc23" not in cells["base + Hint-infer"]
    rows = list(csv.reader(io.StringIO(table.to_csv())))
    assert rows[0][:3] == ["policy", "aime24 acc %", "aime24 ci_low %"]
    assert rows[1][0:2] == ["base", "25.0"]
    assert rows[2][-4:] == ["", "", "", ""]
