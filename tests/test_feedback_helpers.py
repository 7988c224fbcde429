"""Shared steps for the feedback stories: give feedback through the form, dump the database."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from bot.people.tables import Identity, Person
from storage.base import Base
from storage.db import Database

PRACTITIONER = "practitioner1@northbridge.example"
OTHER = "practitioner2@northbridge.example"
CHANGE = "changelead@northbridge.example"
LEADS = ("safeguarding.lead@northbridge.example", "lado@northbridge.example")
REF = re.compile(r"#([0-9a-f]{6})")
FEEDBACK_TABLES = ("feedback_items", "feedback_handles", "feedback_messages", "feedback_alerts",
                   "feedback_daily_counts", "feedback_responses")


async def give(driver: Any, email: str, text: str, *, theme: str = "", replies: bool = False,
               confirm: bool = True) -> dict[str, str] | None:
    """Open the form with the command, fill it in; send anyway if asked to confirm."""
    await driver.say(email, "feedback")
    assert driver.form(email) is not None, driver.seen(email)[-3:]
    values = {"text": text, "theme": theme, "replies": "true" if replies else "false"}
    errors = await driver.submit(email, values)
    if errors:
        return errors
    again = driver.form(email)
    if again is not None and again.form_id == "feedback.submit" and confirm:
        return await driver.submit(email, values)
    return None


async def dump(db: Database) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, every column."""
    out: dict[str, list[dict[str, Any]]] = {}
    async with db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = (await conn.execute(select(table))).mappings().all()
            out[table.name] = [dict(r) for r in rows]
    return out


async def identity_strings(db: Database, email: str) -> set[str]:
    """Everything that names this person: person id, email, platform ids, DM conversation ids."""
    async with db.session() as s:
        person = (await s.execute(select(Person).where(Person.email == email))).scalar_one()
        idents = list((await s.execute(select(Identity).where(Identity.person_id == person.id))).scalars())
    found = {person.id, email}
    for i in idents:
        found.add(i.user_id)
        if i.dm:
            found.add(i.dm["conversation_id"])
    return {f for f in found if f}


def as_text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex() + " " + bytes(value).decode("latin-1")
    return str(value)


def ref_for(listing: str, text: str) -> str:
    """The reference shown just before `text` in a change-team listing."""
    found = list(REF.finditer(listing))
    for m, nxt in zip(found, [*found[1:], None], strict=True):
        if text in listing[m.end(): nxt.start() if nxt else len(listing)]:
            return m.group(1)
    raise AssertionError(f"{text!r} is not in the listing")


async def release(core: Any) -> int:
    """The day's last feedback release, as the scheduler applies it at that moment, leaving
    the test's clock alone: everything sent so far becomes readable to the change team
    (bot/feedback/release.py). The moment is the first day's last after both the clock and
    the last release applied, so a test may call this again and again."""
    from bot.feedback import release as releases
    from bot.feedback import service as fb
    from bot.feedback.tables import FeedbackRelease
    from bot.programme.core_sections import programme_zone

    async with core.db.transaction() as conn:
        times = (await fb.config(conn)).release_times
        zone = await programme_zone(conn)
        applied = (await conn.execute(select(FeedbackRelease.moment).where(
            FeedbackRelease.name == releases.NAME))).scalar()
    start = max(core.clock.now(), applied) if applied is not None else core.clock.now()
    m = releases.after(start, zone, times)
    while not m.last:
        m = releases.after(m.at, zone, times)
    return int(await releases.release_due(core, m.at))
