"""Bar charts drawn on the server as SVG geometry (no script, nothing from elsewhere)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH, HEIGHT, AXIS = 560, 150, 18  # viewBox units; the SVG scales to the page's width


@dataclass(frozen=True)
class Bar:
    """One bar: its rectangle, value and label."""

    x: float
    y: float
    width: float
    height: float
    value: int
    label: str


@dataclass(frozen=True)
class Chart:
    """A bar chart's geometry; the template draws it and a table of the same figures."""

    title: str
    bars: tuple[Bar, ...]
    peak: int
    total: int
    first_label: str
    last_label: str
    width: int = WIDTH
    height: int = HEIGHT + AXIS
    baseline: int = HEIGHT


def bar_chart(title: str, values: Sequence[int], labels: Sequence[str]) -> Chart:
    """Scale ``values`` into bars (the tallest fills the height; a value above zero is visible)."""
    peak = max(values, default=0)
    step = WIDTH / max(len(values), 1)
    bars = []
    for i, (value, label) in enumerate(zip(values, labels, strict=True)):
        height = 0.0 if peak == 0 else max(HEIGHT * value / peak, 2.0 if value else 0.0)
        bars.append(
            Bar(
                x=i * step + 1,
                y=HEIGHT - height,
                width=max(step - 2, 1),
                height=height,
                value=value,
                label=label,
            )
        )
    return Chart(
        title=title,
        bars=tuple(bars),
        peak=peak,
        total=sum(values),
        first_label=labels[0] if labels else "",
        last_label=labels[-1] if labels else "",
    )
