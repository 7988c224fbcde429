"""The `staffvoice` command line: the composition root that wires core, storage and adapters."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from pathlib import Path

from bot.config import Settings
from bot.programme.schema import ProgrammeError

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "programme.yaml"
DEMO_USER = "practitioner1@northbridge.example"


def _core(settings: Settings):  # type: ignore[no-untyped-def]
    from bot.core import Core
    from storage.db import Database

    return Core(Database(settings.database_url), settings=settings)


async def _upgrade(settings: Settings) -> None:
    core = _core(settings)
    try:
        await core.db.upgrade()
    finally:
        await core.db.dispose()


async def _load(settings: Settings, path: str) -> int:
    from bot.programme import loader

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        print(f"error: cannot read {path}: {e.strerror if isinstance(e, OSError) else 'not UTF-8 text'}",
              file=sys.stderr)
        return 2
    core = _core(settings)
    try:
        await core.db.upgrade()
        loaded = await loader.load(core.db, text, core.router)
    except ProgrammeError as e:
        print(f"error: {path} has {len(e.problems)} problem(s); nothing was loaded:", file=sys.stderr)
        for p in e.problems:
            print(f"  {p}", file=sys.stderr)
        return 2
    finally:
        await core.db.dispose()
    print(f"loaded {path}: {', '.join(loaded)}")
    return 0


async def _check(settings: Settings, path: str) -> int:
    from bot.core import build_router
    from bot.programme import loader

    try:
        loader.validate(Path(path).read_text(encoding="utf-8"), build_router())
    except OSError as e:
        print(f"error: cannot read {path}: {e.strerror}", file=sys.stderr)
        return 2
    except ProgrammeError as e:
        print(f"error: {path} has {len(e.problems)} problem(s):", file=sys.stderr)
        for p in e.problems:
            print(f"  {p}", file=sys.stderr)
        return 2
    print(f"{path} is valid")
    return 0


async def _export(settings: Settings, out: str | None) -> int:
    from bot.programme import loader

    core = _core(settings)
    try:
        await core.db.upgrade()
        text = await loader.export(core.db, core.router)
    finally:
        await core.db.dispose()
    if out:
        Path(out).write_text(text, encoding="utf-8")
        print(f"wrote {out}")
    else:
        sys.stdout.write(text)
    return 0


async def _chat(settings: Settings, email: str, at: str | None = None) -> int:
    from adapters.console.adapter import run

    core = _core(settings)
    try:
        await core.db.upgrade()
        await run(core, email, at=at)
    finally:
        await core.db.dispose()
    return 0


async def _demo(settings: Settings, email: str, at: str | None = None) -> int:
    rc = await _load(settings, str(EXAMPLE))
    if rc:
        return rc
    print("Try: help · feedback · status · what's at risk? · results · /as changelead@northbridge.example")
    print("Pulse questions arrive in working hours only: move the console's clock with "
          "/time YYYY-MM-DD 09:30, or start with: staffvoice demo --at 'YYYY-MM-DD 09:30'.")
    return await _chat(settings, email, at)


# Feature command lines live with their feature; each exposes `cli(settings, args) -> int`.
EXTERNAL = {
    "serve": "adapters.server:cli",
    "manifest": "adapters.manifest_cli:cli",
    "schedule": "bot.scheduling.cli:cli",
    "report": "bot.reports.cli:cli",
    "broadcast": "bot.broadcasts.cli:cli",
}


def main(argv: list[str] | None = None) -> int:
    from bot import logs

    argv = list(sys.argv[1:] if argv is None else argv)
    settings = Settings.from_env()
    logs.setup(settings.log_level, settings.log_json)
    if argv and argv[0] in EXTERNAL:
        mod, _, fn = EXTERNAL[argv[0]].partition(":")
        try:
            target = getattr(importlib.import_module(mod), fn)
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith(("bot.", "adapters.")):
                print(f"error: '{argv[0]}' is not available in this build", file=sys.stderr)
                return 2
            raise
        return int(target(settings, argv[1:]) or 0)

    ap = argparse.ArgumentParser(prog="staffvoice", description="Give staff a voice in chat.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    db = sub.add_parser("db", help="database").add_subparsers(dest="sub", required=True)
    db.add_parser("upgrade", help="apply migrations")
    prog = sub.add_parser("programme", help="the programme file").add_subparsers(dest="sub", required=True)
    p_load = prog.add_parser("load", help="validate and load a programme file")
    p_load.add_argument("file")
    p_check = prog.add_parser("check", help="validate only")
    p_check.add_argument("file")
    p_exp = prog.add_parser("export", help="write the current programme as YAML")
    p_exp.add_argument("--out")
    chat = sub.add_parser("chat", help="chat with the bot in this terminal")
    chat.add_argument("--as", dest="email", default=DEMO_USER)
    chat.add_argument("--at", help="start the console's clock at 'YYYY-MM-DD HH:MM' (programme time zone)")
    demo = sub.add_parser("demo", help="load the example programme and chat")
    demo.add_argument("--as", dest="email", default=DEMO_USER)
    demo.add_argument("--at", help="start the console's clock at 'YYYY-MM-DD HH:MM' (programme time zone)")
    for name in EXTERNAL:
        sub.add_parser(name, help=f"{name} (see 'staffvoice {name} --help')")
    args = ap.parse_args(argv)

    if args.cmd == "db":
        asyncio.run(_upgrade(settings))
        print("database is up to date")
        return 0
    if args.cmd == "programme":
        if args.sub == "load":
            return asyncio.run(_load(settings, args.file))
        if args.sub == "check":
            return asyncio.run(_check(settings, args.file))
        return asyncio.run(_export(settings, args.out))
    if args.cmd == "chat":
        return asyncio.run(_chat(settings, args.email, args.at))
    if args.cmd == "demo":
        return asyncio.run(_demo(settings, args.email, args.at))
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
