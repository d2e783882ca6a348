"""A transaction's power and energy over time as an SVG drawn on the server.

No chart library and no CDN: the admin page embeds the returned markup.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

from django.utils import timezone

WIDTH, HEIGHT = 760, 280
LEFT, RIGHT, TOP, BOTTOM = 60, 64, 28, 36
POWER_COLOUR, ENERGY_COLOUR = "#1f77b4", "#2ca02c"


@dataclass(frozen=True)
class Point:
    at: dt.datetime
    power_kw: float | None
    energy_kwh: float | None


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above ``value``."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude + 1e-12:
            return step * magnitude
    return 10 * magnitude


def _fmt(value: float, top: float) -> str:
    """An axis label with as many decimals as the axis's scale needs (at most 3)."""
    places = min(max(2 - math.floor(math.log10(top)), 0), 3) if top > 0 else 0
    return f"{value:.{places}f}"


def power_energy_svg(points: Sequence[Point]) -> str:
    """Power (kW, left axis) and energy (kWh, right axis) against local time."""
    points = sorted(points, key=lambda p: p.at)
    if len(points) < 2:
        return '<p class="chart-empty">Not enough meter samples for a chart yet.</p>'
    start, end = points[0].at, points[-1].at
    span = max((end - start).total_seconds(), 1.0)
    power_max = nice_ceiling(max((p.power_kw or 0) for p in points))
    energy_max = nice_ceiling(max((p.energy_kwh or 0) for p in points))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(at: dt.datetime) -> float:
        return LEFT + plot_w * (at - start).total_seconds() / span

    def y(value: float, top: float) -> float:
        return TOP + plot_h * (1 - value / top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="tx-chart" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="Power and energy over time" '
        'font-family="sans-serif" font-size="11">',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#ccc"/>',
    ]
    for i in range(5):  # horizontal grid with both axes' labels
        fraction = i / 4
        gy = TOP + plot_h * (1 - fraction)
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{gy:.1f}" y2="{gy:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{gy + 4:.1f}" text-anchor="end" fill="{POWER_COLOUR}">'
                     f'{_fmt(power_max * fraction, power_max)}</text>')
        parts.append(f'<text x="{LEFT + plot_w + 6}" y="{gy + 4:.1f}" fill="{ENERGY_COLOUR}">'
                     f'{_fmt(energy_max * fraction, energy_max)}</text>')
    for i in range(5):  # time ticks in the configured time zone
        at = start + dt.timedelta(seconds=span * i / 4)
        label = timezone.localtime(at).strftime("%H:%M:%S" if span < 600 else "%H:%M")
        parts.append(f'<text x="{x(at):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{escape(label)}</text>')
    parts.append(f'<text x="{LEFT}" y="{TOP - 10}" fill="{POWER_COLOUR}">Power, kW</text>')
    parts.append(f'<text x="{LEFT + plot_w}" y="{TOP - 10}" text-anchor="end" fill="{ENERGY_COLOUR}">Energy, kWh</text>')
    for name, values, top, colour in (
        ("power", [(p.at, p.power_kw) for p in points], power_max, POWER_COLOUR),
        ("energy", [(p.at, p.energy_kwh) for p in points], energy_max, ENERGY_COLOUR),
    ):
        coords = " ".join(f"{x(at):.1f},{y(value, top):.1f}" for at, value in values if value is not None)
        if coords.count(",") >= 2:
            parts.append(f'<polyline class="series-{name}" points="{coords}" fill="none" stroke="{colour}" '
                         'stroke-width="2" stroke-linejoin="round"/>')
    tz = escape(timezone.get_current_timezone_name())
    parts.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 4}" text-anchor="middle" fill="#666">'
                 f'Time ({tz})</text>')
    parts.append("</svg>")
    return "".join(parts)
