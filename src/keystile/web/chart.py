"""Verifications over time as a server-rendered SVG: one stacked bar per bucket, one colour per outcome.

No script and no inline style: colours come from classes in the stylesheet (the Content-Security-Policy allows
styles from files only), and the numbers are in a table next to the chart for screen readers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from markupsafe import Markup, escape

WIDTH = 720
HEIGHT = 220
_LEFT = 44
_BOTTOM = 28
_TOP = 10


@dataclass(frozen=True, slots=True)
class Bucket:
    start: int
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def buckets(since: int, until: int, size: int, counts: list[tuple[int, str | None, int]]) -> list[Bucket]:
    """Every bucket of ``[since, until)``, empty ones included, with its counts by outcome."""
    by_start: dict[int, dict[str, int]] = {start: {} for start in range(since, until, size)}
    for start, group, count in counts:
        slot = by_start.setdefault(start, {})
        name = group or "unknown"
        slot[name] = slot.get(name, 0) + count
    return [Bucket(start, by_start[start]) for start in sorted(by_start)]


def outcome_class(outcome: str) -> str:
    return "o-valid" if outcome == "VALID" else "o-" + "".join(c for c in outcome.lower() if c.isalnum() or c == "_")


def _label(ms: int, size: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%m-%d") if size >= 86_400_000 else moment.strftime("%H:%M")


def svg(series: list[Bucket], size: int, title: str) -> Markup:
    """The chart as inline SVG markup (escaped text only)."""
    peak = max((bucket.total for bucket in series), default=0)
    scale_top = max(peak, 1)
    plot_w = WIDTH - _LEFT - 8
    plot_h = HEIGHT - _BOTTOM - _TOP
    step = plot_w / max(len(series), 1)
    bar_w = max(step * 0.8, 1.0)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="chart-title" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-title">{escape(title)}</title>',
        f'<line class="axis" x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{WIDTH - 8}" y2="{_TOP + plot_h}"/>',
        f'<text class="tick" x="{_LEFT - 6}" y="{_TOP + 10}" text-anchor="end">{scale_top}</text>',
        f'<text class="tick" x="{_LEFT - 6}" y="{_TOP + plot_h}" text-anchor="end">0</text>',
    ]
    every = max(len(series) // 6, 1)
    for index, bucket in enumerate(series):
        x = _LEFT + index * step + (step - bar_w) / 2
        y = float(_TOP + plot_h)
        for outcome in sorted(bucket.counts, key=lambda name: (name != "VALID", name)):
            count = bucket.counts[outcome]
            height = plot_h * count / scale_top
            y -= height
            parts.append(
                f'<rect class="bar {outcome_class(outcome)}" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                f'height="{height:.1f}" data-outcome="{escape(outcome)}" data-count="{count}">'
                f"<title>{escape(outcome)}: {count} at {_label(bucket.start, size)}</title></rect>"
            )
        if index % every == 0:
            parts.append(
                f'<text class="tick" x="{x + bar_w / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle">'
                f"{_label(bucket.start, size)}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every piece of text in it is escaped above
