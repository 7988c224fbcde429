"""Every module that defines tables, imported so one metadata knows them all.

Tables register themselves on `storage.base.Base.metadata` when their module is imported;
storage imports no feature, so the application layer, which knows every part, imports them
before anything needs the whole schema (autogenerate, comparing models with migrations,
truncating every table in tests).
"""

from __future__ import annotations

import importlib
import pkgutil

import bot

# Tables owned by adapters rather than by a feature of the core.
ADAPTER_TABLES = ("adapters.teams.tables", "adapters.slack.tables")
# Tables owned by the application layer (the web dashboard's sessions).
APP_TABLES = ("staffvoice.web.tables",)


def import_all_tables() -> None:
    """Import the dispatcher's, every feature's (`bot/<feature>/tables.py`, found on disk so a
    new feature needs no edit here) and the adapters' table modules."""
    importlib.import_module("bot.dispatch_tables")
    for name in (*ADAPTER_TABLES, *APP_TABLES):
        importlib.import_module(name)
    for info in pkgutil.iter_modules(bot.__path__):
        if info.ispkg:
            try:
                importlib.import_module(f"bot.{info.name}.tables")
            except ModuleNotFoundError as e:
                if e.name != f"bot.{info.name}.tables":
                    raise
