"""A closed round's summary (bot/pulse/summary.py): reports read it instead of every count row,
and every figure they show from it is the one the cells give, through the same engine."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, select, update

from bot.core import Core
from bot.people.tables import Team
from bot.pulse.summary import PEOPLE, summarise
from bot.pulse.tables import PulseCell, PulseQuestion, PulseSummary, PulseTally
from bot.reports import service
from bot.reports.anonymity import ALL, Thresholds, disclose, team_key
from bot.reports.results import QuestionInfo, RoundData, RoundInfo, compute, question_stats
from storage.db import alembic_config
from tests.conftest import MONDAY_10
from tests.test_reports_anonymity import organisations
from tests.test_reports_seed import emails, everyone_answers, seed_round

WEEK = timedelta(days=7)
QUESTIONS = [QuestionInfo("q1", "Rating", "likert5"), QuestionInfo("q2", "Recommend", "enps"),
             QuestionInfo("q3", "Which", "choice", {"choices": ["a", "b", "c"]}),
             QuestionInfo("q4", "Comment", "text")]
INFO = RoundInfo("r", "s", "Survey", 1, datetime(2026, 11, 30, tzinfo=UTC), True)


def _answer(q: QuestionInfo, i: int) -> str:
    return {"likert5": str(1 + i % 5), "enps": str(i % 11), "choice": "abc"[i % 3]}[q.kind]


@settings(max_examples=80, deadline=None)
@given(organisations(), st.integers(3, 5), st.randoms(use_true_random=False))
def test_every_figure_from_the_summary_is_the_one_the_cells_give(case, k, rnd) -> None:  # type: ignore[no-untyped-def]
    """Against the plainest reading of per-cell counts: a group's answers are the sum over the
    cells it contains, and the engine decides from the cells alone."""
    org, cells = case
    per_cell: dict[tuple[str, tuple[str | None, str]], Counter[str]] = {}
    answers, commenters = [], []
    for cell, n in cells.items():
        for q in QUESTIONS[:3]:
            given_here = Counter(_answer(q, rnd.randint(0, 20)) for _ in range(rnd.randint(0, n)))
            per_cell[(q.id, cell)] = given_here
            answers += [(q.id, cell, a, c) for a, c in given_here.items()]
        commenters.append(("q4", cell[0], rnd.randint(0, n)))
    kept = summarise({c: (n + rnd.randint(0, 2), n) for c, n in cells.items()}, answers, commenters)
    data = RoundData.from_summary(kept.items(), {q.id: q.kind for q in QUESTIONS})
    th = Thresholds(k, 10)
    res = compute(org, {}, th, INFO, QUESTIONS, data)
    people = disclose(org, cells, k)
    assert {g for g, r in res.groups.items() if r.shown} == people.visible
    for q_at, q in enumerate(QUESTIONS[:3]):
        answered = {c: sum(per_cell[(q.id, c)].values()) for c in cells}
        engine = disclose(org, answered, k, hidden=frozenset(org.groups()) - people.visible)
        for g in people.visible:
            got = res.groups[g].questions[q_at]
            assert got.shown == engine.shown(g), (g, q.id)
            if got.shown:
                dist: Counter[str] = Counter()
                for c in cells:
                    if org.contains(g, c):
                        dist.update(per_cell[(q.id, c)])
                assert got == question_stats_result(q, dist), (g, q.id)
    said: Counter[tuple[str | None, str]] = Counter()
    for _q, team, n in commenters:
        if n:
            said[(team, "*")] += n
    comments = disclose(org, said, 10, hidden=frozenset(org.groups()) - people.visible)
    for g in people.visible:
        assert res.groups[g].questions[3].comments_shown == comments.shown(g)


def question_stats_result(q: QuestionInfo, dist: Counter[str]):  # type: ignore[no-untyped-def]
    from bot.reports.results import QuestionResult

    return QuestionResult(q, True, **question_stats(q, dist))


def test_the_statistics_read_the_scale_and_count_anything_off_it() -> None:
    q = QuestionInfo("q", "Rating", "likert5")
    assert question_stats(q, {"5": 3, "4": 1, "1": 1}) == {
        "n": 5, "distribution": (("1", 1), ("2", 0), ("3", 0), ("4", 1), ("5", 3)),
        "mean": 4.0, "favourable": 0.8}
    # An answer off the scale is counted in n and the mean, as before the summary.
    assert question_stats(q, {"5": 1, "7": 1})["mean"] == 6.0
    e = QuestionInfo("e", "Recommend", "enps")
    assert question_stats(e, {"10": 2, "9": 1, "7": 1, "3": 1})["enps"] == 40.0


async def test_a_closed_rounds_summary_holds_the_same_counts_as_its_cells(loaded: Core) -> None:
    people = await emails(loaded)
    rid = await seed_round(loaded, MONDAY_10 - WEEK, everyone_answers(people, comments=12))
    async with loaded.db.session() as s:
        rows = dict((await s.execute(select(PulseSummary.question_id, PulseSummary.counts)
                                     .where(PulseSummary.round_id == rid))).all())
        cells = (await s.execute(select(PulseCell.team_id, PulseCell.role, PulseCell.invited,
                                        PulseCell.respondents).where(PulseCell.round_id == rid))).all()
        tallies = (await s.execute(select(PulseTally.question_id, PulseTally.team_id, PulseTally.role,
                                          PulseTally.value, PulseTally.n)
                                   .where(PulseTally.round_id == rid))).all()
        kinds = dict((await s.execute(select(PulseQuestion.id, PulseQuestion.kind))).all())
    people = json.loads(rows[PEOPLE])
    order = list(zip(people["teams"], people["roles"], strict=True))
    assert sorted(zip(people["teams"], people["roles"], people["invited"], people["respondents"],
                      strict=True)) == sorted(map(tuple, cells))
    for qid, text in rows.items():
        if qid == PEOPLE:
            continue
        part = json.loads(text)
        mine = [t for t in tallies if t.question_id == qid]
        if kinds[qid] == "text":
            assert set(zip(part["teams"], part["commented"], strict=True)) == {(t.team_id, t.n) for t in mine}
            continue
        answered = Counter()
        for t in mine:
            answered[(t.team_id, t.role)] += t.n
        assert dict(zip(order, part["answered"], strict=True)) == {c: answered[c] for c in order}
        assert part["all"] == {str(v): sum(t.n for t in mine if t.value == v) for v in {t.value for t in mine}}


async def test_results_follow_the_team_tree_kept_at_close_and_the_summary_is_what_reports_read(
        loaded: Core) -> None:
    """The summary keeps sums per reporting team and the team tree at close; teams above them
    are added up at report time along that tree, so a team moved after the round still counts
    under the parent it had (a later tree would let two versions of a group be subtracted:
    tests/anonymity/test_reorganised_teams.py). A team made since has no group in the round."""
    people = await emails(loaded)
    rid = await seed_round(loaded, MONDAY_10 - WEEK, everyone_answers(people))
    async with loaded.db.session() as s:
        teams = dict((await s.execute(select(Team.id, Team.parent_id))).all())
        info = await service.round_info(s, rid)
        assert info is not None
        before = await service.round_results(s, info)
    moved = next(t for t, p in teams.items() if p is not None and before.groups[team_key(t)].shown)
    old_parent = teams[moved]
    async with loaded.db.session() as s:
        await s.execute(update(Team).where(Team.id == moved).values(parent_id=None))
        s.add(Team(id="new-team", name="New Team", parent_id=old_parent))
    async with loaded.db.session() as s:
        after = await service.round_results(s, info)
    for key, g in before.groups.items():
        assert (after.groups[key].shown, after.groups[key].respondents) == (g.shown, g.respondents)
    assert after.groups[team_key(old_parent)].respondents == before.groups[team_key(old_parent)].respondents
    assert team_key("new-team") not in after.groups
    assert after.groups[ALL].respondents == before.groups[ALL].respondents == len(people)


def test_the_migration_sums_rounds_closed_before_it_as_the_close_does(tmp_path: Path) -> None:
    from alembic import command

    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "pulse_sealed")
    con = sqlite3.connect(tmp_path / "old.db")
    con.executescript("""
        INSERT INTO teams (id, name, parent_id) VALUES ('area', 'Area', NULL), ('t1', 'T1', 'area');
        INSERT INTO pulse_surveys (id, title, intro, audience, schedule, timezone, remind_after_min,
            close_after_min, anonymity, paused, active, source)
            VALUES ('s', 'S', '', '{}', '{}', 'Europe/London', 1, 2, 'anonymous', 0, 1, 'programme');
        INSERT INTO pulse_questions (id, survey_id, key, position, kind, text, options, active) VALUES
            ('q1', 's', 'a', 0, 'likert5', 'A', '{}', 1), ('q2', 's', 'b', 1, 'choice', 'B', '{}', 1),
            ('q3', 's', 'c', 2, 'text', 'C', '{}', 1);
        INSERT INTO pulse_rounds (id, survey_id, number, opens_at, remind_at, closes_at, state,
            anonymity, question_ids) VALUES
            ('r1', 's', 1, '2026-11-23 10:00:00', '2026-11-25 10:00:00', '2026-11-27 10:00:00',
             'closed', 'anonymous', '["q1", "q2", "q3"]'),
            ('r2', 's', 2, '2026-11-30 10:00:00', '2026-12-02 10:00:00', '2026-12-04 10:00:00',
             'open', 'anonymous', '["q1", "q2", "q3"]');
        INSERT INTO pulse_cells (id, round_id, team_id, role, invited, respondents) VALUES
            ('c1', 'r1', 't1', 'practitioner', 7, 6), ('c2', 'r1', 't1', '*', 5, 5),
            ('c3', 'r1', NULL, '*', 6, 4);
        INSERT INTO pulse_tallies (id, round_id, question_id, team_id, role, value, choice, n) VALUES
            ('a1', 'r1', 'q1', 't1', 'practitioner', 4, NULL, 5), ('a2', 'r1', 'q1', 't1', '*', 2, NULL, 5),
            ('a3', 'r1', 'q1', NULL, '*', 4, NULL, 3), ('a4', 'r1', 'q2', 't1', 'practitioner', NULL, 'x', 6),
            ('a5', 'r1', 'q3', 't1', '*', NULL, NULL, 11);
    """)
    con.commit()
    con.close()
    command.upgrade(alembic_config(url), "heads")
    with create_engine(url).connect() as conn:
        got = dict(conn.exec_driver_sql("SELECT question_id, counts FROM pulse_summaries"
                                        " WHERE round_id = 'r1'").all())
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM pulse_summaries WHERE round_id = 'r2'"
                                    ).scalar() == 0  # open: summed when it closes
    expected = summarise(
        {("t1", "practitioner"): (7, 6), ("t1", "*"): (5, 5), (None, "*"): (6, 4)},
        [("q1", ("t1", "practitioner"), "4", 5), ("q1", ("t1", "*"), "2", 5), ("q1", (None, "*"), "4", 3),
         ("q2", ("t1", "practitioner"), "x", 6)],
        [("q3", "t1", 11)])
    assert {q: json.loads(v) for q, v in got.items()} == {q: json.loads(v) for q, v in expected.items()}
    data = RoundData.from_summary(got.items(), {"q1": "likert5", "q2": "choice", "q3": "text"})
    assert data.teams["q1"] == {"t1": {"2": 5, "4": 5}, None: {"4": 3}}
    assert data.roles["q1"] == {"practitioner": {"4": 5}} and data.whole["q1"] == {"2": 5, "4": 8}
    assert data.commenters["q3"] == {("t1", "*"): 11}


def test_a_looping_team_tree_sums_each_team_where_the_engine_counts_it() -> None:
    """Parents that loop (a data error an import could make) stop each team's chain where the
    loop closes; the sums follow the same chains as the engine's counts."""
    from bot.reports.anonymity import Org

    org = Org({"a": "b", "b": "a", "c": "a", "d": None}, ("practitioner",))
    assert org.upward() is None
    cells = {("a", "practitioner"): 6, ("b", "practitioner"): 7, ("c", "*"): 8, ("d", "*"): 9}
    answers = [("q1", c, "4", n) for c, n in cells.items()]
    data = RoundData.from_summary(summarise({c: (n, n) for c, n in cells.items()}, answers, []).items(),
                                  {"q1": "likert5"})
    res = compute(org, {}, Thresholds(5, 10), INFO, [QuestionInfo("q1", "A", "likert5")], data)
    for g, r in res.groups.items():
        if r.shown and r.questions[0].shown:
            assert r.questions[0].n == sum(n for c, n in cells.items() if org.contains(g, c)), g
    assert res.groups[team_key("a")].questions[0].n == 6 + 7 + 8


