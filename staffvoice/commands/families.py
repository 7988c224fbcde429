"""`staffvoice families qr --out poster.png|poster.svg` and `staffvoice families qr --text`.

The QR code points to the programme's short link (`families: short_link:`), else to
STAFFVOICE_WEB_BASE_URL (or the server's own address) followed by /families or /young-people.
Made with segno (maintained, pure Python: no image library needed for PNG or SVG).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from bot.config import Settings
from staffvoice.database import opened
from staffvoice.errors import CliError

FORMATS = (".png", ".svg")


def add_to(sub: argparse._SubParsersAction[argparse.ArgumentParser], settings: Settings) -> None:
    """The `families` command."""
    p = sub.add_parser("families", help="the public families and young people pages: QR codes",
                       description="The public pages /families and /young-people of `staffvoice serve`.")
    fsub = p.add_subparsers(dest="sub", required=True, metavar="ACTION")
    qr = fsub.add_parser(
        "qr", help="make a QR code for a poster or leaflet, or print the short link",
        description="Write a QR code (PNG or SVG, by the file's ending) that opens the families "
                    "page, or print the link it holds with --text.")
    out = qr.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", metavar="FILE", help="where to write the QR code (.png or .svg)")
    out.add_argument("--text", action="store_true", help="print the short link instead")
    qr.add_argument("--young-people", action="store_true",
                    help="point to /young-people instead of /families")
    qr.add_argument("--scale", type=int, default=10, metavar="N",
                    help="pixels per module (default 10: about 4 cm across at 300 dpi)")
    qr.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.out and Path(args.out).suffix.lower() not in FORMATS:
        raise CliError(f"--out must end in .png or .svg, not {args.out}")
    if not 1 <= args.scale <= 100:
        raise CliError(f"--scale must be between 1 and 100, not {args.scale}")
    link = asyncio.run(_link(settings, young=args.young_people))
    if args.text:
        print(link)
        return 0
    import segno

    # Error correction "M" survives a crease or a smudge on a printed leaflet.
    code = segno.make(link, error="m", micro=False)
    code.save(args.out, scale=args.scale, border=4, dark="#000000", light="#ffffff")
    print(f"wrote {args.out}: a QR code for {link}")
    return 0


async def _link(settings: Settings, *, young: bool) -> str:
    from bot.programme.core_sections import get_setting

    async with opened(settings, migrate=False) as core:
        async with core.db.session() as s:
            short = ((await get_setting(s, "families")) or {}).get("short_link") or ""
    base = (os.environ.get("STAFFVOICE_WEB_BASE_URL", "").strip().rstrip("/")
            or f"http://{settings.host}:{settings.port}")
    path = "/young-people" if young else "/families"
    if short and not young:
        return str(short)
    return base + path
