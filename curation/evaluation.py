"""Evaluation tables like the paper's, and its test-time scaling figure: no Django here.

A row is a policy under one setting (hinted or not, tools on or off, samples per problem,
temperature, tool-call cap, end-of-thinking hint repeats, and whatever else shapes generation);
a column is a problem set; a cell holds pass@1 with its Wilson interval, the tool-use rate (the
share of trajectories with at least one executed call), mean calls and mean tokens. Trajectories
of unlike settings never share a cell; rounds of the same setting add up.

`curation.selectors.evaluation_table` reads the records from the database; the admin, the API
and `run_loop` render the same `Table`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from curation.execution import Limits
from curation.hints import HintConfig


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


# --- Settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """What a row's trajectories were generated under. The first six are the table's headline
    columns; the last four are shown where rows differ in them."""

    hinted: bool
    tools: bool
    samples: int  # per problem (the k of pass@1 averaged over k samples)
    temperature: float
    max_tool_calls: int  # 0 with tools off
    end_repeats: int  # end-of-thinking hints (the test-time scaling k); 0 without hints
    top_p: float = 1.0
    max_tokens: int = 0
    hints: str = ""  # hinted rows: which hints, where, and a digest of their texts
    sandbox: str = ""  # tools on: the sandbox's limits and mode

    HEADLINE = ("hinted", "tools", "samples", "temperature", "max_tool_calls", "end_repeats")
    OTHER = ("top_p", "max_tokens", "hints", "sandbox")

    def without_end_repeats(self) -> Setting:
        return replace(self, end_repeats=-1)


def tool_call_cap(
    *, hinted: bool, tool_config: Mapping[str, Any], hint_config: Mapping[str, Any]
) -> int:
    """The executed-call cap of a round's hinted (or plain) samples, as the workers read it:
    the tool config's `max_calls`, else the hint config's; 0 where `run_code` runs none of
    them ("none": no sample; "hinted": hinted samples only)."""
    run_code = tool_config.get("run_code", "all")
    if run_code == "none" or (run_code == "hinted" and not hinted):
        return 0
    if "max_calls" in tool_config:
        return int(tool_config["max_calls"])
    return HintConfig.from_dict(hint_config).max_tool_calls


def setting_of(
    *,
    hinted: bool,
    samples: int,
    temperature: float,
    top_p: float,
    max_tokens: int,
    hint_config: Mapping[str, Any],
    tool_config: Mapping[str, Any],
) -> Setting:
    """The setting of a round's hinted (or plain) samples, from its stored settings."""
    max_calls = tool_call_cap(hinted=hinted, tool_config=tool_config, hint_config=hint_config)
    hints = HintConfig.from_dict(hint_config)
    end_repeats = hints.end_repeats if hinted and hints.end_of_thinking else 0
    hint_text = ""
    if hinted:
        texts = "\n".join(h.text for h in hints.hint_library if h.name in hints.hints)
        digest = hashlib.sha256(texts.encode()).hexdigest()[:8]
        conjunctions = (
            f"p={hints.conjunction_probability:g} ≤{hints.max_hints} at "
            + "/".join(hints.conjunctions)
            if hints.conjunction_probability > 0 and hints.max_hints > 0
            else "none at conjunctions"
        )
        hint_text = f"{'/'.join(hints.hints)}; {conjunctions}; texts {digest}"
    sandbox = ""
    if max_calls > 0:
        limits = Limits.from_tool_config(dict(tool_config))
        sandbox = f"{limits.wall_s:g} s, {limits.memory_bytes >> 20} MB" + (
            ", notebook" if tool_config.get("notebook") else ""
        )
    return Setting(
        hinted=hinted,
        tools=max_calls > 0,
        samples=samples,
        temperature=temperature,
        max_tool_calls=max_calls,
        end_repeats=end_repeats,
        top_p=top_p,
        max_tokens=max_tokens,
        hints=hint_text,
        sandbox=sandbox,
    )