async def test_a_round_closed_without_a_summary_is_summed_by_the_next_pulse_tick(loaded: Core) -> None:
    """A replica still on a version from before the summaries (a rolling upgrade) closes a round
    with cells and tallies only; the next pulse tick sums it as the close would have, so its
    results are not silently empty."""
    from sqlalchemy import delete

    from bot.pulse import rounds

    people = await emails(loaded)
    rid = await seed_round(loaded, MONDAY_10 - WEEK, everyone_answers(people, comments=12))
    async with loaded.db.session() as s:
        kept = dict((await s.execute(select(PulseSummary.question_id, PulseSummary.counts)
                                     .where(PulseSummary.round_id == rid))).all())
        info = await service.round_info(s, rid)
        assert info is not None
        before = await service.round_results(s, info)
        await s.execute(delete(PulseSummary).where(PulseSummary.round_id == rid))
    async with loaded.db.session() as s:
        empty = await service.round_results(s, info)
    assert not empty.groups[ALL].shown  # what a round without its summary would report
    await rounds.close_due_rounds(loaded, MONDAY_10)
    async with loaded.db.session() as s:
        again = dict((await s.execute(select(PulseSummary.question_id, PulseSummary.counts)
                                      .where(PulseSummary.round_id == rid))).all())
        after = await service.round_results(s, info)
    assert again == kept
    assert after.groups[ALL].shown and after.groups[ALL].respondents == len(people)
    assert {k: (g.shown, g.respondents) for k, g in after.groups.items()} == \
        {k: (g.shown, g.respondents) for k, g in before.groups.items()}
    await rounds.close_due_rounds(loaded, MONDAY_10)  # nothing more to do: no second copy
    async with loaded.db.session() as s:
        n = len((await s.execute(select(PulseSummary.question_id)
                                 .where(PulseSummary.round_id == rid))).all())
    assert n == len(kept)
