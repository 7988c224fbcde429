"""`staffvoice families qr --out poster.png|poster.svg`, `staffvoice families qr --text` and
`staffvoice families reading-age`.

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
    ra = fsub.add_parser(
        "reading-age", help="how hard the pages' English is to read, with the programme's wording",
        description="Print the UK reading age of each public page's English (Flesch-Kincaid "
                    "grade plus five), its longest sentence, its longest words and any long text "
                    "that reads above --max. Exits 1 if a page or such a text is above --max.")
    ra.add_argument("--max", type=float, default=None, metavar="AGE",
                    help="the highest reading age allowed (default: the 9 the pages are written for)")
    ra.set_defaults(run=run_reading_age)


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


def run_reading_age(settings: Settings, args: argparse.Namespace) -> int:
    from staffvoice.web.families import readability

    most = readability.AIM if args.max is None else args.max
    if not 5 <= most <= 40:
        raise CliError(f"--max must be a reading age between 5 and 40, not {args.max}")
    over = 0
    for r in readability.pages(asyncio.run(_wording(settings))):
        verdict = f"above {most:g}" if r.above(most) else "ok"
        over += r.above(most)
        print(f"{PAGES[r.audience]}: reading age {r.age:.1f} ({verdict}); {r.words} words in "
              f"{r.sentences} sentences")
        print(f"  longest sentence: {r.longest}")
        for name, age in r.hardest:
            if age > most:
                print(f"  text above {most:g}: {name} (reading age {age:.1f})")
        if r.hard_words:
            print(f"  long words: {', '.join(r.hard_words[:8])}")
    print("Measured for English only; other languages are not scored.")
    return 1 if over else 0


PAGES = {"families": "/families (parents and carers)", "young_people": "/young-people"}


async def _wording(settings: Settings) -> dict[str, object]:
    from bot.programme.core_sections import get_setting

    async with opened(settings, migrate=False) as core:
        async with core.db.session() as s:
            return dict(((await get_setting(s, "families")) or {}).get("wording") or {})


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
