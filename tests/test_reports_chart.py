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


def test_the_web_svg_draws_the_same_layout_as_the_png_with_a_gap_for_a_hidden_round() -> None:
    import xml.etree.ElementTree as ET

    from bot.reports.chart import layout, render_svg

    svg = render_svg(TREND, "t1")
    root = ET.fromstring(svg)
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert root.get("role") == "img" and root.get("aria-labelledby") == "t1-t t1-d"
    assert root.find("s:title", ns).text == TREND.title  # type: ignore[union-attr]
    assert root.find("s:desc", ns).text == describe(TREND)  # type: ignore[union-attr]
    g = layout(TREND)
    circles = [(float(c.get("cx", 0)), float(c.get("cy", 0))) for c in root.iter("{http://www.w3.org/2000/svg}circle")]
    # the score points the PNG draws: rounds 1 and 3 (round 2 is hidden), nothing between them
    assert circles == [(round(x, 1), round(y, 1)) for x, _l, y, _r in g.points if y is not None]
    score_lines = [p for p in root.iter("{http://www.w3.org/2000/svg}polyline") if "chart-score" in p.get("class", "")]
    assert score_lines == []  # a hidden round breaks the line: no segment joins rounds 1 and 3
    assert "style=" not in svg  # classes only: the page's CSP allows no inline styles
