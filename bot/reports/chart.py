"""Trend charts: a question's score and the response rate over rounds, as PNG (chat), SVG (the
web dashboard) and text, all from one layout.

Points come from results that already passed the anonymity engine; a hidden point is a gap.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Pillow is imported by render_png: the serving process draws a chart rarely
    from PIL import ImageDraw, ImageFont

WIDTH, HEIGHT = 720, 360
SCORE_COLOUR = (31, 94, 170)
RATE_COLOUR = (214, 120, 20)
GRID = (225, 225, 225)
INK = (40, 40, 40)


@dataclass(frozen=True)
class TrendPoint:
    """One round: its label, the score (None = not enough responses) and the response rate."""

    label: str
    score: float | None
    rate: float | None  # 0..1


@dataclass(frozen=True)
class Trend:
    """A question's trend for one group."""

    title: str
    score_name: str  # "favourable %", "average (1-5)", "eNPS", "yes %"
    low: float
    high: float
    points: tuple[TrendPoint, ...]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


@dataclass(frozen=True)
class Layout:
    """Where everything goes on a chart of `width` x `height`: computed once, drawn by both
    renderers (PNG for chat, SVG for the web), so the two always show the same picture."""

    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    # (y, score tick label, rate tick label) for each grid line
    grid: tuple[tuple[float, str, str], ...]
    # per round: (x, label, y of the score or None, y of the rate or None)
    points: tuple[tuple[float, str, float | None, float | None], ...]


def layout(trend: Trend, width: int = WIDTH, height: int = HEIGHT) -> Layout:
    """The chart's geometry: score on the left axis, response rate (0-100%) on the right."""
    left, right, top, bottom = 56.0, width - 56.0, 40.0, height - 58.0
    grid = tuple((bottom - (bottom - top) * i / 4,
                  f"{trend.low + (trend.high - trend.low) * i / 4:g}", f"{25 * i}%")
                 for i in range(5))
    n = len(trend.points)

    def x_of(i: int) -> float:
        return left + (right - left) * (i + 0.5) / max(n, 1)

    def y_of(v: float | None, lo: float, hi: float) -> float | None:
        if v is None:
            return None
        frac = 0.0 if hi == lo else (min(max(v, lo), hi) - lo) / (hi - lo)
        return bottom - (bottom - top) * frac

    pts = tuple((x_of(i), p.label, y_of(p.score, trend.low, trend.high), y_of(p.rate, 0.0, 1.0))
                for i, p in enumerate(trend.points))
    return Layout(width, height, left, right, top, bottom, grid, pts)


def render_png(trend: Trend, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """The trend as a PNG: score on the left axis, response rate (0-100%) on the right."""
    from PIL import Image, ImageDraw

    g = layout(trend, width, height)
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    small, big = _font(12), _font(15)
    d.text((g.left, 10), trend.title[:90], fill=INK, font=big)
    for y, score_tick, rate_tick in g.grid:
        d.line([(g.left, y), (g.right, y)], fill=GRID)
        d.text((6, y - 7), score_tick, fill=SCORE_COLOUR, font=small)
        d.text((g.right + 6, y - 7), rate_tick, fill=RATE_COLOUR, font=small)
    _series(d, [(x, ys) for x, _l, ys, _r in g.points], SCORE_COLOUR)
    _series(d, [(x, yr) for x, _l, _s, yr in g.points], RATE_COLOUR)
    for x, label, _s, _r in g.points:
        w = d.textlength(label[:14], font=small)
        d.text((x - w / 2, g.bottom + 6), label[:14], fill=INK, font=small)
    for x, name, colour in ((g.left, trend.score_name, SCORE_COLOUR),
                            (g.left + 220, "response rate", RATE_COLOUR)):
        d.line([(x, height - 17), (x + 22, height - 17)], fill=colour, width=3)
        d.text((x + 28, height - 24), name, fill=colour, font=small)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()


def render_svg(trend: Trend, chart_id: str, width: int = WIDTH, height: int = HEIGHT) -> str:
    """The same chart as SVG markup for a web page (classes, not inline styles, so a strict
    CSP holds); `chart_id` makes its title and description ids unique on the page. Pair it
    with `describe` and a data table: the picture alone is not the whole answer."""
    g = layout(trend, width, height)
    e = _xml
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
           f'aria-labelledby="{e(chart_id)}-t {e(chart_id)}-d" xmlns="http://www.w3.org/2000/svg">',
           f'<title id="{e(chart_id)}-t">{e(trend.title)}</title>',
           f'<desc id="{e(chart_id)}-d">{e(describe(trend))}</desc>']
    for y, score_tick, rate_tick in g.grid:
        out.append(f'<line class="chart-grid" x1="{g.left:.1f}" y1="{y:.1f}" x2="{g.right:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text class="chart-text" x="6" y="{y + 4:.1f}">{e(score_tick)}</text>')
        out.append(f'<text class="chart-text" x="{g.right + 6:.1f}" y="{y + 4:.1f}">{e(rate_tick)}</text>')
    for cls, idx in (("chart-score", 2), ("chart-rate", 3)):
        for run in _runs([(p[0], p[idx]) for p in g.points]):  # type: ignore[misc]
            if len(run) > 1:
                path = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
                out.append(f'<polyline class="chart-line {cls}" points="{path}"/>')
            for x, y in run:
                shape = (f'<circle class="{cls}" cx="{x:.1f}" cy="{y:.1f}" r="5"/>' if cls == "chart-score"
                         else f'<rect class="{cls}" x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8"/>')
                out.append(shape)
    for x, label, _s, _r in g.points:
        out.append(f'<text class="chart-text" x="{x:.1f}" y="{g.bottom + 20:.1f}" text-anchor="middle">{e(label[:14])}</text>')
    for x, name, cls in ((g.left, trend.score_name, "chart-score"),
                         (g.left + 220, "response rate", "chart-rate")):
        out.append(f'<line class="chart-line {cls}" x1="{x:.1f}" y1="{height - 17}" x2="{x + 22:.1f}" y2="{height - 17}"/>')
        out.append(f'<text class="chart-text" x="{x + 28:.1f}" y="{height - 12}">{e(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def _runs(pts: list[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    """Consecutive known points; a hidden round breaks the line."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in pts:
        if y is None:
            runs.append([])
        else:
            runs[-1].append((x, y))
    return [r for r in runs if r]


def _xml(text: str) -> str:
    from xml.sax.saxutils import escape

    return escape(text, {'"': "&quot;"})


def _series(d: ImageDraw.ImageDraw, pts: list[tuple[float, float | None]], colour: tuple[int, int, int]) -> None:
    """A line through the known points; a hidden round breaks the line."""
    prev: tuple[float, float] | None = None
    for x, y in pts:
        if y is None:
            prev = None
            continue
        if prev is not None:
            d.line([prev, (x, y)], fill=colour, width=3)
        d.ellipse([x - 4, y - 4, x + 4, y + 4], fill=colour)
        prev = (x, y)


def describe(trend: Trend) -> str:
    """The chart's data as sentences, for screen readers and plain-text clients."""
    lines = [f"{trend.title}: {trend.score_name} and response rate by round."]
    for p in trend.points:
        score = "not enough responses to show" if p.score is None else f"{trend.score_name} {p.score:g}"
        rate = "response rate not shown" if p.rate is None else f"response rate {round(p.rate * 100)}%"
        lines.append(f"{p.label}: {score}; {rate}.")
    if not trend.points:
        lines.append("No rounds yet.")
    return "\n".join(lines)
