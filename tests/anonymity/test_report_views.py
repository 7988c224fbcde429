"""A motivated intruder who holds several views of the same closed round's reports.

Each view passes the anonymity engine on its own; the intruder keeps every export they ever
downloaded and combines them. CI runs this folder on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bot.core import Core
from bot.programme import loader
from bot.pulse import rounds
from bot.pulse import service as pulse
from bot.reports.anonymity import Org, Thresholds
from bot.reports.export import export_round
from bot.reports.results import (
    PEOPLE,
    SUMMARIES,
    QuestionInfo,
    RoundData,
    RoundInfo,
    compute,
    org_of_round,
)
from tests.conftest import EXAMPLE, MONDAY_10
from tests.test_reports_anonymity import organisations, smallest_derivable
from tests.test_reports_seed import emails, everyone_answers, seed_round

K = 5
# A deeper tree than the example's: Front Door inside Assessment inside Family Support.
NESTED = (EXAMPLE.read_text()
          .replace("{id: front-door, name: Front Door (MASH), parent: childrens-services,",
                   "{id: front-door, name: Front Door (MASH), parent: assessment,")
          .replace("{id: assessment, name: Assessment Team, parent: childrens-services,",
                   "{id: assessment, name: Assessment Team, parent: family-support,"))
FRONT_DOOR = ["lead.frontdoor", "practitioner11", "practitioner12", "practitioner13", "nightduty"]
CENTRE = ["director", "changelead", "changeofficer", "safeguarding.lead", "lado"]
LONE_FAMILY_SUPPORT = "lead.familysupport@northbridge.example"
LONE_ASSESSMENT = "lead.assessment@northbridge.example"


async def _export(core: Core, rid: str) -> dict[str, Any]:
    async with core.db.session() as s:
        data: dict[str, Any] = json.loads(await export_round(s, rid, "json"))
        return data


def _shown(export: dict[str, Any]) -> dict[str, dict[str, tuple[int, dict[str, int]]]]:
    """group -> question -> (n, distribution), for every figure the export shows."""
    return {g["group"]: {q["question_id"]: (q["n"], q["distribution"])
                         for q in g["questions"] if q["shown"] and "n" in q}
            for g in export["groups"] if g["shown"]}


async def nested_round_with_a_lone_manager(core: Core) -> str:
    """The nested programme's round closed last week: the centre's five and Front Door's five
    answer "5", one of Assessment too, and the Family Support manager alone answers "1"."""
    await loader.load(core.db, NESTED, core.router)
    people = await emails(core)
    answering = [e for e in people if e.split("@")[0] in FRONT_DOOR + CENTRE]
    answers = everyone_answers(answering + [LONE_ASSESSMENT], default=5)
    answers[LONE_FAMILY_SUPPORT] = {"listened-to": 1, "shared-vision": 4, "enps": 8}
    return await seed_round(core, MONDAY_10 - timedelta(days=7), answers)


async def test_a_threshold_raised_after_the_close_shows_nothing_the_first_view_did_not(
        loaded: Core) -> None:
    """Attack: download the round's export, get the programme's threshold raised from 5 to 6
    ("stricter"), download it again, and subtract one view's group from the other's.

    Family Support holds Assessment, which holds Front Door. Five of the centre, the five of
    Front Door, and one person each of Assessment and Family Support answer. Under 5 the engine
    shows Family Support (7 answers) and hides Assessment (the next smallest, 6) so Family
    Support's own lone answer cannot be had by subtraction; under 6 it hides Family Support
    and shows Assessment. Before the fix the second export showed Assessment with 6 answers,
    and Family Support (first export) minus Assessment (second) was the Family Support
    manager's own answer: "1" where everyone else said "5".
    """
    rid = await nested_round_with_a_lone_manager(loaded)

    views = [await _export(loaded, rid)]
    assert views[0]["min_group"] == K
    assert "team:family-support" in _shown(views[0])  # the round reports something
    text = NESTED.replace("anonymity: {min_group: 5,", "anonymity: {min_group: 6,")
    assert text != NESTED
    await loader.load(loaded.db, text, loaded.router)
    views.append(await _export(loaded, rid))
    assert views[1]["min_group"] == 6  # the stricter threshold is what the second view says

    shown = [_shown(v) for v in views]
    # The intruder's subtraction: any group of one view minus a group inside it of the other.
    for a in shown:
        for b in shown:
            for ga, qa in a.items():
                for gb, qb in b.items():
                    for qid in qa.keys() & qb.keys():
                        gap = qa[qid][0] - qb[qid][0]
                        if ga != gb and 0 < gap < K:
                            diff = {v: qa[qid][1][v] - qb[qid][1].get(v, 0) for v in qa[qid][1]}
                            assert gap >= K, (ga, "minus", gb, qid, {v: x for v, x in diff.items() if x})
    # And in general: no combination of every group either view showed pins down fewer than k.
    async with loaded.db.session() as s:
        org = await org_of_round(s, rid)
        row = await s.scalar(select(SUMMARIES.c.counts).where(
            SUMMARIES.c.round_id == rid, SUMMARIES.c.question_id == PEOPLE))
    data = RoundData.from_summary([(PEOPLE, row)], {})
    union = frozenset(g for view in shown for g in view)
    assert smallest_derivable(org, data.respondents, union, K) is None, sorted(union)


async def test_a_round_summed_before_thresholds_were_kept_gets_todays_at_the_next_tick(
        loaded: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same attack on a round closed by a version that kept no thresholds (its people row
    has none): read under 5, the next pulse tick, then under 6.

    Before the fix such a round was read under whatever the programme said at the time, so the
    two exports gave the Family Support manager's answer as above; the tick now keeps today's
    thresholds (5) for it, and the export under 6 shows a part of the one under 5.
    """
    rid = await nested_round_with_a_lone_manager(loaded)
    async with loaded.db.session() as s:  # as an older version left it: no thresholds
        text = await s.scalar(select(SUMMARIES.c.counts).where(
            SUMMARIES.c.round_id == rid, SUMMARIES.c.question_id == PEOPLE))
        old = {k: v for k, v in json.loads(text).items() if k not in ("min_group", "min_comments")}
        await s.execute(SUMMARIES.update().where(
            SUMMARIES.c.round_id == rid, SUMMARIES.c.question_id == PEOPLE).values(
            counts=json.dumps(old)))
    views = [await _export(loaded, rid)]
    assert "team:family-support" in _shown(views[0]) and "team:assessment" not in _shown(views[0])
    pulse._kept(loaded.db.engine.sync_engine).everywhere = False  # the upgraded process starts
    await rounds.close_due_rounds(loaded, MONDAY_10)  # its first pulse tick
    await loader.load(loaded.db, NESTED.replace("anonymity: {min_group: 5,",
                                                "anonymity: {min_group: 6,"), loaded.router)
    views.append(await _export(loaded, rid))
    first, second = (_shown(v) for v in views)
    assert set(second) <= set(first), sorted(set(second) - set(first))


