"""A trend chart is a real PNG of the promised size, and says the same in words."""

from __future__ import annotations

import io
import struct

from PIL import Image

from bot.reports.chart import HEIGHT, WIDTH, Trend, TrendPoint, describe, render_png

TREND = Trend(
    "I feel listened to - Assessment Team", "favourable %", 0, 100,
    (TrendPoint("Round 1", 40.0, 0.5), TrendPoint("Round 2", None, 0.3),
     TrendPoint("Round 3", 62.5, 0.8)),
)


def test_the_chart_is_a_valid_png_of_the_expected_size() -> None:
    png = render_png(TREND)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert png[12:16] == b"IHDR"
    assert struct.unpack(">II", png[16:24]) == (WIDTH, HEIGHT)
    img = Image.open(io.BytesIO(png))
    img.verify()  # checks every chunk's CRC
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size == (WIDTH, HEIGHT)
    colours = {c for _, c in img.convert("RGB").getcolors(maxcolors=100000) or []}
    assert (31, 94, 170) in colours and (214, 120, 20) in colours  # both lines drawn


def test_other_sizes_and_an_empty_trend_still_draw() -> None:
    png = render_png(Trend("Empty", "eNPS", -100, 100, ()), width=400, height=200)
    assert Image.open(io.BytesIO(png)).size == (400, 200)


def test_screen_readers_get_the_same_data_as_text() -> None:
    text = describe(TREND)
    assert "Round 1: favourable % 40; response rate 50%." in text
    assert "Round 2: not enough responses to show; response rate 30%." in text
    assert "Round 3: favourable % 62.5; response rate 80%." in text
