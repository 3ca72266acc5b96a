"""Evaluation tables like the paper's: pass@1 per policy and benchmark, with an interval."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass


def wilson_interval(successes: int, n: int, *, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (95 % by default).

    Unlike the normal approximation it stays inside [0, 1] and behaves at 0 and n successes,
    which small benchmarks such as AIME (30 problems) hit.
    """
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class Cell:
    correct: int
    n: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.correct, self.n)

    def __str__(self) -> str:
        low, high = self.interval
        return f"{100 * self.accuracy:.1f} ({100 * low:.1f}–{100 * high:.1f}, n={self.n})"


@dataclass
class Table:
    columns: list[str]
    rows: list[tuple[str, dict[str, Cell]]]

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        header = ["policy"]
        for column in self.columns:
            header += [
                f"{column} acc %",
                f"{column} ci_low %",
                f"{column} ci_high %",
                f"{column} n",
            ]
        writer.writerow(header)
        for label, cells in self.rows:
            line = [label]
            for column in self.columns:
                cell = cells.get(column)
                if cell is None:
                    line += ["", "", "", ""]
                else:
                    low, high = cell.interval
                    percents = (cell.accuracy, low, high)
                    line += [*(f"{100 * value:.1f}" for value in percents), cell.n]
            writer.writerow(line)
        return out.getvalue()


def build_table(records: Iterable[tuple[str, str, int, int]]) -> Table:
    """Records of (row label, column, correct, n) → a table; repeated keys add up, order kept."""
    columns: list[str] = []
    rows: dict[str, dict[str, Cell]] = {}
    for label, column, correct, n in records:
        if column not in columns:
            columns.append(column)
        cells = rows.setdefault(label, {})
        previous = cells.get(column, Cell(0, 0))
        cells[column] = Cell(previous.correct + correct, previous.n + n)
    return Table(columns=columns, rows=list(rows.items()))
