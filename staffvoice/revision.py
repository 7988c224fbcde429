"""Write an Alembic revision for one feature's tables: `python -m staffvoice.revision pulse "msg"`.

Autogenerates against a scratch SQLite database upgraded to every existing head, so only
the new tables appear; the revision branches from `core` unless another is given.
"""

from __future__ import annotations

import asyncio
import re
import sys
import tempfile
from typing import Any

from alembic import command

from staffvoice.tables import import_all_tables
from storage.db import Database, alembic_config


async def main(label: str, message: str, down: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        url = f"sqlite+svinline:///{d}/scratch.db"
        import_all_tables()  # autogenerate compares every model with the migrated schema
        db = Database(url)
        await db.upgrade()
        await db.dispose()
        cfg = alembic_config(url.replace("+svinline", ""))
        if label != "core":
            # Only this feature's tables, even if other features' tables exist unmigrated.
            import importlib

            from storage.base import Base

            try:
                mod = importlib.import_module(f"bot.{label}.tables")
            except ModuleNotFoundError:  # an adapter's own tables (slack, teams)
                mod = importlib.import_module(f"adapters.{label}.tables")
            cfg.attributes["only_tables"] = {
                t.name for t in Base.metadata.sorted_tables
                if any(getattr(obj, "__table__", None) is t for obj in vars(mod).values())
            }

        command.revision(
            cfg, message=message, autogenerate=True, rev_id=revision_id(cfg, label, message),
            splice=True, head=down,
        )


def revision_id(cfg: Any, label: str, message: str) -> str:
    """The feature's name for its first revision; `<feature>_<words of the message>` after."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(cfg)
    known = {r.revision for r in script.walk_revisions()}
    if label not in known:
        return label
    words = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")[:40] or "change"
    rev = f"{label}_{words}"
    if rev in known:
        raise SystemExit(f"error: there is already a revision {rev!r}; say what changed differently")
    return rev


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit('usage: python -m staffvoice.revision FEATURE "what changed" [DOWN_REVISION]\n'
                         "  DOWN_REVISION: the current head of FEATURE's branch (default core)")
    label, message = sys.argv[1], sys.argv[2]
    down = sys.argv[3] if len(sys.argv) > 3 else "core"
    asyncio.run(main(label, message, down))
