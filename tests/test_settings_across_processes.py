"""A setting changed by another process (`staffvoice programme load`, another
replica) must reach this one's parsed settings (get_setting_as) once the TTL has passed."""

from __future__ import annotations

import asyncio

from bot.core import Core
from bot.feedback import service as fb
from storage.db import Database
from tests.conftest import EXAMPLE

PATTERN = '      - "\\\\bno food in the (?:house|home)\\\\b"\n'


async def test_a_programme_loaded_by_another_process_changes_what_is_flagged(loaded: Core) -> None:
    async with loaded.db.transaction() as conn:
        before = await fb.config(conn)  # this process has parsed the programme's safeguarding
    assert "go hungry" not in str(before.extra_patterns)
    # The council adds a disclosure pattern with `staffvoice programme load` (its own engine).
    text = EXAMPLE.read_text()
    assert text.count(PATTERN) == 1
    other = Database(loaded.db.url)
    try:
        from bot.programme import loader
        await loader.load(other, text.replace(PATTERN, PATTERN + '      - "\\\\bgo hungry\\\\b"\n'),
                          loaded.router)
    finally:
        await other.dispose()
    await asyncio.sleep(1.2)  # SETTINGS_TTL_S: the stored value is read again
    async with loaded.db.transaction() as conn:
        after = await fb.config(conn)
    assert "go hungry" in str(after.extra_patterns), "stale parsed safeguarding config"
