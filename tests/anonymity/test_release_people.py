"""A motivated intruder in the change team: a midday release whose "two" is one person (N25).

A release other than the day's last waits for at least two things in a listing (N22), so a
lone sender's item is dated to its day, not to the morning. It counted things: a practitioner
who sent two items before noon (or an item and an answer in a thread) made the two alone, and
both went at 12:00, a batch with one author. The intruder reads the noon listing and knows
both were sent that morning by whoever sent anything then: on a morning only one person was
free (the rota), or beside the platform's record of who submitted a form that morning (Slack's
and Microsoft's logs of app interactions), that names the author of both. The rule asked for:
a midday release needs two people among what waits, and the store still keeps no author.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text

from bot.core import Core
from bot.feedback import counts, sealed, senders
from bot.feedback.tables import FeedbackItem, FeedbackReleaseSender
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import CHANGE, OTHER, PRACTITIONER, give, identity_strings

FIRST = "Supervision keeps being cancelled in my team."
SECOND = "The new case recording form takes twice as long."
THIRD = "Admin tasks eat our afternoons."


async def _listing(d: FakeDriver, core: Core, when: object) -> str:
    core.clock.set(when)  # type: ignore[attr-defined]
    await d.say(CHANGE, "feedback list all")
    return d.seen(CHANGE)[-1]


async def _sender_rows(core: Core) -> list[FeedbackReleaseSender]:
    async with core.db.session() as s:
        return list((await s.execute(select(FeedbackReleaseSender))).scalars())


async def _marks(core: Core) -> list[str]:
    """The staff listing's marks as stored, in their stored order, opened with the server key
    (what an intruder with a dump and that key reads)."""
    rows = await _sender_rows(core)
    assert [r.listing for r in rows] in ([], [senders.STAFF])  # one row per listing
    return [k for r in rows for k in sealed.open_counts(
        core.secret, senders._aad(r.listing, r.gen), r.sealed)]


async def test_two_items_of_one_person_are_not_released_alone_at_noon(loaded: Core) -> None:
    """Attack: one practitioner sends at 10:05 and 10:40, nobody else all day. Before the fix
    the 12:00 listing showed both (two things waited), a batch of one author dated to the
    morning; now they wait for the day's last release, 17:00, as a lone item does. The next
    day two people send one each in the morning: they go at noon."""
    d = FakeDriver(loaded)
    day = loaded.clock.now().replace(hour=10, minute=5, second=0, microsecond=0)
    loaded.clock.set(day)  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, FIRST) is None
    loaded.clock.set(day.replace(minute=40))  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, SECOND) is None
    await counts.flush(loaded)  # the flusher, well before noon
    noon = await _listing(d, loaded, day.replace(hour=12, minute=1))
    assert FIRST not in noon and SECOND not in noon  # before: both, one author, at noon
    evening = await _listing(d, loaded, day.replace(hour=17, minute=1))
    assert FIRST in evening and SECOND in evening
    nxt = day + timedelta(days=1)
    loaded.clock.set(nxt)  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, "Duty weeks leave no time for visits.") is None
    assert await give(d, OTHER, THIRD) is None
    noon = await _listing(d, loaded, nxt.replace(hour=12, minute=0))
    assert "Duty weeks" in noon and THIRD in noon


async def test_an_item_and_an_answer_of_one_person_are_not_released_alone_at_noon(
        loaded: Core) -> None:
    """Attack: the practitioner's item went out yesterday and the change team replied; this
    morning they send a new item and answer the reply. Two things, one person: before the fix
    both were readable at noon, dated to the morning."""
    d = FakeDriver(loaded)
    day = loaded.clock.now().replace(hour=9, minute=0, second=0, microsecond=0)
    loaded.clock.set(day)  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, FIRST, replies=True) is None
    listing = await _listing(d, loaded, day.replace(hour=17, minute=1))
    from tests.test_feedback_helpers import ref_for
    await d.say(CHANGE, f"feedback reply #{ref_for(listing, FIRST)}")
    assert await d.submit(CHANGE, {"text": "Which days are cancelled most?"}) is None
    nxt = day + timedelta(days=1)
    loaded.clock.set(nxt)  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, SECOND) is None
    await d.tap(PRACTITIONER, "Read the answer")
    assert await d.submit(PRACTITIONER, {"text": "the first week of each month."}) is None
    await counts.flush(loaded)
    loaded.clock.set(nxt.replace(hour=12, minute=1))  # type: ignore[attr-defined]
    await d.say(CHANGE, f"feedback show #{ref_for(listing, FIRST)}")
    shown = d.seen(CHANGE)[-1]
    noon = await _listing(d, loaded, nxt.replace(hour=12, minute=2))
    assert SECOND not in noon and "the first week" not in shown  # before: both at noon
    assert SECOND in await _listing(d, loaded, nxt.replace(hour=17, minute=1))


async def test_the_waiting_senders_are_written_apart_from_the_items_and_name_nobody(
        loaded: Core) -> None:
    """The dump: the items' transactions write no sender row; the flush writes the listing's
    one sealed row, a mark per person (not per item), in a transaction of its own, holding no
    identity string; on PostgreSQL the row shares no item's `xmin`. The release deletes it."""
    d = FakeDriver(loaded)
    day = loaded.clock.now().replace(hour=10, minute=5, second=0, microsecond=0)
    loaded.clock.set(day)  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, FIRST) is None
    assert await give(d, PRACTITIONER, SECOND) is None
    assert await give(d, OTHER, THIRD) is None
    assert await _sender_rows(loaded) == []  # nothing about a sender with their item
    await counts.flush(loaded)
    [row] = await _sender_rows(loaded)
    marks_ = await _marks(loaded)
    assert row.listing == senders.STAFF and len(marks_) == 2  # two people, three items
    names = (await identity_strings(loaded.db, PRACTITIONER)
             | await identity_strings(loaded.db, OTHER))
    assert not any(n in k or n.encode() in row.sealed for k in marks_ for n in names)
    if not loaded.db.is_sqlite:
        async with loaded.db.engine.connect() as conn:
            items = set((await conn.execute(text("SELECT xmin::text FROM feedback_items"))).scalars())
            marks = set((await conn.execute(text(
                "SELECT xmin::text FROM feedback_release_senders"))).scalars())
        assert len(marks) == 1 and not marks & items, (marks, items)
    noon = await _listing(d, loaded, day.replace(hour=12, minute=1))
    assert FIRST in noon and SECOND in noon and THIRD in noon  # two people: they go at noon
    assert await _sender_rows(loaded) == []


