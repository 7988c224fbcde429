"""`staffvoice families qr`: a QR code for posters (PNG and SVG) and the short link as text."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import Settings
from staffvoice.cli import main
from storage.db import Database
from tests.conftest import EXAMPLE


def test_the_short_link_comes_from_the_programme_or_the_server(
        db: Database, settings: Settings, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAFFVOICE_WEB_BASE_URL", "https://staffvoice.northbridge.example")
    assert main(["families", "qr", "--text"], settings=settings) == 0
    assert capsys.readouterr().out == "https://staffvoice.northbridge.example/families\n"
    assert main(["programme", "load", str(EXAMPLE)], settings=settings) == 0
    capsys.readouterr()
    assert main(["families", "qr", "--text"], settings=settings) == 0
    assert capsys.readouterr().out == "https://northbridge.example/tell-us\n"
    assert main(["families", "qr", "--text", "--young-people"], settings=settings) == 0
    assert capsys.readouterr().out == "https://staffvoice.northbridge.example/young-people\n"


def test_a_poster_qr_code_as_png_and_svg(db: Database, settings: Settings, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["programme", "load", str(EXAMPLE)], settings=settings) == 0
    png, svg = tmp_path / "poster.png", tmp_path / "poster.svg"
    assert main(["families", "qr", "--out", str(png)], settings=settings) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["families", "qr", "--out", str(svg)], settings=settings) == 0
    assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()
    from PIL import Image

    with Image.open(png) as im:
        assert im.size[0] == im.size[1] >= 250  # square, big enough to print
    capsys.readouterr()
    assert main(["families", "qr", "--out", str(tmp_path / "poster.gif")], settings=settings) == 2
    assert capsys.readouterr().err == f"error: --out must end in .png or .svg, not {tmp_path / 'poster.gif'}\n"
