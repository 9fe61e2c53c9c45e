"""Small server-rendered SVG charts (no JavaScript, no CDN).

Every chart is drawn from plain numbers and each page shows the same numbers as a table
next to it, so a chart is never the only way to read a figure. Colours come from CSS classes
(``chart-s0`` … ``chart-s4``) defined in static/css/charts.css.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from typing import Sequence

from django.utils.safestring import SafeString, mark_safe

PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 52, 16, 40, 40


@dataclass(frozen=True)
class Series:
    label: str
    points: Sequence[tuple[float, float | None]]  # (x, y); y None = a gap
    style: int = 0  # colour slot 0–4
    dashed: bool = False
    dots: bool = True


@dataclass(frozen=True)
class Mark:
    """A vertical line at ``x`` (a chosen setting, a threshold) with a short label."""

    x: float
    label: str
    style: str = "pick"


@dataclass(frozen=True)
class Rule:
    """A horizontal line at ``y`` (a floor, chance level) with a short label."""

    y: float
    label: str


@dataclass
class _Scale:
    lo: float
    hi: float
    a: float  # pixel of lo
    b: float  # pixel of hi

    def __call__(self, v: float) -> float:
        if self.hi == self.lo:
            return (self.a + self.b) / 2
        return self.a + (v - self.lo) * (self.b - self.a) / (self.hi - self.lo)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi == lo:
        return [lo]
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks, v = [], start
    while v <= hi + step * 1e-6:
        ticks.append(round(v, 10))
        v += step
    return ticks


def fmt(v: float) -> str:
    """A short tick label."""
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.0f}"
    return f"{v:.3g}"


def tick_labels(ticks: Sequence[float]) -> dict[float, str]:
    """Labels with just enough digits to tell neighbouring ticks apart."""
    for digits in (3, 4, 5, 6, 8):
        labels = {t: (fmt(t) if digits == 3 else f"{t:.{digits}g}") for t in ticks}
        if len(set(labels.values())) == len(labels):
            return labels
    return labels


def _extent(values: list[float], pad: float = 0.05) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi - lo <= 1e-6 * max(abs(lo), abs(hi)):  # one value (or values equal but for rounding, e.g. a first
        mid = (lo + hi) / 2                        # DPO loss of 0.6931472 beside the ln 2 rule): a readable span
        half = abs(mid) * 0.1 or 1.0
        return mid - half, mid + half
    span = hi - lo
    return lo - span * pad, hi + span * pad


def _frame(width: int, height: int, title: str, x_label: str, y_label: str, sx: _Scale, sy: _Scale,
           x_ticks: list[float], y_ticks: list[float], x_tick_labels: dict[float, str] | None = None) -> list[str]:
    parts = [f'<text class="chart-title" x="{PAD_LEFT}" y="16">{escape(title)}</text>']
    y_labels = tick_labels(y_ticks)
    for t in y_ticks:
        y = sy(t)
        parts.append(f'<line class="chart-grid" x1="{PAD_LEFT}" x2="{width - PAD_RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="chart-tick" x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(y_labels[t])}</text>')
    for t in x_ticks:
        x = sx(t)
        label = (x_tick_labels or tick_labels(x_ticks)).get(t, fmt(t))
        parts.append(f'<line class="chart-axis" x1="{x:.1f}" x2="{x:.1f}" y1="{height - PAD_BOTTOM}" y2="{height - PAD_BOTTOM + 4}"/>')
        parts.append(f'<text class="chart-tick" x="{x:.1f}" y="{height - PAD_BOTTOM + 16}" text-anchor="middle">{escape(label)}</text>')
    parts.append(f'<line class="chart-axis" x1="{PAD_LEFT}" x2="{width - PAD_RIGHT}" y1="{height - PAD_BOTTOM}" y2="{height - PAD_BOTTOM}"/>')
    parts.append(f'<line class="chart-axis" x1="{PAD_LEFT}" x2="{PAD_LEFT}" y1="{PAD_TOP}" y2="{height - PAD_BOTTOM}"/>')
    parts.append(f'<text class="chart-label" x="{(PAD_LEFT + width - PAD_RIGHT) / 2:.1f}" y="{height - 6}" text-anchor="middle">{escape(x_label)}</text>')
    parts.append(
        f'<text class="chart-label" transform="translate(12 {(PAD_TOP + height - PAD_BOTTOM) / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    return parts


def _svg(width: int, height: int, title: str, parts: list[str], legend: list[tuple[str, int, bool]]) -> SafeString:
    items = []
    x = float(PAD_LEFT)
    for label, style, dashed in legend:  # one row under the title
        dash = ' stroke-dasharray="4 3"' if dashed else ""
        items.append(
            f'<line class="chart-line chart-s{style}" x1="{x:.0f}" x2="{x + 14:.0f}" y1="27" y2="27"{dash}/>'
            f'<text class="chart-legend" x="{x + 18:.0f}" y="31">{escape(label)}</text>'
        )
        x += 30 + 5.6 * len(label)
    body = "".join(parts + items)
    return mark_safe(
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(title)} (the numbers are in the table below)" xmlns="http://www.w3.org/2000/svg">'
        f"{body}</svg>"
    )


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    width: int = 560,
    height: int = 240,
    x_band: tuple[float, float] | None = None,
    band_label: str = "",
    marks: Sequence[Mark] = (),
    rules: Sequence[Rule] = (),
    y_range: tuple[float, float] | None = None,
    x_ticks: Sequence[float] | None = None,
    integer_x: bool = False,
) -> SafeString:
    """Lines with dots; an optional shaded x band, vertical marks and horizontal rules.
    ``integer_x`` keeps only whole-number x ticks (layers, steps)."""
    def finite(v) -> bool:
        return isinstance(v, (int, float)) and math.isfinite(v)

    marks = [m for m in marks if finite(m.x)]
    rules = [r for r in rules if finite(r.y)]
    xs = [x for s in series for x, y in s.points if finite(x) and finite(y)]
    ys = [y for s in series for x, y in s.points if finite(x) and finite(y)]
    if not ys:
        return _svg(width, height, title, [f'<text class="chart-empty" x="{width / 2}" y="{height / 2}" text-anchor="middle">No data yet</text>'], [])
    ys += [r.y for r in rules]
    xs += [m.x for m in marks]
    x_lo, x_hi = (min(xs), max(xs)) if min(xs) != max(xs) else (min(xs) - 1, max(xs) + 1)
    y_lo, y_hi = y_range or _extent(ys)
    sx = _Scale(x_lo, x_hi, PAD_LEFT + 6, width - PAD_RIGHT - 6)
    sy = _Scale(y_lo, y_hi, height - PAD_BOTTOM, PAD_TOP)
    ticks_x = list(x_ticks) if x_ticks is not None else nice_ticks(x_lo, x_hi, 8)
    if integer_x:
        ticks_x = [t for t in ticks_x if t == int(t)] or sorted({round(x) for x in xs})
    parts: list[str] = []
    if x_band is not None:
        a, b = sx(x_band[0] - 0.5 if x_ticks is None else x_band[0]), sx(x_band[1] + 0.5 if x_ticks is None else x_band[1])
        a, b = max(PAD_LEFT, a), min(width - PAD_RIGHT, b)
        parts.append(f'<rect class="chart-band" x="{a:.1f}" y="{PAD_TOP}" width="{max(0.0, b - a):.1f}" height="{height - PAD_TOP - PAD_BOTTOM}"/>')
        if band_label:
            parts.append(f'<text class="chart-band-label" x="{(a + b) / 2:.1f}" y="{height - PAD_BOTTOM - 5}" text-anchor="middle">{escape(band_label)}</text>')
    parts += _frame(width, height, title, x_label, y_label, sx, sy, ticks_x, nice_ticks(y_lo, y_hi, 4))
    for r in rules:
        y = sy(r.y)
        parts.append(f'<line class="chart-rule" x1="{PAD_LEFT}" x2="{width - PAD_RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="chart-rule-label" x="{width - PAD_RIGHT - 4}" y="{y - 4:.1f}" text-anchor="end">{escape(r.label)}</text>')
    for s in series:
        segments: list[list[tuple[float, float]]] = [[]]
        for x, y in s.points:
            if not (finite(x) and finite(y)):
                segments.append([])
            else:
                segments[-1].append((sx(x), sy(y)))
        dash = ' stroke-dasharray="5 4"' if s.dashed else ""
        for seg in segments:
            if len(seg) > 1:
                d = " ".join(f"{px:.1f},{py:.1f}" for px, py in seg)
                parts.append(f'<polyline class="chart-line chart-s{s.style}" points="{d}"{dash}/>')
            if s.dots or len(seg) == 1:
                parts += [f'<circle class="chart-dot chart-s{s.style}" cx="{px:.1f}" cy="{py:.1f}" r="2.6"/>' for px, py in seg]
    for i, m in enumerate(marks):
        x = sx(m.x)
        right = x > width - PAD_RIGHT - 70  # near the right edge: label on the left of the line
        parts.append(f'<line class="chart-mark chart-mark-{m.style}" x1="{x:.1f}" x2="{x:.1f}" y1="{PAD_TOP}" y2="{height - PAD_BOTTOM}"/>')
        anchor = "end" if right else "start"
        parts.append(
            f'<text class="chart-mark-label" x="{x - 4 if right else x + 4:.1f}" y="{PAD_TOP + 12 + 13 * i}" '
            f'text-anchor="{anchor}">{escape(m.label)}</text>'
        )
    return _svg(width, height, title, parts, [(s.label, s.style, s.dashed) for s in series if len(series) > 1])


@dataclass
class Bin:
    lo: float
    hi: float
    count: int
    kept: int = 0


@dataclass
class Histogram:
    bins: list[Bin] = field(default_factory=list)
    svg: SafeString = mark_safe("")


def histogram(
    values: Sequence[float],
    *,
    title: str,
    x_label: str,
    threshold: float | None = None,
    bins: int = 24,
    width: int = 560,
    height: int = 220,
) -> Histogram:
    """Counts of ``values`` in equal-width bins; the part of each bar at or above ``threshold``
    (what the filter keeps) is drawn in the "kept" colour, with the threshold as a line.

    ``values`` may be a numpy array (a million scores bin in milliseconds)."""
    import numpy as np

    vals = np.asarray([np.nan if v is None else v for v in values] if not isinstance(values, np.ndarray) else values,
                      dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    if not vals.size:
        return Histogram([], _svg(width, height, title, [f'<text class="chart-empty" x="{width / 2}" y="{height / 2}" text-anchor="middle">No scores yet</text>'], []))
    lo, hi = float(vals.min()), float(vals.max())
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    step = (hi - lo) / bins
    where = np.minimum(bins - 1, ((vals - lo) / step).astype(np.int64))  # the same rule as int((v - lo) / step)
    counts = np.bincount(where, minlength=bins)
    kept = np.bincount(where[vals >= threshold], minlength=bins) if threshold is not None else np.zeros(bins, np.int64)
    out = [Bin(lo + i * step, lo + (i + 1) * step, int(counts[i]), int(kept[i])) for i in range(bins)]
    top = max(b.count for b in out)
    sx = _Scale(lo, hi, PAD_LEFT + 2, width - PAD_RIGHT - 2)
    sy = _Scale(0, top, height - PAD_BOTTOM, PAD_TOP)
    parts = _frame(width, height, title, x_label, "instructions", sx, sy, nice_ticks(lo, hi, 6), [t for t in nice_ticks(0, top, 4) if t == int(t)])
    for b in out:
        x0, x1 = sx(b.lo) + 0.5, sx(b.hi) - 0.5
        if b.count:
            parts.append(
                f'<rect class="chart-bar" x="{x0:.1f}" y="{sy(b.count):.1f}" width="{max(0.5, x1 - x0):.1f}" '
                f'height="{sy(0) - sy(b.count):.1f}" data-range="{fmt(b.lo)} – {fmt(b.hi)}" data-count="{b.count}"/>'
            )
        if b.kept:
            parts.append(
                f'<rect class="chart-bar-kept" x="{x0:.1f}" y="{sy(b.kept):.1f}" width="{max(0.5, x1 - x0):.1f}" '
                f'height="{sy(0) - sy(b.kept):.1f}"/>'
            )
    if threshold is not None and math.isfinite(threshold):
        x = sx(min(max(threshold, lo), hi))
        parts.append(f'<line class="chart-mark chart-mark-pick" x1="{x:.1f}" x2="{x:.1f}" y1="{PAD_TOP}" y2="{height - PAD_BOTTOM}"/>')
        parts.append(f'<text class="chart-mark-label" x="{x + 4:.1f}" y="{PAD_TOP + 10}">keep ≥ {escape(fmt(threshold))}</text>')
    return Histogram(out, _svg(width, height, title, parts, []))


def heatmap(labels: Sequence[str], matrix: Sequence[Sequence[float]], *, title: str, size: int = 300) -> SafeString:
    """A square matrix in [-1, 1] (cosine similarities) as coloured cells with their values."""
    n = len(labels)
    if n == 0:
        return mark_safe("")
    pad = 110
    cell = (size - pad) / n
    parts = [f'<text class="chart-title" x="4" y="14">{escape(title)}</text>']
    for i, label in enumerate(labels):
        y = pad - 10 + i * cell + cell / 2
        parts.append(f'<text class="chart-tick" x="{pad - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(label[:14])}</text>')
        parts.append(
            f'<text class="chart-tick" transform="translate({pad + i * cell + cell / 2:.1f} {pad - 16}) rotate(-35)">{escape(label[:14])}</text>'
        )
        for j in range(n):
            v = float(matrix[i][j])
            tone = "pos" if v >= 0 else "neg"
            opacity = min(1.0, abs(v)) * 0.85 + 0.1
            x, yy = pad + j * cell, pad - 10 + i * cell
            parts.append(
                f'<rect class="chart-cell-{tone}" x="{x:.1f}" y="{yy:.1f}" width="{cell - 2:.1f}" height="{cell - 2:.1f}" '
                f'fill-opacity="{opacity:.2f}"/><text class="chart-cell-text" x="{x + cell / 2 - 1:.1f}" y="{yy + cell / 2 + 3:.1f}" '
                f'text-anchor="middle">{v:.2f}</text>'
            )
    return mark_safe(_svg(size, size, title, parts, []).replace('class="chart"', 'class="chart chart-square"', 1))


def bar_chart(rows: Sequence[tuple[str, float, bool]], *, unit: str = "", width: int = 560, title: str = "Compute per stage",
              top: float | None = None, digits: int = 1) -> SafeString:
    """Horizontal bars, one per (label, value, highlighted) row; highlighted bars (an estimate, a
    flag) take the second colour. ``top`` fixes the full-width value (default: the largest)."""
    if not rows:
        return mark_safe("")
    height = 28 + 24 * len(rows)
    top = top or max(v for _, v, _ in rows) or 1.0
    left, right = 190, 70
    parts = []
    for i, (label, value, highlighted) in enumerate(rows):
        y = 20 + i * 24
        w = (width - left - right) * value / top
        cls = "chart-bar-estimate" if highlighted else "chart-bar"
        parts.append(f'<text class="chart-tick" x="{left - 8}" y="{y + 13}" text-anchor="end">{escape(label)}</text>')
        parts.append(f'<rect class="{cls}" x="{left}" y="{y}" width="{max(1.0, w):.1f}" height="17"/>')
        parts.append(f'<text class="chart-tick" x="{left + w + 6:.1f}" y="{y + 13}">{value:.{digits}f} {escape(unit)}</text>')
    return _svg(width, height, title, parts, [])
