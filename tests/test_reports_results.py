"""Pulse results per group, the `results` command, exports and the leadership digest."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

from adapters.fake.port import FakePort
from bot.model import CommandEvent, ConversationRef, Image, MessageEvent, UserRef, plain_text
from bot.people.tables import Setting
from bot.reports import digest, export, service
from bot.reports.anonymity import ALL, role_key, team_key
from tests.conftest import MONDAY_10
from tests.test_reports_seed import emails, everyone_answers, seed_round

WEEK = timedelta(days=7)
CHANGE = "changelead@northbridge.example"
ASSESSMENT_LEAD = "lead.assessment@northbridge.example"
CIC_LEAD = "lead.cic@northbridge.example"
PRACTITIONER = "practitioner1@northbridge.example"
ASSESSMENT = [f"practitioner{i}@northbridge.example" for i in range(1, 6)]


async def two_rounds(core) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """Round 1: everyone answers 'listened to' with 3; round 2: Assessment moves to 5."""
    people = await emails(core)
    r1 = await seed_round(core, MONDAY_10 - 2 * WEEK, everyone_answers(people, default=3, enps=6))
    r2 = await seed_round(core, MONDAY_10 - WEEK, everyone_answers(
        people, {e: 5 for e in ASSESSMENT}, default=3, enps=9, comments=12))
    return r1, r2


async def results_of(core, round_id: str):  # type: ignore[no-untyped-def]
    async with core.db.session() as s:
        info = await service.round_info(s, round_id)
        return await service.round_results(s, info)


async def test_a_round_is_summarised_per_group_with_change_against_the_last(loaded) -> None:  # type: ignore[no-untyped-def]
    _, r2 = await two_rounds(loaded)
    res = await results_of(loaded, r2)
    whole = res.groups[ALL]
    assert whole.shown and whole.respondents == whole.invited == 25 and whole.rate == 1.0
    assert whole.rate_change == 0
    listened = next(q for q in whole.questions if q.question.text.startswith("I feel listened"))
    assert listened.n == 25
    assert dict(listened.distribution) == {"1": 0, "2": 0, "3": 20, "4": 0, "5": 5}
    assert listened.mean == round((20 * 3 + 5 * 5) / 25, 2)
    assert listened.favourable == 5 / 25
    assert listened.change == 20.0  # favourable went from 0% to 20%
    enps = next(q for q in whole.questions if q.question.kind == "enps")
    assert enps.enps == 100.0 and enps.change == 200.0  # all detractors -> all promoters
    team = res.groups[team_key("assessment")]
    assert team.shown and team.respondents == 6  # five practitioners and their lead
    assert next(q for q in team.questions if q.question.kind == "likert5" and q.n and q.favourable)
    assert not res.groups[team_key("children-in-care")].shown  # three people
    # A role is stored only where a team has k people of it (bot/pulse/cells.py): the example's
    # teams of six hold five practitioners and a lead, so no role cell survives and roles show
    # nothing, while every team of six or more does.
    assert not res.groups[role_key("practitioner")].shown
    assert not res.groups[role_key("team_lead")].shown
    comments = next(q for q in whole.questions if q.question.kind == "text")
    assert comments.comments_shown  # twelve comments across everyone
    assert not next(q for q in team.questions if q.question.kind == "text").comments_shown


async def test_a_small_group_is_hidden_together_with_the_group_that_would_reveal_it(loaded) -> None:  # type: ignore[no-untyped-def]
    people = await emails(loaded)
    # Only the five Assessment practitioners and three Front Door staff answer.
    front = ["practitioner11@northbridge.example", "practitioner12@northbridge.example",
             "practitioner13@northbridge.example"]
    rid = await seed_round(loaded, MONDAY_10 - WEEK, everyone_answers(ASSESSMENT + front))
    assert len(people) > 8
    res = await results_of(loaded, rid)
    assert res.groups[ALL].shown and res.groups[ALL].respondents == 8
    assert not res.groups[team_key("front-door")].shown
    # Everyone (8) minus Assessment (5) would be Front Door's three.
    assert not res.groups[team_key("assessment")].shown


async def test_the_programme_can_raise_the_threshold_but_not_lower_it_below_three(loaded) -> None:  # type: ignore[no-untyped-def]
    _, r2 = await two_rounds(loaded)
    async with loaded.db.session() as s:
        row = await s.get(Setting, "programme")
        row.value = {**row.value, "anonymity": {"min_group": 7, "min_comments": 10}}
    res = await results_of(loaded, r2)
    assert res.thresholds.min_group == 7
    assert not res.groups[team_key("assessment")].shown  # six people now is too few
    # Cells are fixed when a round opens: a lower threshold applies to rounds opened after it.
    async with loaded.db.session() as s:
        row = await s.get(Setting, "programme")
        row.value = {**row.value, "anonymity": {"min_group": 1, "min_comments": 1}}
    res = await results_of(loaded, r2)
    assert not res.groups[team_key("children-in-care")].shown  # rolled up when r2 opened at 5
    r3 = await seed_round(loaded, MONDAY_10 + WEEK, everyone_answers(await emails(loaded)))
    res = await results_of(loaded, r3)
    assert (res.thresholds.min_group, res.thresholds.min_comments) == (3, 10)
    assert res.groups[team_key("children-in-care")].shown  # three people, the floor


# --- in chat -------------------------------------------------------------------------------


class Chat:
    def __init__(self, core) -> None:  # type: ignore[no-untyped-def]
        self.core, self.port, self.n = core, FakePort(), 0
        core.add_port(self.port)

    async def say(self, email: str, text: str):  # type: ignore[no-untyped-def]
        self.n += 1
        user = UserRef("fake", "W1", f"U-{email}", email=email)
        conv = ConversationRef("fake", "W1", f"D-U-{email}")
        await self.core.handle(MessageEvent(f"r-{self.n}", user, conv, text=text), self.port)
        return self.port.messages(conv.conversation_id)[-1].message


async def test_change_team_sees_any_group_as_a_card_with_a_chart(loaded) -> None:  # type: ignore[no-untyped-def]
    await two_rounds(loaded)
    chat = Chat(loaded)
    msg = await chat.say(CHANGE, "results assessment team")
    text = plain_text(msg)
    assert "Pulse results: Weekly pulse, Round 2" in text
    assert "Assessment Team" in text
    assert "Responses: 6 of 6 asked (100%, no change on last round)" in text
    assert "favourable" in text
    images = [b for b in msg.blocks if isinstance(b, Image)]
    assert images and images[0].png and images[0].png.startswith(b"\x89PNG")
    assert "Round 1:" in images[0].alt and "Round 2:" in images[0].alt
    whole = plain_text(await chat.say(CHANGE, "results"))
    assert "Comments on" in whole and "Comment number" in whole
    assert "\u2014 Round 2 (" in whole  # dated by round, nothing finer
    hidden = plain_text(await chat.say(CHANGE, "results children in care"))
    assert "Not enough responses to show." in hidden and "favourable" not in hidden


async def test_a_team_lead_sees_their_team_and_the_whole_and_nothing_else(loaded) -> None:  # type: ignore[no-untyped-def]
    await two_rounds(loaded)
    chat = Chat(loaded)
    assert "Everyone" in plain_text(await chat.say(ASSESSMENT_LEAD, "results"))
    own = plain_text(await chat.say(ASSESSMENT_LEAD, "results Assessment Team"))
    assert "Responses: 6 of 6" in own
    other = plain_text(await chat.say(ASSESSMENT_LEAD, "results family support"))
    unknown = plain_text(await chat.say(ASSESSMENT_LEAD, "results no such team"))
    role = plain_text(await chat.say(ASSESSMENT_LEAD, "results practitioners"))
    assert other == ("Sorry, there are no results you can see for 'family support'. "
                     "Type “results” for what you can see.")
    assert unknown == other.replace("family support", "no such team")
    assert role == other.replace("family support", "practitioners")
    small = plain_text(await chat.say(CIC_LEAD, "results children in care"))
    assert "Not enough responses to show." in small


async def test_practitioners_are_refused_and_unknown_rounds_reveal_nothing(loaded) -> None:  # type: ignore[no-untyped-def]
    await two_rounds(loaded)
    chat = Chat(loaded)
    refused = plain_text(await chat.say(PRACTITIONER, "results"))
    assert refused.startswith("Sorry, only") and "Pulse" not in refused
    r9 = plain_text(await chat.say(CHANGE, "results round 9"))
    assert r9 == ("Sorry, there are no results you can see for 'round 9'. "
                  "Type “results” for what you can see.")
    r1 = plain_text(await chat.say(CHANGE, "results assessment team round 1"))
    assert "Round 1" in r1 and "Responses: 6 of 6" in r1


async def test_an_open_round_is_not_reported(loaded) -> None:  # type: ignore[no-untyped-def]
    people = await emails(loaded)
    await seed_round(loaded, MONDAY_10, everyone_answers(people), close=False)
    chat = Chat(loaded)
    assert plain_text(await chat.say(CHANGE, "results")) == (
        "No pulse round has closed yet, so there are no results to show.")


async def test_a_slash_command_works_too(loaded) -> None:  # type: ignore[no-untyped-def]
    await two_rounds(loaded)
    port = FakePort()
    loaded.add_port(port)
    user = UserRef("fake", "W1", "U-cl", email=CHANGE)
    conv = ConversationRef("fake", "W1", "D-U-cl")
    await loaded.handle(CommandEvent("c-1", user, conv, text="results practitioners"), port)
    assert "Practitioners" in plain_text(port.messages("D-U-cl")[-1].message)


# --- exports ---------------------------------------------------------------------------------


async def test_export_as_json_and_csv_carries_no_numbers_for_hidden_groups(loaded) -> None:  # type: ignore[no-untyped-def]
    _, r2 = await two_rounds(loaded)
    async with loaded.db.session() as s:
        data = json.loads(await export.export_round(s, r2, "json"))
        text = await export.export_round(s, r2, "csv")
    groups = {g["group"]: g for g in data["groups"]}
    assert groups[ALL]["respondents"] == 25 and groups[ALL]["response_rate"] == 1.0
    assert groups[team_key("children-in-care")] == {
        "group": "team:children-in-care", "label": "Children in Care", "shown": False,
        "note": "not enough responses to show"}
    texts = [q for q in groups[ALL]["questions"] if q["kind"] == "text"]
    assert len(texts[0]["comments"]) == 12
    rows = list(csv.DictReader(io.StringIO(text)))
    cic = [r for r in rows if r["group"] == "team:children-in-care"]
    assert [r["measure"] for r in cic] == ["note"]
    assert any(r["group"] == "all" and r["measure"] == "respondents" and r["value"] == "25"
               for r in rows)


async def test_the_command_line_writes_exports_and_charts(loaded, settings, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    _, r2 = await two_rounds(loaded)
    await loaded.db.dispose()  # the CLI opens its own connection
    import asyncio

    from staffvoice.cli import main

    out = tmp_path / "r.csv"
    rc = await asyncio.to_thread(main, ["report", "round", r2, "--format", "csv", "--out", str(out)], settings=settings)
    assert rc == 0 and out.read_text().startswith("round,group,label")
    png = tmp_path / "trend.png"
    rc = await asyncio.to_thread(main, ["report", "chart", "--survey", "weekly-pulse",
                                                     "--question", "listened-to",
                                                     "--group", "assessment", "--out", str(png)], settings=settings)
    assert rc == 0 and png.read_bytes().startswith(b"\x89PNG")
    said = capsys.readouterr().out
    assert "Round 1: favourable % 0; response rate 100%." in said
    assert "Round 2: favourable % 83.3; response rate 100%." in said
    rc = await asyncio.to_thread(main, ["report", "round", "nope", "--format", "json"], settings=settings)
    assert rc == 2 and "no closed round with id 'nope'" in capsys.readouterr().err


# --- the leadership digest -------------------------------------------------------------------


async def test_the_leadership_digest_posts_weekly_to_its_channel(loaded) -> None:  # type: ignore[no-untyped-def]
    await two_rounds(loaded)
    port = FakePort()
    loaded.add_port(port)
    async with loaded.db.session() as s:
        row = await s.get(Setting, "programme")
        row.value = {**row.value, "channels": {"leadership_digest": "fake:W1/leaders"}}
    assert await digest.tick(loaded, MONDAY_10) == 1
    assert await digest.tick(loaded, MONDAY_10 + timedelta(hours=1)) == 0  # once a week
    posted = [plain_text(p.message) for p in port.messages("leaders")]
    assert len(posted) == 1
    text = posted[0]
    assert "Participation: 100% (25 of 25 asked, no change on last round)." in text
    moves = [m for m in text.split("Biggest movements:\n")[1].splitlines() if m.startswith("• ")]
    assert len(moves) == 2  # only two questions moved; one line each, biggest first
    assert moves[0].startswith("• Everyone:") and "+200 points (eNPS now 100)" in moves[0]
    assert moves[1].startswith("• Assessment Team: \u201cI feel listened to")
    assert "+83.3 pts (favourable now 83.3%)" in moves[1]  # five of six now say 5
    assert "Roadmap (" in text or "Roadmap: " in text
    assert "Children in Care" not in text  # hidden groups never appear
    # Saturday is not a working day: nothing new; next Monday: a new digest.
    assert await digest.tick(loaded, MONDAY_10 + timedelta(days=5)) == 0
    assert await digest.tick(loaded, MONDAY_10 + WEEK) == 1
