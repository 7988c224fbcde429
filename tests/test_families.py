"""Stories: the public families and young people pages over HTTP (the real app, no browser),
what is stored, sealed and alerted, and every kind of bad input getting a clear page."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from bot.audit.tables import AuditEntry
from bot.core import Core
from bot.families import service
from bot.families.tables import FamilyAnswer, FamilyContact, FamilyFormUse, FamilyRate
from bot.feedback import counts
from bot.feedback.tables import FeedbackAlert, FeedbackItem
from bot.people.service import grant_role, person_by_email
from bot.programme.core_sections import set_setting
from bot.roles import SAFEGUARDING_LEAD
from storage.db import Database
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import CHANGE, LEADS, PRACTITIONER, dump, release

OFFICER = "changeofficer@northbridge.example"

CONCERN = "My mum hits me when she is angry and I am scared to go home."
TOKEN = re.compile(r'name="token" value="([^"]+)"')


@pytest.fixture
async def client(loaded: Core) -> AsyncIterator[TestClient]:
    from staffvoice.serve.app import build_app
    from staffvoice.serve.health import Health

    app, _ = build_app(loaded, {"STAFFVOICE_BOUND_HOSTS": "127.0.0.1"}, Health(loaded))
    async with TestClient(TestServer(app)) as c:
        yield c


async def token_of(client: TestClient, path: str = "/families") -> str:
    resp = await client.get(path)
    assert resp.status == 200
    m = TOKEN.search(await resp.text())
    assert m, "the form has a token"
    return m.group(1)


async def post(client: TestClient, path: str = "/families", **fields: str) -> tuple[int, str]:
    resp = await client.post(path, data=fields, headers={"Origin": str(client.make_url("")).rstrip("/"),
                                                         "Sec-Fetch-Site": "same-origin"})
    return resp.status, await resp.text()


async def count(core: Core, model: type) -> int:
    async with core.db.session() as s:
        return int((await s.execute(select(func.count()).select_from(model))).scalar_one())


async def items(core: Core) -> list[FeedbackItem]:
    async with core.db.session() as s:
        return list((await s.execute(select(FeedbackItem))).scalars())


async def test_a_parent_sends_the_form_and_sees_thanks_with_no_cookie(client: TestClient, loaded: Core) -> None:
    resp = await client.get("/families")
    text = await resp.text()
    assert "How are things going with the people helping your family?" in text
    assert "call 999" in text and "Front door" in text.replace("front door", "Front door")
    assert "set-cookie" not in {k.lower() for k in resp.headers}
    token = TOKEN.search(text).group(1)  # type: ignore[union-attr]
    status, page = await post(client, rating="4", working="The worker listens to us.",
                              better="Meetings are at school time.", theme="family-networks",
                              token=token)
    assert status == 200 and "Thank you" in page
    [item] = await items(loaded)
    assert item.source == "families" and item.theme_id == "family-networks" and not item.urgent
    assert "Rating: 4 out of 5" in item.text and "The worker listens" in item.text
    async with loaded.db.session() as s:
        answer = await s.get(FamilyAnswer, item.id)
    assert answer is not None and answer.rating == 4 and answer.audience == "families"


async def test_the_young_people_page_has_childline_and_its_own_source(client: TestClient, loaded: Core) -> None:
    token = await token_of(client, "/young-people")
    resp = await client.get("/young-people")
    assert "0800 1111" in await resp.text()
    status, page = await post(client, "/young-people", rating="5", working="My worker is kind", token=token)
    assert status == 200 and "Thank you" in page
    [item] = await items(loaded)
    assert item.source == "young_people"


async def test_a_disclosure_reaches_each_lead_and_the_person_sees_who_to_call(client: TestClient, loaded: Core) -> None:
    d = FakeDriver(loaded)
    token = await token_of(client, "/young-people")
    status, page = await post(client, "/young-people", better=CONCERN, token=token)
    assert status == 200
    assert "You may need help now" in page and "0800 1111" in page and "999" in page
    [item] = await items(loaded)
    assert item.urgent and "child_risk" in item.concerns
    for lead in LEADS:
        urgent = [m for m in d.seen(lead) if m.startswith("URGENT")]
        assert len(urgent) == 1 and "young person" in urgent[0], d.seen(lead)
    await d.say(LEADS[0], "feedback list urgent")  # every urgent item, whichever page
    assert "from a young person" in d.seen(LEADS[0])[-1] and "scared to go home" in d.seen(LEADS[0])[-1]
    await d.say(LEADS[0], f"feedback show #{item.id[:6]}")
    assert "on the public page" in d.seen(LEADS[0])[-1]
    async with loaded.db.session() as s:
        assert {a.status for a in (await s.execute(select(FeedbackAlert))).scalars()} == {"sent"}


async def test_a_contact_request_is_sealed_and_only_the_change_team_reads_it(client: TestClient, loaded: Core) -> None:
    token = await token_of(client)
    status, page = await post(client, better="Nobody rang me back", contact="yes", name="Sam Example",
                              how="07700 900123", token=token)
    assert status == 200 and "contact you" in page
    rows = await dump(loaded.db)
    flat = repr(rows)
    assert "Sam Example" not in flat and "07700 900123" not in flat  # sealed, not in any column
    [item] = await items(loaded)
    d = FakeDriver(loaded)
    ref = "#" + item.id[:6]
    await release(loaded)
    await d.say(PRACTITIONER, f"families contact {ref}")
    assert "Sam Example" not in " ".join(d.seen(PRACTITIONER))
    await d.say(CHANGE, f"families contact {ref}")
    assert "Sam Example" in d.seen(CHANGE)[-1] and "07700 900123" in d.seen(CHANGE)[-1]
    await d.say(CHANGE, f"families contacted {ref}")
    assert "deleted" in d.seen(CHANGE)[-1]
    assert await count(loaded, FamilyContact) == 0
    await d.say(CHANGE, f"families contact {ref}")
    assert "no contact request" in d.seen(CHANGE)[-1]
    # Who read a member of the public's details, and who deleted them, is in the audit trail
    # (the refused and the missing reads are not: nothing was read).
    assert await contact_entries(loaded) == [("view.family_contact", ref), ("family_contact.deleted", ref)]
    await d.say(CHANGE, "audit")
    assert f"view.family_contact {ref}" in d.seen(CHANGE)[-1]


async def contact_entries(core: Core) -> list[tuple[str, str]]:
    async with core.db.session() as s:
        return [(e.action, e.target) for e in (await s.execute(
            select(AuditEntry).where(AuditEntry.action.in_(
                ["view.family_contact", "family_contact.deleted", "view.urgent_queue"]))
            .order_by(AuditEntry.seq))).scalars()]


async def test_a_lead_reading_an_urgent_items_contact_before_its_release_does_not_name_it(
        client: TestClient, loaded: Core) -> None:
    """A change-team member who is also a lead reads a parent's contact details for a
    disclosure at once, before the change
    team can read the item: the trail records a look at the urgent queue, naming no item (as
    `feedback show` does, N37), and the change team's `audit` shows nothing of it."""
    d = FakeDriver(loaded)
    async with loaded.db.session() as s:  # a change-team member who is also a lead
        officer = await person_by_email(s, OFFICER)
        assert officer is not None
        await grant_role(s, officer.id, SAFEGUARDING_LEAD)
    status, _ = await post(client, better=CONCERN, contact="yes", name="A Parent",
                           how="parent@example.org", token=await token_of(client))
    assert status == 200
    [item] = await items(loaded)
    assert item.urgent and not item.released
    ref = "#" + item.id[:6]
    await d.say(OFFICER, f"families contact {ref}")
    assert "parent@example.org" in d.seen(OFFICER)[-1]
    await d.say(CHANGE, f"families contact {ref}")
    assert "parent@example.org" not in d.seen(CHANGE)[-1]
    assert await contact_entries(loaded) == [("view.urgent_queue", "urgent")]
    await d.say(CHANGE, "audit")
    assert item.id[:6] not in d.seen(CHANGE)[-1] and "urgent" not in d.seen(CHANGE)[-1]


