"""Trend charts: a question's score and the response rate over rounds, as PNG and as text.

Points come from results that already passed the anonymity engine; a hidden point is a gap.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

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
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def render_png(trend: Trend, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """The trend as a PNG: score on the left axis, response rate (0-100%) on the right."""
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    small, big = _font(12), _font(15)
    left, right, top, bottom = 56, width - 56, 40, height - 58
    d.text((left, 10), trend.title[:90], fill=INK, font=big)
    for i in range(5):  # grid and both axes' ticks
        y = bottom - (bottom - top) * i / 4
        d.line([(left, y), (right, y)], fill=GRID)
        score_tick = trend.low + (trend.high - trend.low) * i / 4
        d.text((6, y - 7), f"{score_tick:g}", fill=SCORE_COLOUR, font=small)
        d.text((right + 6, y - 7), f"{25 * i}%", fill=RATE_COLOUR, font=small)
    n = len(trend.points)

    def x_of(i: int) -> float:
        return left + (right - left) * (i + 0.5) / max(n, 1)

    def y_of(v: float, lo: float, hi: float) -> float:
        frac = 0.0 if hi == lo else (min(max(v, lo), hi) - lo) / (hi - lo)
        return bottom - (bottom - top) * frac

    _series(d, [(x_of(i), None if p.score is None else y_of(p.score, trend.low, trend.high))
                for i, p in enumerate(trend.points)], SCORE_COLOUR)
    _series(d, [(x_of(i), None if p.rate is None else y_of(p.rate, 0.0, 1.0))
                for i, p in enumerate(trend.points)], RATE_COLOUR)
    for i, p in enumerate(trend.points):
        label = p.label[:14]
        w = d.textlength(label, font=small)
        d.text((x_of(i) - w / 2, bottom + 6), label, fill=INK, font=small)
    for x, name, colour in ((left, trend.score_name, SCORE_COLOUR),
                            (left + 220, "response rate", RATE_COLOUR)):
        d.line([(x, height - 17), (x + 22, height - 17)], fill=colour, width=3)
        d.text((x + 28, height - 24), name, fill=colour, font=small)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()


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