def _subtract(views: list[dict[str, dict[str, tuple[int, dict[str, int]]]]]) -> None:
    """Every group of one view minus the same group of the other: 0 or at least K answers."""
    a, b = views
    for g in a.keys() & b.keys():
        for qid in a[g].keys() & b[g].keys():
            (n1, d1), (n2, d2) = a[g][qid], b[g][qid]
            diff = {v: d2.get(v, 0) - d1.get(v, 0) for v in d1.keys() | d2.keys()}
            assert not 0 < abs(n2 - n1) < K, (g, qid, {v: x for v, x in diff.items() if x})


async def test_a_round_summed_before_the_tree_was_kept_is_not_regrouped_by_a_reorganisation(
        loaded: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    """N14's attack on a round closed by a version that kept no team tree: read it, the next
    pulse tick, Front Door moves under Assessment, read it again, subtract.

    Before: such a round was reported on today's tree, so Assessment read 6 answers before the
    move and 8 after, and the difference was Front Door's two hidden answers (both "1"). The
    tick now keeps today's tree for it, and the move changes nothing in its reports.
    """
    people = await emails(loaded)
    front = ["lead.frontdoor@northbridge.example", "practitioner11@northbridge.example"]
    answers = everyone_answers([e for e in people if e not in front and not e.startswith(
        ("nightduty", "practitioner12", "practitioner13"))], default=5)
    for e in front:  # two of Front Door's five answer, and the round hides Front Door
        answers[e] = {"listened-to": 1, "shared-vision": 4, "enps": 8}
    rid = await seed_round(loaded, MONDAY_10 - timedelta(days=7), answers)
    async with loaded.db.session() as s:  # as an older version left it: no tree, no thresholds
        text = await s.scalar(select(SUMMARIES.c.counts).where(
            SUMMARIES.c.round_id == rid, SUMMARIES.c.question_id == PEOPLE))
        old = {k: v for k, v in json.loads(text).items()
               if k not in ("parents", "min_group", "min_comments")}
        await s.execute(SUMMARIES.update().where(
            SUMMARIES.c.round_id == rid, SUMMARIES.c.question_id == PEOPLE).values(
            counts=json.dumps(old)))
    before = await _export(loaded, rid)
    assert "team:front-door" not in _shown(before) and "team:assessment" in _shown(before)
    pulse._kept(loaded.db.engine.sync_engine).everywhere = False  # the upgraded process starts
    await rounds.close_due_rounds(loaded, MONDAY_10)  # its first pulse tick
    old_line = "{id: front-door, name: Front Door (MASH), parent: childrens-services,"
    await loader.load(loaded.db, EXAMPLE.read_text().replace(
        old_line, "{id: front-door, name: Front Door (MASH), parent: assessment,"), loaded.router)
    after = await _export(loaded, rid)
    _subtract([_shown(before), _shown(after)])


@settings(max_examples=200, deadline=None)
@given(organisations(), st.integers(3, 6), st.integers(0, 3), st.integers(0, 4), st.randoms())
def test_every_view_under_higher_thresholds_is_a_part_of_the_view_at_close(
        case: Any, k0: int, up: int, up_comments: int, rnd: Any) -> None:
    """The engine's side of the attacks above, over random organisations: whatever thresholds
    a closed round is read under, every group, question and comment list shown is one the
    thresholds at close showed, so all the views together show nothing more than that one.
    Before the fix: under 4 then 5, or comments under 10 then 13, a group hidden in one view
    was shown in the other (and the property found such pairs within a few examples)."""
    org, cells = case
    answered = {c: rnd.randint(0, n) for c, n in cells.items()}
    commenters = {(t, "*"): rnd.randint(0, n) for (t, _r), n in cells.items()}
    data = RoundData(respondents=dict(cells), invited=dict(cells),
                     answered={"q": {c: n for c, n in answered.items() if n}},
                     commenters={"c": {c: n for c, n in commenters.items() if n}},
                     teams={"q": {}}, roles={"q": {}}, whole={"q": {}},
                     parents=dict(org.parents), thresholds=Thresholds(k0, 10))
    info = RoundInfo("r", "s", "Survey", 1, datetime(2026, 11, 2, tzinfo=UTC), True)
    qs = [QuestionInfo("q", "Rated", "likert5"), QuestionInfo("c", "Say", "text")]

    def shown(th: Thresholds) -> set[tuple[str, str]]:
        out = compute(org, {}, th, info, qs, data)
        groups = {(g.key, "") for g in out.groups.values() if g.shown}
        return groups | {(g.key, q.question.id) for g in out.groups.values() if g.shown
                         for q in g.questions if q.shown or q.comments_shown}

    at_close = shown(Thresholds(k0, 10))
    assert shown(Thresholds(k0 + up, 10 + up_comments)) <= at_close
    assert shown(Thresholds(3, 10)) == at_close  # never shown under lower thresholds


def test_raising_min_group_alone_shows_no_comment_list_the_close_hid() -> None:
    """Found in review: the programme raises `min_group` (5 to 6) and leaves `min_comments` at
    10. Family Support holds Assessment; Family Support's own people hold one commenter,
    Assessment ten. At close Family Support's list (11) is shown and Assessment's hidden; before
    the fix, under 6 Family Support was hidden and Assessment's list (10) shown, and the first
    list minus the second was one person's comment."""
    org = Org({"fs": None, "as": "fs", "t2": None, "t3": None, "t4": None}, ())
    respondents = {("t2", "*"): 20, ("t3", "*"): 2, ("t4", "*"): 3, ("fs", "*"): 6,
                   ("as", "*"): 10}
    commenters = {("t2", "*"): 9, ("t3", "*"): 1, ("fs", "*"): 1, ("as", "*"): 10}
    data = RoundData(respondents=dict(respondents), invited=dict(respondents),
                     answered={"q": dict(respondents)}, commenters={"c": commenters},
                     teams={"q": {}}, roles={"q": {}}, whole={"q": {}},
                     parents=dict(org.parents), thresholds=Thresholds(5, 10))
    info = RoundInfo("r", "s", "Survey", 1, datetime(2026, 11, 2, tzinfo=UTC), True)
    qs = [QuestionInfo("q", "Rated", "likert5"), QuestionInfo("c", "Say", "text")]

    def comment_lists(th: Thresholds) -> set[str]:
        out = compute(org, {}, th, info, qs, data)
        return {g.key for g in out.groups.values() if g.shown
                for q in g.questions if q.question.id == "c" and q.comments_shown}

    at_close = comment_lists(Thresholds(5, 10))
    assert "team:fs" in at_close and "team:as" not in at_close
    assert comment_lists(Thresholds(6, 10)) <= at_close