# --- Cells, rows, the table -------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    correct: int
    n: int
    tool_used: int = 0  # trajectories with >= 1 executed call
    calls: int = 0  # executed calls, summed
    tokens: int = 0  # generated tokens, summed
    unscored: int = 0  # not judged (counted as not correct)

    def __add__(self, other: Cell) -> Cell:
        return Cell(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(Cell)))

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.correct, self.n)

    @property
    def tool_rate(self) -> float:
        return self.tool_used / self.n if self.n else 0.0

    @property
    def mean_calls(self) -> float:
        return self.calls / self.n if self.n else 0.0

    @property
    def mean_tokens(self) -> float:
        return self.tokens / self.n if self.n else 0.0

    def to_dict(self) -> dict[str, Any]:
        low, high = self.interval
        return {
            **asdict(self),
            "accuracy": self.accuracy,
            "ci_low": low,
            "ci_high": high,
            "tool_rate": self.tool_rate,
            "mean_calls": self.mean_calls,
            "mean_tokens": self.mean_tokens,
        }

    @property
    def percents(self) -> dict[str, str]:
        """Accuracy, its interval and the tool-use rate as percentages with one decimal."""
        low, high = self.interval
        values = {"accuracy": self.accuracy, "low": low, "high": high, "tools": self.tool_rate}
        return {name: f"{100 * value:.1f}" for name, value in values.items()}

    def __str__(self) -> str:
        low, high = self.interval
        return f"{100 * self.accuracy:.1f} ({100 * low:.1f}–{100 * high:.1f}, n={self.n})"


@dataclass(frozen=True)
class Record:
    """Counts of one round's samples of one setting on one problem set."""

    policy: str
    setting: Setting
    column: str
    round: str
    cell: Cell


@dataclass
class Row:
    policy: str
    setting: Setting
    cells: dict[str, Cell] = field(default_factory=dict)
    rounds: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        suffix = " + Hint-infer" if self.setting.hinted else ""
        return self.policy + suffix + ("" if self.setting.tools else " (tools off)")

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "policy": self.policy,
            "setting": asdict(self.setting),
            "rounds": self.rounds,
            "cells": {column: cell.to_dict() for column, cell in self.cells.items()},
        }


_CELL_CSV = ("acc %", "ci_low %", "ci_high %", "n", "tool_rate %", "mean_calls", "mean_tokens")


@dataclass
class Table:
    columns: list[str]
    rows: list[Row]

    def varying(self) -> list[str]:
        """The non-headline settings that differ between rows (shown as columns on pages)."""
        return [
            name
            for name in Setting.OTHER
            if len({getattr(row.setting, name) for row in self.rows}) > 1
        ]

    def shared(self) -> dict[str, Any]:
        """The non-headline settings every row has in common (said once above the table)."""
        if not self.rows:
            return {}
        varying = self.varying()
        first = self.rows[0].setting
        return {name: getattr(first, name) for name in Setting.OTHER if name not in varying}

    def lines(self) -> list[dict[str, Any]]:
        """Rows for a page: the varying settings' values, then the cells in column order."""
        varying = self.varying()
        return [
            {
                "row": row,
                "other": [getattr(row.setting, name) for name in varying],
                "cells": [row.cells.get(column) for column in self.columns],
            }
            for row in self.rows
        ]

    def to_dict(self) -> dict[str, Any]:
        return {"columns": self.columns, "rows": [row.to_dict() for row in self.rows]}

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        header = ["policy", *Setting.HEADLINE, *Setting.OTHER, "rounds"]
        for column in self.columns:
            header += [f"{column} {name}" for name in _CELL_CSV]
        writer.writerow(header)
        for row in self.rows:
            setting = asdict(row.setting)
            line: list[Any] = [row.policy, *(setting[name] for name in Setting.HEADLINE)]
            line += [setting[name] for name in Setting.OTHER]
            line.append(" ".join(row.rounds))
            for column in self.columns:
                cell = row.cells.get(column)
                if cell is None:
                    line += [""] * len(_CELL_CSV)
                    continue
                low, high = cell.interval
                line += [
                    *(f"{100 * value:.1f}" for value in (cell.accuracy, low, high)),
                    cell.n,
                    f"{100 * cell.tool_rate:.1f}",
                    f"{cell.mean_calls:.2f}",
                    f"{cell.mean_tokens:.1f}",
                ]
            writer.writerow(line)
        return out.getvalue()