async def test_contact_details_are_deleted_when_the_retention_period_ends(client: TestClient, loaded: Core) -> None:
    token = await token_of(client)
    await post(client, working="ok", contact="yes", name="A Parent", how="parent@example.org", token=token)
    assert await count(loaded, FamilyContact) == 1
    await service.tick(loaded, loaded.clock.now() + timedelta(days=service.FAMILY_CONTACT_DAYS - 1))
    assert await count(loaded, FamilyContact) == 1
    await service.tick(loaded, loaded.clock.now() + timedelta(days=service.FAMILY_CONTACT_DAYS + 1))
    assert await count(loaded, FamilyContact) == 0
    assert len(await items(loaded)) == 1  # the feedback itself stays


async def test_the_change_team_lists_families_feedback_as_its_own_source(client: TestClient, loaded: Core) -> None:
    token = await token_of(client)
    await post(client, rating="2", better="Too many different workers", theme="family-networks", token=token)
    d = FakeDriver(loaded)
    await release(loaded)
    await d.say(CHANGE, "feedback list")
    assert "Too many different workers" not in " ".join(d.seen(CHANGE))
    await d.say(CHANGE, "feedback list families")
    shown = d.seen(CHANGE)[-1]
    assert "Feedback from families and young people (1)" in shown
    assert "from a parent or carer" in shown and "Too many different workers" in shown


