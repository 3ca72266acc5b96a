"""Charts drawn on the server: the geometry of an SVG, which `ui/_line_chart.html` renders.

No script and no inline style (the CSP stays strict); colours come from CSS classes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MARGIN = {"left": 56, "right": 56, "top": 12, "bottom": 38}


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float]]
    css: str  # the class that colours its line: chart-a, chart-b, ...
    right_axis: bool = False  # scaled on the second y axis
    dots: bool = False


def ema(values: Sequence[float], weight: float = 0.6) -> list[float]:
    """Exponential moving average with TensorBoard's debiasing (the first points are not pulled
    towards zero)."""
    smoothed, last = [], 0.0
    for i, value in enumerate(values, start=1):
        last = last * weight + (1 - weight) * value
        smoothed.append(last / (1 - weight**i))
    return smoothed


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]: steps of 1, 2 or 5 times a power of ten."""
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks = [round(first, 12)]
    while ticks[-1] < high - step * 1e-9 or len(ticks) < 2:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def tick_label(value: float) -> str:
    """Short labels: 1.5, 0.03, 1.5e-05, 1,200."""
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) < 1e-3:
        return f"{value:.2g}"
    return f"{value:.4g}"


def line_chart(
    series: Sequence[Series],
    *,
    width: int = 640,
    height: int = 220,
    x_label: str = "",
    y_label: str = "",
    y2_label: str = "",
) -> dict[str, Any] | None:
    """Axes with round ticks, one polyline per series; None when there is nothing to draw."""
    drawn = [s for s in series if s.points]
    if not drawn:
        return None
    left, top = MARGIN["left"], MARGIN["top"]
    right, bottom = width - MARGIN["right"], height - MARGIN["bottom"]
    xs = [x for s in drawn for x, _ in s.points]
    x_ticks = nice_ticks(min(xs), max(xs))

    def scale(values: list[float]) -> tuple[list[float], Any]:
        ticks = nice_ticks(min(values), max(values), 4)
        low, high = ticks[0], ticks[-1]
        return ticks, lambda y: bottom - (y - low) / ((high - low) or 1) * (bottom - top)

    def x_of(x: float) -> float:
        return left + (x - x_ticks[0]) / ((x_ticks[-1] - x_ticks[0]) or 1) * (right - left)

    axes = {}
    for right_axis in (False, True):
        values = [y for s in drawn if s.right_axis == right_axis for _, y in s.points]
        if values:
            axes[right_axis] = scale(values)
    lines = []
    for s in drawn:
        _, y_of = axes[s.right_axis]
        coords = [(round(x_of(x), 1), round(y_of(y), 1)) for x, y in s.points]
        lines.append(
            {
                "name": s.name,
                "css": s.css,
                "points": " ".join(f"{x},{y}" for x, y in coords),
                "dots": coords if s.dots else [],
            }
        )

    def y_ticks(right_axis: bool) -> list[dict[str, Any]]:
        if right_axis not in axes:
            return []
        ticks, y_of = axes[right_axis]
        return [{"y": round(y_of(t), 1), "label": tick_label(t)} for t in ticks]

    return {
        "width": width,
        "height": height,
        "left": left,
        "right": right,
        "top": top,
        "bottom": bottom,
        "x_ticks": [{"x": round(x_of(t), 1), "label": tick_label(t)} for t in x_ticks],
        "y_ticks": y_ticks(False),
        "y2_ticks": y_ticks(True),
        "x_label": x_label,
        "y_label": y_label,
        "y2_label": y2_label if True in axes else "",
        "x_label_y": height - 4,
        "y_label_x": 12,
        "y2_label_x": width - 8,
        "middle_x": round((left + right) / 2, 1),
        "middle_y": round((top + bottom) / 2, 1),
        "lines": lines,
    }


def loss_chart(history: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """An SFT job's loss by step (raw, and smoothed), with the learning rate on the right axis."""
    logged = [p for p in history if p.get("loss") is not None and p.get("step") is not None]
    steps = [p["step"] for p in logged]
    losses = [p["loss"] for p in logged]
    rates = [(p["step"], p["lr"]) for p in logged if p.get("lr") is not None]
    return line_chart(
        [
            Series("loss", list(zip(steps, losses, strict=True)), "chart-raw"),
            Series("loss, smoothed", list(zip(steps, ema(losses), strict=True)), "chart-a"),
            Series("learning rate", rates, "chart-b", right_axis=True),
        ],
        x_label="step",
        y_label="loss",
        y2_label="learning rate",
    )
