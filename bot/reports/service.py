"""Reports as a service: a round's results, trends and who may see which group.

Rounds and questions come from the pulse feature's read functions; answers are counted by
`results`. Only closed rounds are reported: results that change while a round is open would let
someone watch one colleague's answer arrive.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from bot.errors import UserError
from bot.people import service as people
from bot.reports import results as res
from bot.reports.anonymity import ALL, role_key, team_key
from bot.reports.chart import Trend, TrendPoint
from bot.roles import CHANGE_TEAM, LEADER, TEAM_LEAD

# One refusal for every group or round the asker may not see, exists or not, answered or not.
REFUSAL = "Sorry, there are no results you can see for {what}. Type “results” for what you can see."
VIEW_ROLES = (CHANGE_TEAM, LEADER, TEAM_LEAD)
TREND_ROUNDS = 6


def refusal(what: str) -> UserError:
    return UserError(REFUSAL.format(what=f"'{what.strip()[:60]}'" if what.strip() else "that"))


def _round_info(rnd: object, title: str) -> res.RoundInfo:
    return res.RoundInfo(
        id=rnd.id, survey_id=rnd.survey_id, survey_title=title,  # type: ignore[attr-defined]
        number=rnd.number, opens_at=rnd.opens_at,  # type: ignore[attr-defined]
        closed=rnd.state == "closed",  # type: ignore[attr-defined]
        question_ids=tuple(rnd.question_ids or ()),  # type: ignore[attr-defined]
    )


async def round_info(s: AsyncSession, round_id: str) -> res.RoundInfo | None:
    """A round by id, or None."""
    from bot.pulse import service as pulse

    rnd = await pulse.round_by_id(s, round_id)
    if rnd is None:
        return None
    survey = await pulse.survey_by_id(s, rnd.survey_id)
    return _round_info(rnd, survey.title if survey else rnd.survey_id)


async def closed_rounds(s: AsyncSession, survey_id: str) -> list[res.RoundInfo]:
    """A survey's closed rounds, oldest first."""
    from bot.pulse import service as pulse

    survey = await pulse.survey_by_id(s, survey_id)
    title = survey.title if survey else survey_id
    return [_round_info(r, title) for r in await pulse.rounds_of(s, survey_id) if r.state == "closed"]


async def latest_closed_round(s: AsyncSession) -> res.RoundInfo | None:
    """The most recently opened closed round of any survey."""
    from bot.pulse import service as pulse

    best: res.RoundInfo | None = None
    for survey in await pulse.surveys(s, include_inactive=True):
        rounds = await closed_rounds(s, survey.id)
        if rounds and (best is None or rounds[-1].opens_at > best.opens_at):
            best = rounds[-1]
    return best


async def questions(s: AsyncSession, round_id: str) -> list[res.QuestionInfo]:
    """The questions a round asked, in order."""
    from bot.pulse import service as pulse

    rnd = await pulse.round_by_id(s, round_id)
    if rnd is None:
        return []
    return [res.QuestionInfo(q.id, q.text, q.kind, dict(q.options or {}))
            for q in await pulse.questions_of_round(s, rnd)]


async def survey_questions(s: AsyncSession, survey_id: str) -> dict[str, res.QuestionInfo]:
    """Every question a survey has had (retired ones too), by id: one read for many rounds."""
    from bot.pulse import service as pulse

    return {q.id: res.QuestionInfo(q.id, q.text, q.kind, dict(q.options or {}))
            for q in await pulse.questions_of(s, survey_id, include_inactive=True)}


async def previous_round(s: AsyncSession, info: res.RoundInfo) -> res.RoundInfo | None:
    before = [r for r in await closed_rounds(s, info.survey_id) if r.number < info.number]
    return before[-1] if before else None


# A closed round's counts never change, so its computed results are kept in this process for
# as long as the organisation, the thresholds and the round's stored counts are the same (each
# checked on every call: a renamed team, a stricter threshold or counts removed by retention
# compute afresh). The dashboard opens several rounds per page; each is computed once.
_CACHE: OrderedDict[tuple[object, ...], tuple[tuple[int, int], res.RoundResults]] = OrderedDict()
CACHE_ROUNDS = 64


