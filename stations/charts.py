"""A transaction's power and energy over time as an SVG drawn on the server.

No chart library and no CDN: the admin page embeds the returned markup.
The time axis runs from the transaction's start to its stop (or now), with
ticks on round times whose step fits the session's length; value axes have
ticks on round numbers (1, 2 or 5 times a power of ten).
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
# Time steps a reader counts in: seconds, minutes, hours.
TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
MAX_TIME_TICKS = 8


@dataclass(frozen=True)
class Point:
    at: dt.datetime
    power_kw: float | None
    energy_kwh: float | None


def nice_step(value: float, ticks: int = 4) -> float:
    """The smallest 1, 2 or 5 times a power of ten that covers ``value`` in at most ``ticks`` steps."""
    if value <= 0:
        return 1.0 / ticks if ticks else 1.0
    raw = value / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for step in (1, 2, 5, 10):
        if raw <= step * magnitude * (1 + 1e-9):
            return step * magnitude
    return 10 * magnitude


def value_ticks(value: float, ticks: int = 4) -> list[float]:
    """0, step, 2 step, ... up to the first multiple of a round step at or above ``value``."""
    step = nice_step(value, ticks)
    count = max(math.ceil(value / step - 1e-9), 1)
    return [round(i * step, 10) for i in range(count + 1)]


def _label(value: float, step: float) -> str:
    places = max(0, -math.floor(math.log10(step) + 1e-9)) if step < 1 else 0
    return f"{value:.{places}f}"


def time_ticks(start: dt.datetime, end: dt.datetime) -> tuple[list[dt.datetime], str]:
    """Round local times between ``start`` and ``end`` (at most MAX_TIME_TICKS), and their strftime format."""
    span = max((end - start).total_seconds(), 1.0)
    step = next((s for s in TIME_STEPS if span / s <= MAX_TIME_TICKS), TIME_STEPS[-1] * math.ceil(span / 86400 / 8))
    local = timezone.localtime(start)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    offset = (local - midnight).total_seconds()
    first = midnight + dt.timedelta(seconds=math.ceil(offset / step - 1e-9) * step)
    ticks = []
    at = first
    while at <= end and len(ticks) <= MAX_TIME_TICKS + 1:
        ticks.append(at)
        at += dt.timedelta(seconds=step)
    fmt = "%H:%M:%S" if step < 60 else "%H:%M"
    if span > 86400:
        fmt = "%d %b %H:%M"
    return ticks, fmt


def power_energy_svg(points: Sequence[Point], start: dt.datetime | None = None,
                     end: dt.datetime | None = None) -> str:
    """Power (kW, left axis) and energy (kWh, right axis) against local time, from ``start`` to ``end``."""
    points = sorted(points, key=lambda p: p.at)
    if len(points) < 2:
        return '<p class="chart-empty">Not enough meter samples for a chart yet.</p>'
    start = min(start or points[0].at, points[0].at)
    end = max(end or points[-1].at, points[-1].at)
    span = max((end - start).total_seconds(), 1.0)
    power = value_ticks(max((p.power_kw or 0) for p in points))
    energy = value_ticks(max((p.energy_kwh or 0) for p in points))
    power_max, energy_max = power[-1], energy[-1]
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
    for value in power:  # horizontal grid on the power axis's round values
        gy = y(value, power_max)
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{gy:.1f}" y2="{gy:.1f}" stroke="#eee"/>')
        parts.append(f'<text class="tick-power" x="{LEFT - 6}" y="{gy + 4:.1f}" text-anchor="end" '
                     f'fill="{POWER_COLOUR}">{_label(value, power[1])}</text>')
    for value in energy:
        gy = y(value, energy_max)
        parts.append(f'<text class="tick-energy" x="{LEFT + plot_w + 6}" y="{gy + 4:.1f}" fill="{ENERGY_COLOUR}">'
                     f'{_label(value, energy[1])}</text>')
    ticks, fmt = time_ticks(start, end)
    for at in ticks:  # round times in the configured time zone
        tx = x(at)
        parts.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{TOP}" y2="{TOP + plot_h}" stroke="#f2f2f2"/>')
        parts.append(f'<text class="tick-time" x="{tx:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">'
                     f'{escape(timezone.localtime(at).strftime(fmt))}</text>')
    parts.append(f'<text x="{LEFT}" y="{TOP - 10}" fill="{POWER_COLOUR}">Power, kW</text>')
    parts.append(f'<text x="{LEFT + plot_w}" y="{TOP - 10}" text-anchor="end" fill="{ENERGY_COLOUR}">Energy, kWh</text>')
    for name, series, top, colour in (
        ("power", [(p.at, p.power_kw) for p in points], power_max, POWER_COLOUR),
        ("energy", [(p.at, p.energy_kwh) for p in points], energy_max, ENERGY_COLOUR),
    ):
        coords = " ".join(f"{x(at):.1f},{y(value, top):.1f}" for at, value in series if value is not None)
        if coords.count(",") >= 2:
            parts.append(f'<polyline class="series-{name}" points="{coords}" fill="none" stroke="{colour}" '
                         'stroke-width="2" stroke-linejoin="round"/>')
    tz = escape(timezone.get_current_timezone_name())
    parts.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 4}" text-anchor="middle" fill="#666">'
                 f'Time ({tz})</text>')
    parts.append("</svg>")
    return "".join(parts)
