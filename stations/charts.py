"""A transaction's power and energy over time: the geometry of an SVG drawn on the server.

No chart library and no CDN: this module computes the coordinates and labels,
the admin's template ``admin/stations/transaction/chart.html`` draws them.
The time axis runs from the transaction's start to its stop (or now), with
ticks on round times whose step fits the session's length; value axes have
ticks on round numbers (1, 2 or 5 times a power of ten).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Tick:
    """A grid line at ``at`` (x for time, y for values; formatted) and its ``label`` drawn at ``label_at``."""

    at: str
    label_at: str
    label: str


@dataclass(frozen=True)
class Series:
    name: str
    points: str  # "x,y x,y ...", an SVG polyline's points
    colour: str


@dataclass(frozen=True)
class Chart:
    power_ticks: list[Tick]
    energy_ticks: list[Tick]
    time_ticks: list[Tick]
    series: list[Series]
    timezone: str
    # The frame, for the template (which cannot add): every coordinate the drawing uses.
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    plot_width: int = WIDTH - LEFT - RIGHT
    plot_height: int = HEIGHT - TOP - BOTTOM
    plot_right: int = WIDTH - RIGHT
    plot_bottom: int = HEIGHT - BOTTOM
    power_label_x: int = LEFT - 6
    energy_label_x: int = WIDTH - RIGHT + 6
    time_label_y: int = HEIGHT - BOTTOM + 16
    title_y: int = TOP - 10
    caption_x: str = f"{LEFT + (WIDTH - LEFT - RIGHT) / 2:.1f}"
    caption_y: int = HEIGHT - 4
    power_colour: str = POWER_COLOUR
    energy_colour: str = ENERGY_COLOUR


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
    ticks: list[dt.datetime] = []
    at = first
    while at <= end and len(ticks) <= MAX_TIME_TICKS + 1:
        ticks.append(at)
        at += dt.timedelta(seconds=step)
    fmt = "%H:%M:%S" if step < 60 else "%H:%M"
    if span > 86400:
        fmt = "%d %b %H:%M"
    return ticks, fmt


def power_energy_chart(points: Sequence[Point], start: dt.datetime | None = None,
                       end: dt.datetime | None = None) -> Chart | None:
    """Power (kW, left axis) and energy (kWh, right axis) against local time, from ``start`` to ``end``.

    None when there are too few samples to draw a line.
    """
    points = sorted(points, key=lambda p: p.at)
    if len(points) < 2:
        return None
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

    def value_axis(values: list[float], top: float) -> list[Tick]:
        return [Tick(f"{y(v, top):.1f}", f"{y(v, top) + 4:.1f}", _label(v, values[1])) for v in values]

    ticks, fmt = time_ticks(start, end)
    series = []
    for name, values, top, colour in (
        ("power", [(p.at, p.power_kw) for p in points], power_max, POWER_COLOUR),
        ("energy", [(p.at, p.energy_kwh) for p in points], energy_max, ENERGY_COLOUR),
    ):
        coords = " ".join(f"{x(at):.1f},{y(value, top):.1f}" for at, value in values if value is not None)
        if coords.count(",") >= 2:
            series.append(Series(name, coords, colour))
    return Chart(
        power_ticks=value_axis(power, power_max),
        energy_ticks=value_axis(energy, energy_max),
        # Round times in the configured time zone.
        time_ticks=[Tick(f"{x(at):.1f}", f"{x(at):.1f}", timezone.localtime(at).strftime(fmt)) for at in ticks],
        series=series,
        timezone=timezone.get_current_timezone_name(),
    )