async def round_results(
    s: AsyncSession, info: res.RoundInfo, *, compare: bool = True
) -> res.RoundResults:
    """Every group's results for a closed round, against the previous closed round."""
    org, labels = await res.load_org(s)
    th = await res.thresholds(s)
    key: tuple[object, ...] | None = None
    if info.closed:
        key = (info.id, compare, th, tuple(sorted(labels.items())),
               tuple(sorted((t, p or "") for t, p in org.parents.items())))
        stamp = await res.round_stamp(s, info.id)
        hit = _CACHE.get(key)
        if hit is not None and hit[0] == stamp:
            _CACHE.move_to_end(key)
            return hit[1]
    prev = await previous_round(s, info) if compare else None
    previous = await round_results(s, prev, compare=False) if prev is not None else None
    qs = await questions(s, info.id)
    data = await res.round_data(s, info.id, qs)  # a few rows per round, however many answered
    results = res.compute(*res.round_org(org, labels, data), th, info, qs, data, previous)
    if key is not None:
        _CACHE[key] = (stamp, results)
        while len(_CACHE) > CACHE_ROUNDS:
            _CACHE.popitem(last=False)
    return results


# --- who sees what -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Viewer:
    """The groups a person may see: every group, or the whole plus the teams they lead."""

    all_groups: bool
    teams: frozenset[str]

    def may_see(self, key: str) -> bool:
        return self.all_groups or key == ALL or key in {team_key(t) for t in self.teams}


async def viewer(s: AsyncSession, person_id: str, roles: frozenset[str]) -> Viewer | None:
    """What a person may see; None if they may see no results at all."""
    if CHANGE_TEAM in roles or LEADER in roles:
        return Viewer(True, frozenset())
    if TEAM_LEAD in roles:
        led = await people.teams_led_by(s, person_id)
        return Viewer(False, frozenset(t.id for t in led))
    return None


async def resolve_group(s: AsyncSession, text: str) -> str | None:
    """A group key from what someone typed: everyone, a team (id or name) or a role."""
    key = " ".join(text.strip().lower().split())
    if key in ("", "all", "everyone", "whole", "everybody"):
        return ALL
    team = await people.find_team(s, key)
    if team is not None:
        return team_key(team.id)
    for role, name in res.ROLE_NAMES.items():
        if key in (role, role.replace("_", " "), name.lower(), name.lower().rstrip("s")):
            return role_key(role)
    return None


# --- trends ----------------------------------------------------------------------------------


async def trend(
    s: AsyncSession, survey_id: str, question_id: str, group: str, *, last: int = TREND_ROUNDS
) -> Trend:
    """A question's headline score and the response rate for a group over the last rounds."""
    return (await trends(s, survey_id, [question_id], group, last=last))[question_id]


async def trends(
    s: AsyncSession, survey_id: str, question_ids: list[str], group: str, *,
    last: int = TREND_ROUNDS, rounds: list[res.RoundResults] | None = None,
) -> dict[str, Trend]:
    """Trends of several questions for one group, reading each round's results once (the
    one data preparation behind both the chat PNG and the web SVG). `rounds`: results already
    computed, oldest first."""
    if rounds is None:
        rounds = await group_history(s, (await closed_rounds(s, survey_id))[-last:],
                                      question_ids, group)
    out: dict[str, Trend] = {}
    for qid in question_ids:
        points: list[TrendPoint] = []
        title, kind = "", "likert5"
        label = group
        for r in rounds[-last:]:
            g = r.groups.get(group)
            if g is None:
                continue
            label = g.label
            q = next((x for x in g.questions if x.question.id == qid), None)
            if q is not None:
                title, kind = q.question.text, q.question.kind
            points.append(TrendPoint(f"Round {r.round.number}", q.score if q and q.shown else None,
                                     g.rate if g.shown else None))
        low, high, name = {
            "enps": (-100.0, 100.0, "eNPS"), "yesno": (0.0, 100.0, "yes %"),
        }.get(kind, (0.0, 100.0, "favourable %"))
        out[qid] = Trend(f"{title or 'Question'} - {label}", name, low, high, tuple(points))
    return out


async def group_history(
    s: AsyncSession, infos: list[res.RoundInfo], question_ids: list[str], group: str, *,
    also: tuple[str, ...] = (),
) -> list[res.RoundResults]:
    """One group's results of several closed rounds (oldest first), for some questions only:
    one read of the organisation, the questions and every round's summary rows. The engine
    still weighs each whole round; only the results of other groups (but those in `also`) and
    questions are not built. What `trends` reads when it is not handed results already
    computed."""
    if not infos:
        return []
    org, labels = await res.load_org(s)
    th = await res.thresholds(s)
    known = await survey_questions(s, infos[0].survey_id)
    wanted = {q: known[q] for q in question_ids if q in known}
    data = await res.rounds_data(s, [i.id for i in infos], {q: x.kind for q, x in wanted.items()})
    return [res.compute(*res.round_org(org, labels, data[info.id]), th, info,
                        [wanted[q] for q in info.question_ids if q in wanted],
                        data[info.id], groups=(group, *also))
            for info in infos]