async def test_a_replayed_form_is_not_stored_twice(client: TestClient, loaded: Core) -> None:
    token = await token_of(client)
    first = await post(client, rating="3", token=token)
    again = await post(client, rating="3", token=token)
    assert first[0] == 200 and "Thank you" in first[1]
    assert again[0] == 200 and "We already have this" in again[1]
    assert len(await items(loaded)) == 1


async def test_a_missing_or_forged_token_stores_nothing_and_keeps_what_was_written(client: TestClient, loaded: Core) -> None:
    status, page = await post(client, working="Please keep this")
    assert status == 400 and "open too long" in page and "Please keep this" in page
    good = await token_of(client)
    ts, nonce, mac = good.split(".")
    for forged in (f"{ts}.{nonce}.{'0' * 32}", f"{int(ts) - 99999}.{nonce}.{mac}", "x" * 5000):
        status, page = await post(client, working="Please keep this", token=forged)
        assert status == 400 and "Send again" in page
    # A young people's token does not work on the parents' form.
    yp = await token_of(client, "/young-people")
    assert (await post(client, working="hi", token=yp))[0] == 400
    assert await items(loaded) == []


async def test_an_old_token_is_refused(client: TestClient, loaded: Core) -> None:
    token = await token_of(client)
    loaded.clock.advance(service.TOKEN_TTL + timedelta(minutes=1))  # type: ignore[attr-defined]
    status, page = await post(client, working="late", token=token)
    assert status == 400 and "open too long" in page
    assert await items(loaded) == []