async def test_a_mark_flushed_after_its_release_is_not_counted_at_the_next(loaded: Core) -> None:
    """A practitioner's item at 11:59 goes with the noon release (two people waited), but its
    mark is still held in another process; written after the release, it must not count as a
    person waiting for the next one, where it would let one person's lone item go at midday
    the next day. (The example programme releases at 12:00 and 17:00: the next day's noon is
    the next release that needs two.)"""
    from tests.test_feedback_counts import Driver, process

    d = FakeDriver(loaded)
    day = loaded.clock.now().replace(hour=11, minute=0, second=0, microsecond=0)
    loaded.clock.set(day)  # type: ignore[attr-defined]
    assert await give(d, OTHER, THIRD) is None
    assert await give(d, "practitioner3@northbridge.example", "Lunch breaks disappear.") is None
    async with process(loaded) as late:
        late_d = Driver(late, "late")
        late.clock.set(day.replace(minute=59))  # type: ignore[attr-defined]
        assert await give(late_d, PRACTITIONER, FIRST) is None  # held by `late`
        noon = await _listing(d, loaded, day.replace(hour=12, minute=1))
        assert FIRST in noon and THIRD in noon
        await counts.flush(late)  # its flush comes after the release
    assert await _sender_rows(loaded) == []  # dropped: its generation was released
    async with loaded.db.session() as s:
        assert all(i.released for i in (await s.execute(select(FeedbackItem))).scalars())
    # Made-up staleness: a row of an old generation, written by a replica that never saw
    # the release, is not counted either.
    nxt = day + timedelta(days=1)
    loaded.clock.set(nxt.replace(hour=9))  # type: ignore[attr-defined]
    async with loaded.db.transaction() as conn:
        await conn.execute(FeedbackReleaseSender.__table__.insert().values(
            listing=senders.STAFF, gen=senders.NEVER, stamp="stale",
            sealed=sealed.seal(loaded.secret, senders._aad(senders.STAFF, senders.NEVER),
                               {"0" * 64: 1, "1" * 64: 1})))
    assert await give(d, PRACTITIONER, SECOND) is None
    await counts.flush(loaded)
    assert len(await _marks(loaded)) == 1  # the flush drops the stale marks
    noon = await _listing(d, loaded, nxt.replace(hour=12, minute=1))
    assert SECOND not in noon