def build_table(records: Iterable[Record]) -> Table:
    """Records → a table: one row per (policy, setting), in the order first seen; records of
    the same row and column add up (several rounds of one setting); unlike settings never do."""
    columns: list[str] = []
    rows: dict[tuple[str, Setting], Row] = {}
    for record in records:
        if record.column not in columns:
            columns.append(record.column)
        row = rows.setdefault((record.policy, record.setting), Row(record.policy, record.setting))
        previous = row.cells.get(record.column)
        row.cells[record.column] = record.cell if previous is None else previous + record.cell
        if record.round not in row.rounds:
            row.rounds.append(record.round)
    return Table(columns=columns, rows=list(rows.values()))


# --- The test-time scaling figure -------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    end_repeats: int
    cell: Cell


@dataclass
class Series:
    """Accuracy of one policy on one problem set against the number of end-of-thinking hints,
    every other setting equal."""

    policy: str
    column: str
    setting: Setting  # end_repeats -1: it varies along the series
    points: list[Point]

    @property
    def label(self) -> str:
        return f"{self.policy} on {self.column}"

    def to_dict(self) -> dict[str, Any]:
        setting = {k: v for k, v in asdict(self.setting).items() if k != "end_repeats"}
        return {
            "label": self.label,
            "policy": self.policy,
            "column": self.column,
            "setting": setting,
            "points": [{"end_repeats": p.end_repeats, **p.cell.to_dict()} for p in self.points],
        }


def scaling_series(table: Table) -> list[Series]:
    """Hinted rows that differ only in end repeats, as one series per problem set; a series
    needs two or more repeat counts."""
    groups: dict[tuple[str, Setting, str], dict[int, Cell]] = {}
    for row in table.rows:
        if not row.setting.hinted:
            continue
        for column, cell in row.cells.items():
            key = (row.policy, row.setting.without_end_repeats(), column)
            groups.setdefault(key, {})[row.setting.end_repeats] = cell
    return [
        Series(policy, column, setting, [Point(k, cells[k]) for k in sorted(cells)])
        for (policy, setting, column), cells in groups.items()
        if len(cells) >= 2
    ]


# Colours that stay apart for the colour-blind (Okabe and Ito).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")


def scaling_chart(
    series: list[Series], *, width: int = 640, height: int = 320
) -> dict[str, Any] | None:
    """The figure's geometry for a server-rendered SVG (no script, no inline style): accuracy
    (%, 0–100) against end-of-thinking hint repeats, a line per series, Wilson 95 % bars."""
    if not series:
        return None
    left, right, top, bottom = 48, 16, 16, 40
    repeats = sorted({p.end_repeats for s in series for p in s.points})
    low_x, high_x = repeats[0], repeats[-1]
    span = (high_x - low_x) or 1

    def x(k: int) -> float:
        return round(left + (k - low_x) / span * (width - left - right), 1)

    def y(fraction: float) -> float:
        return round(top + (1 - fraction) * (height - top - bottom), 1)

    lines = []
    for index, one in enumerate(series):
        marks = []
        for point in one.points:
            low, high = point.cell.interval
            marks.append(
                {
                    "x": x(point.end_repeats),
                    "y": y(point.cell.accuracy),
                    "y_low": y(low),
                    "y_high": y(high),
                    "title": f"{one.label}, {point.end_repeats} end hints: {point.cell}",
                }
            )
        lines.append(
            {
                "label": one.label,
                "colour": PALETTE[index % len(PALETTE)],
                "points": " ".join(f"{m['x']},{m['y']}" for m in marks),
                "marks": marks,
                "legend_y": top + 14 * index + 10,
            }
        )
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "top": top,
        "bottom": height - bottom,
        "x_ticks": [{"x": x(k), "label": k} for k in repeats],
        "y_ticks": [{"y": y(v / 100), "label": v} for v in (0, 25, 50, 75, 100)],
        "lines": lines,
        "legend_x": width - right - 220,
    }
