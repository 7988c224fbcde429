"""The roadmap overview ("status") as last shown, kept a couple of seconds per process.

"status" is the most asked question and its answer is the same for everyone: every milestone
with its owners, team and last update, counted by health. Reading and drawing it costs two
statements and a card per question; within `STALE` of the last one, the same card is shown.

What may be stale, and for how long:
- display-only data (the roadmap's milestones, owners' and updaters' names, team names), never
  roles, never anything an anonymity rule depends on, never what a handler decides with;
- this process's own changes to those tables through the ORM show at once (`storage.written`
  counts them, and the card is drawn again when a count moved);
- a change from elsewhere (another replica, `programme load` from the command line, an
  operator's SQL, or a Core statement on a bare connection) shows within `STALE`.
The card is also drawn again when the day changes (ages and "overdue" are by the day), and
whenever the clock reads earlier than when it was drawn.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.milestones import cards, service
from bot.model import Message
from storage import written

STALE = timedelta(seconds=2)
# What the overview shows is read from these (service.roadmap).
TABLES = ("milestones", "milestone_updates", "milestone_owners", "teams", "people")


@dataclass(frozen=True)
class _Shown:
    version: int
    at: datetime
    day: date  # `at`'s date (UTC): ages are counted by it
    today: date  # the programme's date: "overdue" is counted by it
    message: Message


_SHOWN: weakref.WeakKeyDictionary[Engine, _Shown] = weakref.WeakKeyDictionary()  # per `Database`


async def overview(conn: AsyncConnection, now: datetime, today: date) -> Message:
    """The roadmap overview card, as `cards.overview` draws it from `service.roadmap`, at most
    `STALE` old (this process's own changes show at once)."""
    engine = conn.sync_engine
    seen = written.version(engine, TABLES)
    hit = _SHOWN.get(engine)
    if (hit is not None and hit.version == seen and hit.today == today
            and hit.day == now.date() and timedelta(0) <= now - hit.at < STALE):
        return hit.message
    vs = await service.roadmap(conn)
    message = cards.overview(service.counts([v.m for v in vs], today), vs, now, today)
    if written.version(engine, TABLES) == seen:  # no change of ours raced the read
        _SHOWN[engine] = _Shown(seen, now, now.date(), today, message)
    return message
