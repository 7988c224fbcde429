"""`staffvoice manifest teams --app-id ID [--host HOST] --out FILE.zip`: the Teams app package.

The package is a zip with manifest.json, color.png (192x192) and outline.png (32x32, white on
transparent) at its root, ready to upload in Teams (Apps > Manage your apps > Upload an app).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent.parent / "manifest" / "teams"
GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
HOST = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,63}$")
COLOR_SIZE, OUTLINE_SIZE = 192, 32
ACCENT = (31, 111, 120)


class ManifestError(ValueError):
    """A wrong argument; the message says what a right one looks like."""


def manifest(app_id: str, host: str | None = None) -> dict[str, Any]:
    """The manifest for one Entra app registration (its id is also the bot's id)."""
    if not GUID.match(app_id or ""):
        raise ManifestError(f"--app-id must be the app registration's GUID, not {app_id!r}")
    m: dict[str, Any] = json.loads((HERE / "manifest.json").read_text(encoding="utf-8"))
    m["id"] = app_id.lower()
    m["bots"][0]["botId"] = app_id.lower()
    if host:
        if not HOST.match(host):
            raise ManifestError(f"--host must be a domain name such as bot.example.org, not {host!r}")
        m["validDomains"] = [host]
        m["developer"].update(websiteUrl=f"https://{host}/", privacyUrl=f"https://{host}/privacy",
                              termsOfUseUrl=f"https://{host}/terms")
    return m


def draw_icons() -> tuple[bytes, bytes]:
    """The two icons, drawn with Pillow: a speech bubble on the accent colour, and its outline."""
    from PIL import Image, ImageDraw

    def bubble(size: int, fill: tuple[int, ...], bg: tuple[int, ...]) -> bytes:
        img = Image.new("RGBA", (size, size), bg)
        d = ImageDraw.Draw(img)
        m = size // 6
        d.rounded_rectangle([m, m, size - m, size - 2 * m], radius=size // 8, fill=fill)
        d.polygon([(size // 3, size - 2 * m), (size // 3, size - m), (size // 2, size - 2 * m)],
                  fill=fill)
        out = io.BytesIO()
        img.save(out, "PNG")
        return out.getvalue()

    return bubble(COLOR_SIZE, (255, 255, 255, 255), (*ACCENT, 255)), \
        bubble(OUTLINE_SIZE, (255, 255, 255, 255), (0, 0, 0, 0))


def package(app_id: str, host: str | None = None) -> bytes:
    """The zip to upload: manifest.json and both icons at the top level."""
    m = manifest(app_id, host)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", json.dumps(m, indent=2))
        z.write(HERE / "color.png", "color.png")
        z.write(HERE / "outline.png", "outline.png")
    return out.getvalue()


def cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="staffvoice manifest teams",
                                 description="Build the Teams app package to upload.")
    ap.add_argument("--app-id", required=True, help="the bot's Entra app registration id (GUID)")
    ap.add_argument("--host", help="public domain of the bot's server (optional)")
    ap.add_argument("--out", required=True, help="where to write the .zip")
    ap.add_argument("--redraw-icons", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.redraw_icons:
        color, outline = draw_icons()
        (HERE / "color.png").write_bytes(color)
        (HERE / "outline.png").write_bytes(outline)
    try:
        data = package(args.app_id, args.host)
        Path(args.out).write_bytes(data)
    except ManifestError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: cannot write {args.out}: {e.strerror}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: upload it in Teams (Apps > Manage your apps > Upload an app)")
    return 0