async def test_a_cross_site_post_is_refused(client: TestClient, loaded: Core) -> None:
    token = await token_of(client)
    resp = await client.post("/families", data={"working": "x", "token": token},
                             headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert resp.status == 403 and "our own page" in await resp.text()
    assert await items(loaded) == []


async def test_empty_huge_binary_and_wrong_type_get_a_clear_page_never_a_500(client: TestClient, loaded: Core) -> None:
    token = await token_of(client)
    status, page = await post(client, token=token)
    assert status == 400 and "There is a problem" in page and "Choose a number or write" in page
    headers = {"Sec-Fetch-Site": "same-origin"}
    big = await client.post("/families", data={"working": "a" * 1_000_000, "token": token}, headers=headers)
    assert big.status == 413 and "That was too long" in await big.text()
    over = await post(client, working="a" * (service.MAX_TEXT + 1), token=token)
    assert over[0] == 400 and "letters or fewer" in over[1]
    binary = await client.post("/families", data=b"\xff\xfe\x00\x81token=\xc3\x28",
                               headers={**headers, "Content-Type": "application/x-www-form-urlencoded"})
    assert binary.status in (400, 413) and "<h1>" in await binary.text()
    junk = await client.post("/families", data=bytes(range(256)) * 10,
                             headers={**headers, "Content-Type": "application/octet-stream"})
    assert junk.status == 400 and "Nothing was saved" in await junk.text()
    for charset in ("nonesuch", "utf-16", "x" * 200):  # one Python knows no codec for
        odd = await client.post("/families", data=f"rating=4&token={token}".encode(), headers={
            **headers, "Content-Type": f"application/x-www-form-urlencoded; charset={charset}"})
        assert odd.status == 400 and "<h1>" in await odd.text(), charset
    as_json = await client.post("/families", json={"working": "hello", "token": token}, headers=headers)
    assert as_json.status == 400 and "Send again" in await as_json.text()
    rating = await post(client, rating="11", token=token)
    assert rating[0] == 400 and "from 1 to 5" in rating[1]
    contact = await post(client, working="x", contact="yes", token=token)
    assert contact[0] == 400 and "phone number or email" in contact[1]
    assert (await client.put("/families", headers=headers)).status == 405
    assert (await client.get("/families/nope")).status == 404
    slash = await client.get("/young-people/?lang=cy", allow_redirects=False)
    assert slash.status == 301 and slash.headers["Location"] == "/young-people?lang=cy"
    assert await items(loaded) == []


async def test_the_honeypot_puts_a_submission_in_the_spam_queue(client: TestClient, loaded: Core) -> None:
    token = await token_of(client)
    status, page = await post(client, working="buy cheap things", website="http://spam.example", token=token)
    assert status == 200 and "Thank you" in page  # a bot is not told
    [item] = await items(loaded)
    assert item.status == "spam"
    d = FakeDriver(loaded)
    await release(loaded)
    await d.say(CHANGE, "feedback list families")
    assert "No feedback matches" in d.seen(CHANGE)[-1]
    await d.say(CHANGE, "feedback list families spam")
    assert "buy cheap things" in d.seen(CHANGE)[-1]


async def test_the_rate_limit_keeps_only_a_keyed_hash_of_the_address_for_a_day(client: TestClient, loaded: Core) -> None:
    async with loaded.db.session() as s:
        await set_setting(s, "families", {"daily_limit": 2})
    for _ in range(2):
        assert (await post(client, rating="3", token=await token_of(client)))[0] == 200
    status, page = await post(client, rating="3", token=await token_of(client))
    assert status == 429 and "try again tomorrow" in page
    assert len(await items(loaded)) == 2
    assert await count(loaded, FamilyRate) == 0  # held in memory: no item was stored with it
    await counts.flush(loaded)
    rows = await dump(loaded.db)
    assert "127.0.0.1" not in repr(rows)
    assert await count(loaded, FamilyRate) == 1  # the day's one sealed row
    [rates] = (await service.RATES.every(loaded)).values()
    assert list(rates.values()) == [2]  # the refused one was not counted
    # A disclosure still gets through from the same connection (a school's shared address).
    status, page = await post(client, better=CONCERN, token=await token_of(client))
    assert status == 200 and "You may need help now" in page
    assert len(await items(loaded)) == 3
    await service.tick(loaded, loaded.clock.now() + timedelta(days=1))
    assert await count(loaded, FamilyRate) == 0
    assert await count(loaded, FamilyFormUse) == 0


async def test_languages_by_query_and_accept_language(client: TestClient) -> None:
    resp = await client.get("/families?lang=cy")
    text = await resp.text()
    assert '<html lang="cy">' in text and "Anfon" in text and "sut mae pethau" in text
    resp = await client.get("/families", headers={"Accept-Language": "cy-GB,cy;q=0.9,en;q=0.5"})
    assert "Anfon" in await resp.text()
    resp = await client.get("/families", headers={"Accept-Language": "fr"})
    assert '<html lang="en-GB">' in await resp.text()


async def test_the_programme_file_changes_the_words_and_the_routes(client: TestClient, loaded: Core) -> None:
    first = await (await client.get("/families")).text()
    assert "LADO" in first and "Whistleblowing" not in first  # the example names two routes
    async with loaded.db.session() as s:
        await set_setting(s, "families", {"wording": {"en": {"families": {
            "title": "How is Northbridge doing for your family?"}}},
            "routes": ["Children's social care front door (MASH)"]})
    text = await (await client.get("/families")).text()
    assert "How is Northbridge doing for your family?" in text
    assert "front door (MASH)" in text and "LADO" not in text


async def test_you_said_we_did_is_published_on_the_public_page(client: TestClient, loaded: Core) -> None:
    resp = await client.get("/families/you-said-we-did")
    assert resp.status == 200 and "Nothing yet" in await resp.text()
    from bot.feedback import service as fb
    from tests.test_feedback_helpers import give

    d = FakeDriver(loaded)  # staff feedback answered on its own stays inside the organisation
    assert await give(d, PRACTITIONER, "Supervision keeps being cancelled", theme="supervision") is None
    await release(loaded)
    await d.say(CHANGE, "you said we did supervision")
    await d.submit(CHANGE, {"title": "Supervision protected", "text": "No more cancellations."})
    assert "Published" in d.seen(CHANGE)[-1], d.seen(CHANGE)[-3:]
    assert "Supervision protected" not in await (await client.get("/families/you-said-we-did")).text()
    token = await token_of(client)
    await post(client, better="Meetings at school time", theme="family-networks", token=token)
    async with loaded.db.session() as s:
        from bot.people.tables import Person

        publisher = (await s.execute(select(Person).where(Person.email == CHANGE))).scalar_one()
    await release(loaded)
    await fb.publish(loaded, publisher.id, theme_id="family-networks", title="Meetings after school",
                     text="Family network meetings now start after 3:30pm.")
    page = await (await client.get("/young-people/you-said-we-did")).text()
    assert "Meetings after school" in page and "after 3:30pm" in page
    assert [i.status for i in await items(loaded) if i.source == "families"] == ["done"]


def test_the_families_section_validates_its_fields() -> None:
    from bot.families.section import FamiliesSection
    from bot.programme.schema import Doc

    doc = Doc({}, {})
    FamiliesSection().validate(doc, {"daily_limit": 0, "short_link": "ftp://x", "languages": ["english!"],
                                     "wording": {"en": {"nope": {}}}, "colour": "red"})
    text = "\n".join(doc.problems)
    for word in ("daily_limit", "short_link", "languages", "nope", "colour"):
        assert word in text, text





async def test_deleted_contact_details_leave_no_copy_in_the_sqlite_file(client: TestClient, loaded: Core) -> None:
    if not loaded.db.is_sqlite:
        pytest.skip("file scan is for SQLite; PostgreSQL keeps dead tuples until VACUUM")
    from pathlib import Path

    await post(client, working="ok", contact="yes", name="Jo Example", how="07700 900456",
               token=await token_of(client))
    async with loaded.db.session() as s:
        [row] = list((await s.execute(select(FamilyContact))).scalars())
    sealed = bytes(row.sealed)
    await release(loaded)
    await service.contact_made(loaded, "#" + row.item_id[:6])
    path = Path(loaded.db.url.split("///", 1)[1])
    async with loaded.db.engine.connect() as conn:
        await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    assert sealed[12:40] not in raw


async def test_whatever_arrives_gets_a_page_and_never_a_500(client: TestClient, loaded: Core) -> None:
    """Random bodies, content types and field values (with and without a real token)."""
    import random

    rnd = random.Random(20)
    types = ["application/x-www-form-urlencoded", "multipart/form-data; boundary=xyz",
             "multipart/form-data", "text/plain", "application/json", "", "application/x-www-form-urlencoded; charset=latin-1"]
    token = await token_of(client)
    for i in range(60):
        body = bytes(rnd.randrange(256) for _ in range(rnd.choice([0, 1, 10, 500, 5000])))
        if i % 3 == 0:
            body = f"token={token}&rating={rnd.choice(['1', '9', '', '%00', '%ff'])}&working=".encode() + body
        headers = {"Content-Type": rnd.choice(types), "Sec-Fetch-Site": "same-origin"}
        resp = await client.post(rnd.choice(["/families", "/young-people"]), data=body, headers=headers)
        text = await resp.text(errors="replace")
        assert resp.status < 500 and "<h1>" in text, (i, resp.status, text[:300])
    assert len(await items(loaded)) <= 1  # one token: at most one thing stored


async def test_behind_a_trusted_proxy_each_visitor_has_their_own_limit(loaded: Core) -> None:
    """Behind the council's reverse proxy every connection comes from the proxy: with the proxy
    trusted, the limit follows X-Forwarded-For; from anyone else the header changes nothing."""
    from staffvoice.serve.app import build_app
    from staffvoice.serve.health import Health

    async with loaded.db.session() as s:
        await set_setting(s, "families", {"daily_limit": 1})
    env = {"STAFFVOICE_BOUND_HOSTS": "127.0.0.1", "STAFFVOICE_TRUSTED_PROXIES": "127.0.0.1"}
    app, _ = build_app(loaded, env, Health(loaded))
    async with TestClient(TestServer(app)) as c:
        async def send(forwarded: str) -> int:
            resp = await c.post("/families", data={"rating": "4", "token": await token_of(c)},
                                headers={"Origin": str(c.make_url("")).rstrip("/"),
                                         "Sec-Fetch-Site": "same-origin",
                                         "X-Forwarded-For": forwarded})
            return resp.status

        assert await send("203.0.113.7") == 200
        assert await send("203.0.113.7") == 429  # the same visitor, stopped
        # A second visitor through the same proxy; a spoofed left-hand entry changes nothing.
        assert await send("198.51.100.1, 203.0.113.8") == 200
        assert await send("198.51.100.2, 203.0.113.8") == 429
    # Not trusted (the default): the header is ignored, the connection's address counts.
    async with loaded.db.session() as s:
        await set_setting(s, "families", {"daily_limit": 2})
    app, _ = build_app(loaded, {"STAFFVOICE_BOUND_HOSTS": "127.0.0.1"}, Health(loaded))
    async with TestClient(TestServer(app)) as c:
        for i in range(3):
            resp = await c.post("/families", data={"rating": "4", "token": await token_of(c)},
                                headers={"Origin": str(c.make_url("")).rstrip("/"),
                                         "Sec-Fetch-Site": "same-origin",
                                         "X-Forwarded-For": f"192.0.2.{i}"})
            status = resp.status
        assert status == 429  # three "visitors" on one connection: the third is over its limit


async def test_a_proxy_that_adds_its_own_forwarded_line_is_not_fooled_by_the_visitors(loaded: Core) -> None:
    """Some proxies (HAProxy's `option forwardfor`) add their own X-Forwarded-For line after
    the one the visitor sent instead of extending it: every line counts, in order, so the
    visitor's own line (any address they like) never becomes "the visitor"."""
    from multidict import CIMultiDict

    from staffvoice.serve.app import build_app
    from staffvoice.serve.health import Health

    async with loaded.db.session() as s:
        await set_setting(s, "families", {"daily_limit": 1})
    env = {"STAFFVOICE_BOUND_HOSTS": "127.0.0.1", "STAFFVOICE_TRUSTED_PROXIES": "127.0.0.1"}
    app, _ = build_app(loaded, env, Health(loaded))
    async with TestClient(TestServer(app)) as c:
        async def send(spoofed: str) -> int:
            headers = CIMultiDict([("Origin", str(c.make_url("")).rstrip("/")),
                                   ("Sec-Fetch-Site", "same-origin"),
                                   ("X-Forwarded-For", spoofed),  # the visitor's
                                   ("X-Forwarded-For", "203.0.113.7")])  # the proxy's
            resp = await c.post("/families", data={"rating": "4", "token": await token_of(c)},
                                headers=headers)
            return resp.status

        assert await send("198.51.100.1") == 200
        assert await send("198.51.100.2") == 429  # the same visitor, whatever they claim
    async with loaded.db.session() as s:
        assert await count(loaded, FamilyAnswer) == 1


@pytest.mark.parametrize("first, second, why", [
    ("203.0.113.7:50001", "203.0.113.7:50002", "a proxy that writes the visitor's port (Azure)"),
    ("[2001:db8:1:2::5]:443", "2001:db8:1:2::5", "a bracketed IPv6 address with a port"),
    ("2001:db8:1:2::5", "2001:db8:1:2:ffff::9", "two addresses of one IPv6 /64 (one household)"),
    ("::ffff:203.0.113.7", "203.0.113.7", "an IPv4 address written as IPv6"),
])
async def test_the_address_limit_cannot_be_dodged_by_how_an_address_is_written(
        loaded: Core, first: str, second: str, why: str) -> None:
    """The limit is per visitor: a port the proxy appends, brackets, IPv4 written as IPv6 and
    the rest of one IPv6 /64 (what one home or phone is given) are the same visitor."""
    from staffvoice.serve.app import build_app
    from staffvoice.serve.health import Health

    async with loaded.db.session() as s:
        await set_setting(s, "families", {"daily_limit": 1})
    env = {"STAFFVOICE_BOUND_HOSTS": "127.0.0.1", "STAFFVOICE_TRUSTED_PROXIES": "127.0.0.1"}
    app, _ = build_app(loaded, env, Health(loaded))
    async with TestClient(TestServer(app)) as c:
        async def send(forwarded: str) -> int:
            resp = await c.post("/families", data={"rating": "4", "token": await token_of(c)},
                                headers={"Origin": str(c.make_url("")).rstrip("/"),
                                         "Sec-Fetch-Site": "same-origin",
                                         "X-Forwarded-For": forwarded})
            return resp.status

        assert await send(first) == 200, why
        assert await send(second) == 429, why
        assert await send("2001:db8:1:3::5") == 200  # another /64: another visitor


@pytest.mark.parametrize("first, second", [
    ("64:ff9b::cb00:7107", "64:ff9b::c633:6401"),  # 203.0.113.7 and 198.51.100.1 via NAT64/SIIT
    ("2001:0:4136:e378:8000:63bf:34ff:8ef8", "2001:0:4136:e378:8000:63bf:3999:9bfe"),  # Teredo
])
async def test_ipv4_visitors_written_as_ipv6_are_not_one_household(loaded: Core, first: str,
                                                                   second: str) -> None:
    """Translated IPv4 visitors share an IPv6 /64 (the translator's, or the Teredo server's):
    each is counted by their own IPv4 address, so one of them cannot use up everyone's limit."""
    from staffvoice.serve.app import build_app
    from staffvoice.serve.health import Health

    async with loaded.db.session() as s:
        await set_setting(s, "families", {"daily_limit": 1})
    env = {"STAFFVOICE_BOUND_HOSTS": "127.0.0.1", "STAFFVOICE_TRUSTED_PROXIES": "127.0.0.1"}
    app, _ = build_app(loaded, env, Health(loaded))
    async with TestClient(TestServer(app)) as c:
        async def send(forwarded: str) -> int:
            resp = await c.post("/families", data={"rating": "4", "token": await token_of(c)},
                                headers={"Origin": str(c.make_url("")).rstrip("/"),
                                         "Sec-Fetch-Site": "same-origin",
                                         "X-Forwarded-For": forwarded})
            return resp.status

        assert await send(first) == 200
        assert await send(second) == 200  # another IPv4 visitor of the same translator
        assert await send(first) == 429  # the first, again
    assert await count(loaded, FamilyAnswer) == 2


def test_a_trusted_proxy_that_writes_its_own_port_is_still_trusted() -> None:
    from ipaddress import ip_network

    from staffvoice.web.config import client_address

    trusted = (ip_network("10.0.0.0/24"),)
    assert client_address("10.0.0.1", "198.51.100.4, 10.0.0.7:8080", trusted) == "198.51.100.4"
    assert client_address("10.0.0.1", "garbage", trusted) == "garbage"  # still one key


def test_a_bad_trusted_proxy_setting_is_one_clear_error() -> None:
    from bot.config import SettingsError
    from staffvoice.web.config import WebSettings

    with pytest.raises(SettingsError, match="STAFFVOICE_TRUSTED_PROXIES: 'proxy.local'"):
        WebSettings.from_env({"STAFFVOICE_TRUSTED_PROXIES": "10.0.0.1, proxy.local"})


# -- the per-address limit, counted in memory and written by the flusher (bot/feedback/counts.py)


async def rate_rows(core: Core) -> list[int]:
    """The address counters as stored (opened with the server key)."""
    return [n for day in (await service.RATES.every(core)).values() for n in day.values()]


async def set_limit(core: Core, limit: int) -> None:
    async with core.db.session() as s:
        await set_setting(s, "families", {"daily_limit": limit})


@asynccontextmanager
async def page_of(core: Core) -> AsyncIterator[tuple[TestClient, Core]]:
    """The public pages served by another process (its own Core, engine and counts) on the
    test's database, with no flusher running: the test flushes."""
    from staffvoice.serve.app import build_app
    from staffvoice.serve.health import Health

    db = Database(core.db.url)
    other = Core(db, settings=core.settings, clock=core.clock)
    await other.start()
    app, _ = build_app(other, {"STAFFVOICE_BOUND_HOSTS": "127.0.0.1"}, Health(other))
    try:
        async with TestClient(TestServer(app)) as c:
            yield c, other
    finally:
        await db.dispose()


async def send(client: TestClient, **fields: str) -> int:
    status, page = await post(client, token=await token_of(client), **fields)
    assert (status, "Thank you" in page, "try again tomorrow" in page) in (
        (200, True, False), (429, False, True)), (status, page[:300])
    return status


async def test_the_address_limit_counts_sends_not_yet_written_and_holds_across_a_flush_and_a_second_process(
        client: TestClient, loaded: Core) -> None:
    """A limit of four. Two from one address through the first process: nothing about the
    address is written with them; the flush writes one row of two. A second process reads
    it: it takes two more from the address and refuses a third while its two are only held;
    once it has written them, both processes refuse."""
    await set_limit(loaded, 4)
    assert [await send(client, rating="3") for _ in range(2)] == [200, 200]
    assert await rate_rows(loaded) == []  # the items' transactions wrote no counter
    assert await counts.flush(loaded) == 2
    assert await rate_rows(loaded) == [2]
    async with page_of(loaded) as (second, other):
        assert [await send(second, rating="4") for _ in range(3)] == [200, 200, 429]
        assert await rate_rows(loaded) == [2]  # the second's two are held
        assert await counts.flush(other) == 2
        assert await rate_rows(loaded) == [4]
        assert await send(second, rating="4") == 429  # still refused once written
        assert await send(client, rating="3") == 429  # the first reads them once written
    assert len(await items(loaded)) == 4
    assert await counts.flush(loaded) == 0 and await rate_rows(loaded) == [4]


async def test_two_forms_at_once_at_the_address_limit_store_one(client: TestClient, loaded: Core) -> None:
    await set_limit(loaded, 2)
    assert await send(client, rating="3") == 200
    tokens = [await token_of(client) for _ in range(2)]
    outcomes = await asyncio.gather(*(post(client, rating="4", token=t) for t in tokens))
    assert sorted(status for status, _page in outcomes) == [200, 429]
    assert len(await items(loaded)) == 2
    assert await counts.flush(loaded) == 2 and await rate_rows(loaded) == [2]


async def test_what_looks_like_a_disclosure_gets_five_times_the_limit_and_no_more(
        client: TestClient, loaded: Core) -> None:
    """A limit of one: a second ordinary form is refused, yet disclosures from the same
    address still get through, across a flush, until the address has sent five in all."""
    await set_limit(loaded, 1)
    assert [await send(client, rating="3") for _ in range(2)] == [200, 429]
    assert [await send(client, better=CONCERN) for _ in range(2)] == [200, 200]
    assert await rate_rows(loaded) == []  # all three held until the flush
    await counts.flush(loaded)
    assert await rate_rows(loaded) == [3]
    assert [await send(client, better=CONCERN) for _ in range(3)] == [200, 200, 429]
    assert await send(client, rating="5") == 429
    stored = await items(loaded)
    assert len(stored) == 5 and sum(i.urgent for i in stored) == 4
    await counts.flush(loaded)
    assert await rate_rows(loaded) == [service.CONCERN_ALLOWANCE * 1]


async def test_an_addresss_sends_not_written_by_the_days_end_are_dropped(
        client: TestClient, loaded: Core) -> None:
    """Sent late and not yet written when the day ends: the daily tick forgets the day's rate
    rows, the flush drops the held count rather than write a past day, and the address starts
    the new day at zero."""
    await set_limit(loaded, 1)
    assert await send(client, rating="3") == 200
    await counts.flush(loaded)
    assert [await send(client, rating="3") for _ in range(1)] == [429]
    loaded.clock.advance(timedelta(days=1))  # type: ignore[attr-defined]
    assert await send(client, rating="4") == 200  # held, of the new day
    loaded.clock.advance(timedelta(days=1))  # type: ignore[attr-defined]
    await service.tick(loaded, loaded.clock.now())
    assert await rate_rows(loaded) == []
    assert await counts.flush(loaded) == 0 and service.RATES.unwritten(loaded) == 0
    assert await send(client, rating="5") == 200
    await counts.flush(loaded)
    assert await rate_rows(loaded) == [1]