async def test_the_marks_stored_order_is_not_the_order_people_first_sent(loaded: Core) -> None:
    """Attack (review9), with the server key and a dump of the live table (no dead tuples, no
    write-ahead log): hash every person under the listing's generation and read the marks in
    the order they are stored (PostgreSQL `ctid`; SQLite: the cells of the table's page).
    Twelve people send one item each, the flusher running between them. Before the fix the
    flush rewrote every row in place, in the order stored, so the marks stayed in the order
    people first sent since the last release; with the items' own order (`xmin`, page
    position: N2's residue) each item had its sender. Then each flush laid every mark down
    again, shuffled; now the listing's marks are one sealed row, sorted by key."""
    import random

    from bot.people.tables import Person
    from bot.secrets import derive, keyed_hash
    from tests.anonymity.test_feedback_counter import PRACTITIONERS

    d = FakeDriver(loaded)
    day = loaded.clock.now().replace(hour=9, minute=0, second=0, microsecond=0)
    loaded.clock.set(day)  # type: ignore[attr-defined]
    order = list(PRACTITIONERS)
    random.Random(11).shuffle(order)
    for i, email in enumerate(order):
        assert await give(d, email, f"Thought {i + 1} about the new practice model.") is None
        await counts.flush(loaded)  # a quiet interval: one sender per flush
    async with loaded.db.session() as s:
        gen = await senders.generation(await s.connection(), senders.STAFF)
        people = list((await s.execute(select(Person))).scalars())
    box = derive(loaded.secret, senders.LABEL)
    owners = {keyed_hash(box, senders.STAFF, gen.isoformat(), p.id): p.email for p in people}
    seen = [owners[k] for k in await _marks(loaded)]
    assert sorted(seen) == sorted(order)
    assert seen != order and seen != order[::-1]  # before: exactly the order they sent


async def test_a_person_whose_item_waits_for_a_later_day_does_not_make_the_second_person(
        loaded: Core) -> None:
    """Attack (review9): the release times change during the day (a programme reload). At
    13:00, under one release a day (12:00), a practitioner's item waits for tomorrow's and is
    dated tomorrow (N29), but their mark counts in the staff listing's generation. The
    programme then releases at 14:00 and 17:00; another practitioner sends two items at 13:30.
    At 14:00 the two of them wait (two marks), but only the second one's two items are due:
    before the fix they went alone at a midday release, a batch of one author."""
    from bot.programme import loader
    from tests.conftest import EXAMPLE

    old = 'release_times: ["12:00", "17:00"]'
    text_ = EXAMPLE.read_text()
    assert old in text_
    d = FakeDriver(loaded)
    day = loaded.clock.now().replace(hour=12, minute=30, second=0, microsecond=0)
    await _listing(d, loaded, day)  # the noon release, applied
    await loader.load(loaded.db, text_.replace(old, 'release_times: ["12:00"]'), loaded.router)
    loaded.clock.set(day.replace(hour=13))  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, FIRST) is None  # waits for tomorrow's 12:00
    await loader.load(loaded.db, text_.replace(old, 'release_times: ["14:00", "17:00"]'),
                      loaded.router)
    loaded.clock.set(day.replace(hour=13, minute=30))  # type: ignore[attr-defined]
    assert await give(d, OTHER, SECOND) is None
    assert await give(d, OTHER, THIRD) is None
    await counts.flush(loaded)
    from bot.feedback import release
    release._NEXT.clear()  # a replica started since the reload: it plans 14:00
    midday = await _listing(d, loaded, day.replace(hour=14, minute=1))
    assert SECOND not in midday and THIRD not in midday  # before: both, one author, at 14:00
    assert SECOND in await _listing(d, loaded, day.replace(hour=17, minute=1))


async def test_a_forms_mark_reads_its_generation_on_the_cursor_and_follows_a_release(
        loaded: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """A guard for a saving (bench/README, cpu11): every staff form reads the staff listing's
    generation for its sender's mark, in the item's transaction, as a prepared statement on
    the DB-API cursor (storage/prepared.py: no execution context built). What it reads is
    unchanged: the moment the listing last released, so a form sent after a release is marked
    in the new generation, the only one a release counts."""
    from sqlalchemy.engine import Connection

    from bot.feedback.tables import FeedbackRelease

    d = FakeDriver(loaded)
    day = loaded.clock.now().replace(hour=10, minute=0, second=0, microsecond=0)
    loaded.clock.set(day)  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, FIRST) is None  # first contact, the day's key made
    sent: list[str] = []
    real = Connection._execute_context

    def counting(self: Connection, *a: object, **kw: object) -> object:
        sent.append(" ".join(str(x) for x in a))
        return real(self, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Connection, "_execute_context", counting)
    assert await give(d, OTHER, SECOND) is None
    monkeypatch.undo()
    assert not [q for q in sent if "FROM feedback_releases" in q]  # before: one per form
    assert {m[1] for m in senders._held(loaded).due} == {senders.NEVER}  # never released yet
    await counts.flush(loaded)
    assert FIRST in await _listing(d, loaded, day.replace(hour=17, minute=1))  # released
    async with loaded.db.session() as s:
        moment = (await s.execute(select(FeedbackRelease.moment).where(
            FeedbackRelease.name == senders.STAFF))).scalar_one()
    assert moment > senders.NEVER
    loaded.clock.set(day.replace(hour=17, minute=30))  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, THIRD) is None
    assert {m[1] for m in senders._held(loaded).due} == {moment}
