"""Results of a pulse round per group: response rate, distributions, scores, change.

A closed round is stored as counts per reporting cell (bot/pulse/tables.py), so reading it costs
the same for ten answers or ten million; Python adds cells up the team tree and asks the
anonymity engine which groups, questions and comments may be shown. Pulse tables are read
through the columns agreed with the pulse feature, nothing more.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import column, select, table
from sqlalchemy.ext.asyncio import AsyncSession

from bot.people.tables import Team
from bot.programme.core_sections import get_setting
from bot.reports.anonymity import (
    ALL,
    NOT_ENOUGH,
    Cell,
    Comment,
    Disclosure,
    Org,
    Thresholds,
    disclose,
    role_key,
    team_key,
)
from bot.roles import CHANGE_TEAM, LEADER, PRACTITIONER, SAFEGUARDING_LEAD, TEAM_LEAD

# The respondent's main role, as agreed with pulse: the first of these they hold.
ROLE_ORDER = (CHANGE_TEAM, LEADER, SAFEGUARDING_LEAD, TEAM_LEAD, PRACTITIONER)
ROLE_NAMES = {
    CHANGE_TEAM: "Change team", LEADER: "Leaders", SAFEGUARDING_LEAD: "Safeguarding leads",
    TEAM_LEAD: "Team leads", PRACTITIONER: "Practitioners",
}
SCORED = ("likert5", "enps", "yesno")

# The agreed columns of the pulse tables (not the pulse feature's classes).
TALLIES = table("pulse_tallies", column("round_id"), column("question_id"), column("team_id"),
                column("role"), column("value"), column("choice"), column("n"))
CELLS = table("pulse_cells", column("round_id"), column("team_id"), column("role"),
              column("invited"), column("respondents"))
COMMENTS = table("pulse_comments", column("id"), column("round_id"), column("question_id"),
                 column("team_id"), column("text"))
MIXED = "*"  # a cell whose role group was too small to keep (bot/pulse/cells.py)


@dataclass(frozen=True)
class QuestionInfo:
    """What reports need of a question."""

    id: str
    text: str
    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RoundInfo:
    """What reports need of a round."""

    id: str
    survey_id: str
    survey_title: str
    number: int
    opens_at: datetime
    closed: bool

    @property
    def label(self) -> str:
        return f"Round {self.number} ({self.opens_at:%d %b %Y})"


@dataclass
class RoundData:
    """A round's answers counted per cell (team at answer time, main role)."""

    respondents: dict[Cell, int] = field(default_factory=dict)
    invited: dict[Cell, int] = field(default_factory=dict)
    # question id -> [(cell, answer, how many)], as the GROUP BY returned them
    values: dict[str, list[tuple[Cell, str, int]]] = field(default_factory=dict)
    answered: dict[str, dict[Cell, int]] = field(default_factory=dict)
    commenters: dict[str, dict[Cell, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class QuestionResult:
    """One question for one group; `shown` False means only the question text may appear."""

    question: QuestionInfo
    shown: bool
    n: int = 0
    distribution: tuple[tuple[str, int], ...] = ()
    mean: float | None = None
    favourable: float | None = None  # share answering 4 or 5 of 5
    enps: float | None = None  # promoters (9-10) minus detractors (0-6), in points
    yes: float | None = None
    change: float | None = None  # headline score against the previous round
    comments_shown: bool = False
    comments: tuple[Comment, ...] = ()

    @property
    def score(self) -> float | None:
        """The headline number: favourable %, eNPS or yes %."""
        if self.favourable is not None:
            return round(self.favourable * 100, 1)
        if self.enps is not None:
            return self.enps
        if self.yes is not None:
            return round(self.yes * 100, 1)
        return None


@dataclass(frozen=True)
class GroupResult:
    key: str
    label: str
    shown: bool
    invited: int = 0
    respondents: int = 0
    rate: float | None = None
    rate_change: float | None = None  # percentage points
    questions: tuple[QuestionResult, ...] = ()


@dataclass(frozen=True)
class RoundResults:
    round: RoundInfo
    thresholds: Thresholds
    groups: dict[str, GroupResult]

    def group(self, key: str) -> GroupResult:
        return self.groups[key]


# --- reading ---------------------------------------------------------------------------------


async def load_org(s: AsyncSession) -> tuple[Org, dict[str, str]]:
    """The team tree and roles as the engine sees them, and a label for every group."""
    teams = (await s.execute(select(Team.id, Team.name, Team.parent_id))).all()
    org = Org({t: p for t, _, p in teams}, ROLE_ORDER)
    labels = {ALL: "Everyone"}
    labels.update({team_key(t): name for t, name, _ in teams})
    labels.update({role_key(r): ROLE_NAMES[r] for r in ROLE_ORDER})
    return org, labels


async def thresholds(s: AsyncSession) -> Thresholds:
    """The programme's anonymity thresholds (5 and 10 unless it says stricter)."""
    return Thresholds.from_programme(await get_setting(s, "programme"))


async def round_stamp(s: AsyncSession, round_id: str) -> tuple[int, int]:
    """What a round's stored counts amount to (rows, respondents): results computed from them
    stay true while this is the same."""
    c = CELLS.c
    from sqlalchemy import func

    n, total = (await s.execute(select(func.count(), func.coalesce(func.sum(c.respondents), 0))
                                .where(c.round_id == round_id))).one()
    t = TALLIES.c
    tallies = await s.scalar(select(func.count()).where(t.round_id == round_id))
    return int(n) * 1_000_003 + int(tallies or 0), int(total)


async def round_data(s: AsyncSession, round_id: str, questions: Sequence[QuestionInfo]) -> RoundData:
    """A closed round's counts per cell: two reads of rows kept at close, never the comments."""
    t, c = TALLIES.c, CELLS.c
    data = RoundData()
    for team, role, invited, resp in (await s.execute(
            select(c.team_id, c.role, c.invited, c.respondents).where(c.round_id == round_id))):
        cell = (team, role)  # a round open during the upgrade to sealed answers has two rows
        data.invited[cell] = data.invited.get(cell, 0) + int(invited)
        if resp:
            data.respondents[cell] = data.respondents.get(cell, 0) + int(resp)
    kinds = {q.id: q.kind for q in questions}
    for team, role, qid, value, choice, n in (await s.execute(
            select(t.team_id, t.role, t.question_id, t.value, t.choice, t.n)
            .where(t.round_id == round_id))):
        kind = kinds.get(qid)
        if kind == "text":  # how many commented, per comment team (a team only, never a role)
            per_team = data.commenters.setdefault(qid, {})
            per_team[(team, MIXED)] = per_team.get((team, MIXED), 0) + int(n)
            continue
        answer = choice if kind == "choice" else value
        if kind is None or answer is None:
            continue
        cell = (team, role)
        data.values.setdefault(qid, []).append((cell, str(answer), int(n)))
        per_cell = data.answered.setdefault(qid, {})
        per_cell[cell] = per_cell.get(cell, 0) + int(n)
    return data


async def comments_for(
    s: AsyncSession, org: Org, rnd: RoundInfo, question_id: str, group: str, limit: int = 10
) -> list[Comment]:
    """Up to `limit` comments of a group, dated by round only: the same list every time.

    Comments are stored in random order under random keys, so the first by key are a random
    choice that does not change however often someone asks. Roles have no comments: comment
    lists are shown for the nested family of teams only, which the engine can check exactly.
    """
    m = COMMENTS.c
    if group.startswith("role:"):
        return []
    q = select(m.text).where(m.round_id == rnd.id, m.question_id == question_id)
    if group.startswith("team:"):
        inside = [t for t in org.parents if group[5:] in org.ancestors(t)]
        q = q.where(m.team_id.in_(inside))
    rows = await s.execute(q.order_by(m.id).limit(limit))
    return [Comment(t.strip(), rnd.label, rnd.opens_at) for (t,) in rows if t and t.strip()]


async def comments_by_group(
    s: AsyncSession, org: Org, rnd: RoundInfo, question_id: str, groups: Iterable[str],
    limit: int = 10,
) -> dict[str, list[Comment]]:
    """`comments_for` of many groups in one read of the question's comments: each group gets
    exactly the list `comments_for` gives it (the first `limit` by key among its teams)."""
    m = COMMENTS.c
    wanted = [g for g in groups if not g.startswith("role:")]
    out: dict[str, list[Comment]] = {g: [] for g in groups}
    if not wanted:
        return out
    members: dict[str | None, list[str]] = {}  # comment team -> the wanted groups it is in
    for t in org.parents:
        chain = set(org.ancestors(t))
        members[t] = [g for g in wanted if g == ALL or (g.startswith("team:") and g[5:] in chain)]
    rows = await s.execute(select(m.team_id, m.text).where(
        m.round_id == rnd.id, m.question_id == question_id).order_by(m.id))
    open_groups = set(wanted)
    for team, text in rows:
        if not open_groups:
            break
        if not text or not text.strip():
            continue
        for g in members.get(team, [ALL] if ALL in open_groups else []):
            if g in open_groups:
                out[g].append(Comment(text.strip(), rnd.label, rnd.opens_at))
                if len(out[g]) >= limit:
                    open_groups.discard(g)
    return out


# --- computing ---------------------------------------------------------------------------------


def _groups_of(org: Org, cell: Cell) -> tuple[str, ...]:
    """Every group a cell belongs to: the whole, its team and the teams above, its role."""
    team, role = cell
    return (ALL, *(team_key(t) for t in org.ancestors(team)), role_key(role))


def _invited(org: Org, cells: Mapping[Cell, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for cell, n in cells.items():
        for k in _groups_of(org, cell):
            out[k] = out.get(k, 0) + n
    return out


def _distributions(org: Org, rows: Iterable[tuple[Cell, str, int]]) -> dict[str, dict[str, int]]:
    """Per group, how many gave each answer (one pass over the GROUP BY rows)."""
    memo: dict[Cell, tuple[str, ...]] = {}
    out: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
    for cell, answer, n in rows:
        keys = memo.get(cell)
        if keys is None:
            keys = memo[cell] = _groups_of(org, cell)
        for k in keys:
            out[k][answer] += n
    return {k: dict(v) for k, v in out.items()}


def question_stats(q: QuestionInfo, dist: Mapping[str, int]) -> dict[str, Any]:
    """n, distribution, mean, favourable share, eNPS and yes share of one group's answers."""
    n = sum(dist.values())
    out: dict[str, Any] = {"n": n}
    if q.kind == "choice":
        order = list(q.options.get("choices") or sorted(dist))
        out["distribution"] = tuple((c, dist.get(c, 0)) for c in order)
        return out
    scale = {"likert5": range(1, 6), "enps": range(0, 11), "yesno": range(0, 2)}[q.kind]
    values = {int(k): c for k, c in dist.items()}
    labels = {0: "no", 1: "yes"} if q.kind == "yesno" else {}
    out["distribution"] = tuple((labels.get(v, str(v)), values.get(v, 0)) for v in scale)
    if not n:
        return out
    if q.kind != "yesno":
        out["mean"] = round(sum(v * c for v, c in values.items()) / n, 2)
    if q.kind == "likert5":
        out["favourable"] = sum(c for v, c in values.items() if v >= 4) / n
    elif q.kind == "enps":
        promoters = sum(c for v, c in values.items() if v >= 9)
        detractors = sum(c for v, c in values.items() if v <= 6)
        out["enps"] = round((promoters - detractors) * 100 / n, 1)
    else:
        out["yes"] = values.get(1, 0) / n
    return out


def compute(
    org: Org,
    labels: Mapping[str, str],
    th: Thresholds,
    rnd: RoundInfo,
    questions: Sequence[QuestionInfo],
    data: RoundData,
    previous: RoundResults | None = None,
) -> RoundResults:
    """Every group's results for a round, with what the anonymity engine hides removed."""
    people = disclose(org, data.respondents, th.min_group)
    invited = _invited(org, data.invited)
    per_q: dict[str, tuple[Disclosure, dict[str, dict[str, int]]]] = {}
    hidden = frozenset(org.groups()) - people.visible
    memo: dict[tuple[frozenset[tuple[Cell, int]], int], Disclosure] = {}

    def safe(cells: Mapping[Cell, int], k: int) -> Disclosure:
        # Questions everyone answered share their counts: decide once.
        key = (frozenset(cells.items()), k)
        if key not in memo:
            memo[key] = disclose(org, cells, k, hidden=hidden)
        return memo[key]

    for q in questions:
        if q.kind == "text":
            per_q[q.id] = (safe(data.commenters.get(q.id, {}), th.min_comments), {})
        else:
            shown = safe(data.answered.get(q.id, {}), th.min_group)
            per_q[q.id] = (shown, _distributions(org, data.values.get(q.id, [])))
    groups: dict[str, GroupResult] = {}
    for g in org.groups():
        label = labels.get(g, g)
        if g not in people.visible:
            groups[g] = GroupResult(g, label, shown=False)
            continue
        before = previous.groups.get(g) if previous else None
        qs = tuple(_question(q, g, per_q[q.id], before) for q in questions)
        resp, inv = people.counts[g], invited.get(g, 0)
        rate = resp / inv if inv else None
        rate_change = None
        if rate is not None and before is not None and before.shown and before.rate is not None:
            rate_change = round((rate - before.rate) * 100, 1)
        groups[g] = GroupResult(g, label, True, inv, resp, rate, rate_change, qs)
    return RoundResults(rnd, th, groups)


def _question(
    q: QuestionInfo, g: str, shown: tuple[Disclosure, dict[str, dict[str, int]]],
    before: GroupResult | None,
) -> QuestionResult:
    disc, dists = shown
    if q.kind == "text":
        return QuestionResult(q, shown=disc.shown(g), n=disc.counts.get(g, 0) if disc.shown(g) else 0,
                              comments_shown=disc.shown(g))
    if not disc.shown(g):
        return QuestionResult(q, shown=False)
    stats = question_stats(q, dists.get(g, {}))
    result = QuestionResult(q, True, **stats)
    prev = _previous_question(before, q.id)
    if prev is not None and prev.score is not None and result.score is not None:
        result = replace(result, change=round(result.score - prev.score, 1))
    return result


def _previous_question(before: GroupResult | None, qid: str) -> QuestionResult | None:
    if before is None or not before.shown:
        return None
    return next((x for x in before.questions if x.question.id == qid and x.shown), None)


def hidden_text() -> str:
    return NOT_ENOUGH[0].upper() + NOT_ENOUGH[1:]


def visible_groups(results: RoundResults, keys: Iterable[str]) -> list[GroupResult]:
    return [results.groups[k] for k in keys if k in results.groups]
