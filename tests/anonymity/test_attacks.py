"""A motivated intruder against pulse answers, comments and feedback (the ICO's test).

Each attack builds its situation with known people answering known values through the real
core, then attacks what an intruder could hold: a dump of every table (SQLite file or
PostgreSQL, with `xmin` and `ctid`), the server key, and every report surface (chat, JSON
export). Each docstring says what the same attack recovered on the code before sealed answers
(commit e09f444). CI runs this folder on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

from sqlalchemy import select

from bot.audit import trail
from bot.core import Core
from bot.dispatch_tables import ProcessedEvent
from bot.pulse.tables import PulseCell
from bot.reports.anonymity import ALL, team_key
from bot.scheduling.jobs import run_due
from bot.secrets import keyed_hash
from tests.conformance.drivers.fake import FakeDriver
from tests.conftest import MONDAY_10
from tests.test_feedback_helpers import (
    CHANGE,
    OTHER,
    PRACTITIONER,
    as_text,
    dump,
    give,
    ref_for,
    release,
)
from tests.test_reports_seed import emails, everyone_answers, seed_round

WEEK = timedelta(days=7)
LEAD = "lead.assessment@northbridge.example"
ASSESSMENT = [f"practitioner{i}@northbridge.example" for i in range(1, 6)]
SMALL_TEAM = "children-in-care"  # three people in the example programme
K = 5


async def _cell_sizes(core: Core, round_id: str) -> dict[tuple[str | None, str], int]:
    async with core.db.session() as s:
        rows = (await s.execute(select(PulseCell).where(PulseCell.round_id == round_id))).scalars()
        return {(c.team_id, c.role): c.invited for c in rows}


async def test_no_stored_answer_narrows_a_team_lead_or_a_small_team_below_k(loaded: Core) -> None:
    """Attack 1: join the answer rows with teams.lead_person_id and person_roles.

    Before: `pulse_answers` kept (team_id, role) on every answer, so the row with role
    team_lead and team assessment was the lead's answer, exactly, in every round; the three
    people of children-in-care were a team of their own.
    """
    people = await emails(loaded)
    answers = everyone_answers(people, default=5)
    answers[LEAD]["listened-to"] = 1  # the one answer the intruder is after
    rid = await seed_round(loaded, MONDAY_10 - WEEK, answers)
    tables = await dump(loaded.db)
    sizes = await _cell_sizes(loaded, rid)
    assert sum(sizes.values()) == len(people)
    # Every team and role stored next to an answer is shared by k or more people asked.
    assert all(n >= K for n in sizes.values()), sizes
    parents = {t["id"]: t["parent_id"] for t in tables["teams"]}

    def asked_under(team: str | None) -> int:  # people asked in a team and the teams below it
        def inside(t: str | None) -> bool:
            while t is not None:
                if t == team:
                    return True
                t = parents.get(t)
            return team is None
        return sum(n for (t, _r), n in sizes.items() if inside(t))

    for name in ("pulse_tallies", "pulse_cells"):
        for row in tables[name]:
            if name == "pulse_tallies" and row["value"] is None and row["choice"] is None:
                # How many commented under a comment team: one with min_comments asked.
                assert asked_under(row["team_id"]) >= 10, row
                continue
            assert sizes[(row["team_id"], row["role"])] >= K, (name, row)
            assert row["role"] != "team_lead", f"{name} singles out team leads: {row}"
            assert row["team_id"] != SMALL_TEAM, f"{name} keeps a team of three: {row}"
    # The lead's 1 sits in a cell with five others who answered 5: nothing tells which.
    ones = [r for r in tables["pulse_tallies"] if r["value"] == 1]
    assert len(ones) == 1 and sizes[(ones[0]["team_id"], ones[0]["role"])] >= K
    # Nothing that names a person survives the round: no participation, completion, key.
    for name in ("pulse_participation", "pulse_completions", "pulse_pending", "pulse_round_keys"):
        assert tables[name] == [], name


async def test_the_summaries_reports_read_cannot_be_differenced_below_k(loaded: Core) -> None:
    """Attack 1c: the per-group sums kept for reports (`pulse_summaries`), differenced.

    The intruder knows the organisation chart, so (at best) everyone's reporting cell. Each
    figure in the summaries is then the answers of a known set of people: a team's sum, a
    role's, everyone's, a cell's count. Differencing and combining figures can isolate at most
    a cell of their Venn diagram. Not on the code before sealed answers (no such table); with
    a sum per team *including* small sub-teams or a role per team, a team lead's answer would
    be one team's role sum minus another's.
    """
    from bot.pulse import service as pulse
    from bot.pulse.cells import assign, comment_teams
    from bot.pulse.summary import PEOPLE

    people = await emails(loaded)
    answers = everyone_answers(people, default=5, comments=12)
    answers[LEAD]["listened-to"] = 1  # the one answer the intruder is after
    rid = await seed_round(loaded, MONDAY_10 - WEEK, answers)
    tables = await dump(loaded.db)
    rows = {r["question_id"]: json.loads(r["counts"]) for r in tables["pulse_summaries"]
            if r["round_id"] == rid}
    async with loaded.db.session() as s:  # the org chart, as the intruder knows it
        roles = await pulse.main_roles(s, [p["id"] for p in tables["people"]])
        where = assign(((p["id"], p["team_id"], roles[p["id"]]) for p in tables["people"]),
                       await pulse.team_parents(s), K)
        parents = await pulse.team_parents(s)
    email = {p["id"]: p["email"] for p in tables["people"]}
    everyone = frozenset(where)
    home = comment_teams(Counter(where.values()), parents, 10)

    def cell(team: str | None, role: str) -> frozenset[str]:
        return frozenset(p for p, c in where.items() if c == (team, role))

    figures: list[tuple[frozenset[str], object]] = []  # (whose answers, what is stored)
    people_row = rows[PEOPLE]
    order = list(zip(people_row["teams"], people_row["roles"], strict=True))
    figures += [(cell(t, r), (inv, resp)) for (t, r), inv, resp in
                zip(order, people_row["invited"], people_row["respondents"], strict=True)]
    for qid, part in rows.items():
        if qid == PEOPLE:
            continue
        if "commented" in part:  # a comment question: how many commented per comment team
            figures += [(frozenset(p for p, c in where.items() if home.get(c[0], c[0]) == t), n)
                        for t, n in zip(part["teams"], part["commented"], strict=True)]
            continue
        figures += [(cell(t, r), n) for (t, r), n in zip(order, part["answered"], strict=True)]
        for t, d in part["teams"]:
            figures.append((frozenset(p for p, c in where.items() if c[0] == t), d))
        for r, d in part["roles"]:
            figures.append((frozenset(p for p, c in where.items() if c[1] == r), d))
        figures.append((everyone, part["all"]))
    assert figures and all(whose for whose, _ in figures)
    # The Venn diagram of every stored figure: whatever is combined, nothing finer comes out.
    venn: dict[tuple[bool, ...], int] = {}
    for p in everyone:
        sig = tuple(p in whose for whose, _ in figures)
        venn[sig] = venn.get(sig, 0) + 1
    assert min(venn.values()) >= K, sorted(venn.values())
    # The lead's 1 shows only in figures of k or more people, and in no difference of two.
    lead = next(p for p, e in email.items() if e == LEAD)
    with_one = [whose for whose, d in figures if isinstance(d, dict) and d.get("1")]
    assert with_one and all(lead in whose and len(whose) >= K for whose in with_one)
    for a in with_one:
        for b, _ in figures:
            rest = a - b
            assert not rest or len(rest) >= K, (len(rest), sorted(email[p] for p in rest))
    assert not any(SMALL_TEAM in (t if isinstance(t, str) else t[0] for t in part.get("teams", []))
                   for part in rows.values())


async def test_the_reminder_and_finishing_leave_nothing_once_the_round_closed(loaded: Core) -> None:
    """Attack 1b: `finished` next to `reminded` on participation.

    Before: closed rounds kept every participation row, so the one person reminded who then
    finished was the late responder, with their team.
    """
    d = FakeDriver(loaded)
    await loaded.tick()
    for who in ASSESSMENT:
        await d.tap(who, "4")
    loaded.clock.set(MONDAY_10 + timedelta(days=2, hours=1))  # type: ignore[attr-defined]
    await loaded.tick()  # the reminder goes to everyone who has not finished
    for label in ("4", "4", "4", "4", "4", "8", "Skip"):
        await d.tap("practitioner9@northbridge.example", label)  # finishes after the reminder
    loaded.clock.set(MONDAY_10 + timedelta(days=5))  # type: ignore[attr-defined]
    await loaded.tick()  # Friday 17:00 has passed: the round closes
    tables = await dump(loaded.db)
    assert tables["pulse_rounds"][0]["state"] == "closed"
    assert tables["pulse_participation"] == [] and tables["pulse_completions"] == []
    assert tables["pulse_rounds"][0]["n_finished"] == 1  # a number, never who


async def test_comment_lists_cannot_be_subtracted_or_harvested(loaded: Core) -> None:
    """Attack 2: comments(team) minus comments(role), and asking `results` again and again.

    Before: role groups had comment lists of their own, so a team's list minus the
    practitioners' list was the team lead's comment; each ask showed five random comments, so
    asking repeatedly harvested every one.
    """
    from bot.reports.export import export_round

    people = await emails(loaded)
    answers = everyone_answers(people, comments=len(people))
    rid = await seed_round(loaded, MONDAY_10 - WEEK, answers)
    async with loaded.db.session() as s:
        data = json.loads(await export_round(s, rid, "json"))
    lists: dict[str, set[str]] = {}
    for g in data["groups"]:
        for q in g.get("questions", []):
            if q.get("comments"):
                lists[g["group"]] = set(q["comments"])
    assert lists.get(ALL) and len(lists[ALL]) == len(people)
    assert not any(k.startswith("role:") for k in lists), "a role has a comment list"
    for a, la in lists.items():
        for b, lb in lists.items():
            diff = la - lb
            assert not diff or len(diff) >= 10, f"{a} minus {b} is {len(diff)} people's comments"
    # Chat shows the same comments every time it is asked.
    d = FakeDriver(loaded)
    seen = set()
    for _ in range(4):
        await d.say(CHANGE, "results")
        seen.add(tuple(x for x in d.seen(CHANGE)[-1].splitlines() if "Comment number" in x))
    assert len(seen) == 1 and len(next(iter(seen))) == 5


async def test_storage_order_tells_nothing_about_answer_order(loaded: Core) -> None:
    """Attack 3: sort by `xmin` and `ctid` (PostgreSQL) or read the table as stored (SQLite).

    Before: each tap committed its own answer row, so `ORDER BY xmin` (and `ctid`) gave the
    true answer order on PostgreSQL.
    """
    people = (await emails(loaded))[:12]
    given = {e: {"listened-to": 1 + i % 5, "comment": f"Note {i:02d} on the new tools"}
             for i, e in enumerate(people)}
    rid = await seed_round(loaded, MONDAY_10 - WEEK, given)
    async with loaded.db.engine.connect() as conn:
        if loaded.db.is_sqlite:
            order = [r[0] for r in await conn.exec_driver_sql(
                f"SELECT text FROM pulse_comments WHERE round_id = '{rid}'")]
        else:
            xmins = {r[0] for r in await conn.exec_driver_sql(
                "SELECT DISTINCT xmin::text FROM pulse_comments UNION "
                "SELECT DISTINCT xmin::text FROM pulse_tallies UNION "
                "SELECT DISTINCT xmin::text FROM pulse_summaries UNION "
                "SELECT DISTINCT xmin::text FROM pulse_cells")}
            assert len(xmins) == 1, "rows of one round were committed at different times"
            order = [r[0] for r in await conn.exec_driver_sql(
                f"SELECT text FROM pulse_comments WHERE round_id = '{rid}' ORDER BY ctid")]
    written = [g["comment"] for g in given.values()]
    assert sorted(order) == sorted(written) and order != written


async def test_you_said_we_did_is_not_an_oracle_for_shared_authors(loaded: Core) -> None:
    """Attack 4: publish two chosen items and read "to 1 author" or "to 2 authors".

    Before: the reply counted the authors told, so any pair of items (answered ones included)
    could be tested for a shared author.
    """
    d = FakeDriver(loaded)
    for who, text in ((PRACTITIONER, "Caseloads are too high."), (PRACTITIONER, "Visits clash."),
                      (OTHER, "Admin eats our time.")):
        assert await give(d, who, text, theme="workload", replies=True) is None
    await release(loaded)
    await d.say(CHANGE, "feedback list")
    listing = d.seen(CHANGE)[-1]
    same = [ref_for(listing, "Caseloads are too high."), ref_for(listing, "Visits clash.")]
    other = ref_for(listing, "Admin eats our time.")
    said = []
    for refs in (same, [other]):
        await d.say(CHANGE, "you said we did workload")
        assert await d.submit(CHANGE, {"title": "Caseload cap", "items": " ".join(refs),
                                       "text": "From January no caseload goes above 18."}) is None
        said.append(d.seen(CHANGE)[-1].split(";", 1)[1].split(") and ", 1)[1])
    assert said[0] == said[1] == "to the authors who allowed replies."
    # An answered item cannot be published again to pair it with another.
    await d.say(CHANGE, "you said we did workload")
    errors = await d.submit(CHANGE, {"title": "Again", "items": f"{same[0]} {other}",
                                     "text": "Testing who wrote what."})
    refused = d.seen(CHANGE)[-1] if errors is None else str(errors)
    assert "already had a “you said, we did”" in refused and "Nothing was published" in refused


async def test_the_server_key_links_no_closed_round_to_anyone(loaded: Core) -> None:
    """Attack 5: with STAFFVOICE_SECRET_KEY, hash every person for every round.

    Before: `response_key` was HMAC(server key, round, person), kept on every answer row
    forever, so the key holder mapped every answer of every round to its author.
    """
    people = await emails(loaded)
    rid = await seed_round(loaded, MONDAY_10 - WEEK, everyone_answers(people, comments=12))
    tables = await dump(loaded.db)
    everything = {as_text(v) for rows in tables.values() for row in rows for v in row.values()}
    for person in tables["people"]:
        for label in ("pulse", "event"):
            assert keyed_hash(loaded.secret, label, rid, person["id"]) not in everything
            assert keyed_hash(loaded.secret, label, person["id"]) not in everything
    assert tables["pulse_round_keys"] == []  # the round's own secret is gone


async def test_times_and_replies_narrow_nobody(loaded: Core) -> None:
    """Attack 6: the hour of processed events, and "the author could not be reached".

    Before: processed_events kept the hour for a week (the hour with one more event marked the
    "Before you send" re-submission), and the reply said whether the author was reachable.
    """
    d = FakeDriver(loaded)
    await loaded.tick()
    await d.tap(PRACTITIONER, "4")
    assert await give(d, OTHER, "Court deadlines clash with network meetings.", replies=True) is None
    async with loaded.db.session() as s:
        seen = list((await s.execute(select(ProcessedEvent.seen_at))).scalars())
    assert seen and all((t.hour, t.minute, t.second) == (0, 0, 0) for t in seen)
    await release(loaded)
    await d.say(CHANGE, "feedback list")
    ref = ref_for(d.seen(CHANGE)[-1], "Court deadlines clash")
    answers = []
    for reachable in (True, False):
        if not reachable:  # the author blocks the app: every DM to them now fails
            d.port.blocked.add(d.user(OTHER).user_id)
        await d.say(CHANGE, f"feedback reply #{ref}")
        assert await d.submit(CHANGE, {"text": "Thank you, which court?"}) is None
        answers.append(d.seen(CHANGE)[-1])
    assert answers[0] == answers[1]
    loaded.clock.set(MONDAY_10 + timedelta(days=2))  # type: ignore[attr-defined]
    await loaded.prune_events()
    async with loaded.db.session() as s:
        assert list((await s.execute(select(ProcessedEvent.seen_at))).scalars()) == []


async def test_live_counts_and_closing_at_will_give_away_no_known_group(loaded: Core) -> None:
    """Attack 6b: watch "N of M answered" and close the round once a known few answered.

    Before: exact live counts, and `pulse close` at any moment, so the change team could close
    a round right after two known colleagues answered and read their answers.
    """
    d = FakeDriver(loaded)
    await loaded.tick()
    await d.tap(PRACTITIONER, "1")
    await d.tap(OTHER, "1")
    await d.say(CHANGE, "pulse")
    assert "about 0 of 25 answered" in d.seen(CHANGE)[-1]
    await d.say(CHANGE, "pulse close weekly-pulse")
    assert "cannot be closed yet" in d.seen(CHANGE)[-1]
    await d.say(CHANGE, "pulse open weekly-pulse")  # replacing the round would close it too
    assert "cannot be closed yet" in d.seen(CHANGE)[-1]
    tables = await dump(loaded.db)
    assert [r["state"] for r in tables["pulse_rounds"]] == ["open"]
    assert tables["pulse_tallies"] == []
    # Whatever the intruder does to the team view afterwards, the two answers stay unlinkable.
    assert team_key("assessment")


async def test_the_daily_feedback_counter_and_reply_routes_expire(loaded: Core) -> None:
    """Attack 5b: the daily counter under the server key, and reply routes kept forever.

    Before: the counter was HMAC(server key, person, day), so on a day with one item the key
    holder found its author; reply routes never expired. Then: the feedback tick expired them
    on its own fixed 90 days beside the retention run's configured period, so the run's audit
    record counted none.
    """
    from bot.feedback import counts
    from bot.feedback import service as fb

    d = FakeDriver(loaded)
    assert await give(d, OTHER, "Court deadlines clash with network meetings.", replies=True) is None
    await counts.flush(loaded)
    tables = await dump(loaded.db)
    [row] = tables["feedback_daily_counts"]  # the day's one sealed row
    [(counter_key, _n)] = [c for day in (await counts.STAFF.every(loaded)).values()
                           for c in day.items()]  # opened with the server key
    day = row["day"].isoformat() if hasattr(row["day"], "isoformat") else str(row["day"])
    for person in tables["people"]:
        assert counter_key != keyed_hash(loaded.secret, "feedback-daily", person["id"], day)
    assert len(tables["feedback_day_keys"]) == 1 and len(tables["feedback_handles"]) == 1
    loaded.clock.set(MONDAY_10 + timedelta(days=1))  # type: ignore[attr-defined]
    await fb.tick(loaded, loaded.clock.now())
    tables = await dump(loaded.db)
    assert tables["feedback_daily_counts"] == [] and tables["feedback_day_keys"] == []
    assert len(tables["feedback_handles"]) == 1  # replies still possible for a while
    # The scheduler's daily jobs, 90 days on (the default reply_routes_days) and a day past it.
    for days in (90, 91):
        loaded.clock.set(MONDAY_10 + timedelta(days=days))  # type: ignore[attr-defined]
        await run_due(loaded, loaded.clock.now())
        assert len((await dump(loaded.db))["feedback_handles"]) == (days == 90)
    # One place expires them, so the retention run's record in the audit trail counts it.
    [run] = [e for e in await trail.entries(loaded.db) if e.action == "retention.run"][-1:]
    assert run.detail["reply_routes"] == 1


def test_only_a_local_demo_may_start_without_the_server_key() -> None:
    """Attack 5c: a server started without STAFFVOICE_SECRET_KEY keeps a generated key in a
    file beside the database, so whoever copies the data copies the key."""
    from bot.secrets import missing_key_problem

    for host in ("0.0.0.0", "10.1.2.3", "", "::", "staffvoice.example"):
        assert "STAFFVOICE_SECRET_KEY is not set" in (missing_key_problem("", host) or "")
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert missing_key_problem("", host) is None
    assert missing_key_problem("a long random value", "0.0.0.0") is None
