"""Results of a pulse round per group: response rate, distributions, scores, change.

A closed round keeps its counts summed per group of reporting cells (`pulse_summaries`, see
bot/pulse/summary.py): a report reads one row per question, the same for ten answers or ten
million. Python adds the per-team sums up the team tree kept at the round's close (today's
tree only for rounds closed before trees were kept), and the anonymity engine decides, from
the cells, which groups, questions and comments may be shown. A later tree is never used: a
group shown under two trees, with a small team inside it in one and not in the other, would
give that team's answers away by subtraction.
Pulse tables are read through the columns agreed with the pulse feature, nothing more.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import column, func, select, table
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
    group_counts,
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
SUMMARIES = table("pulse_summaries", column("round_id"), column("question_id"), column("counts"))
COMMENTS = table("pulse_comments", column("id"), column("round_id"), column("question_id"),
                 column("team_id"), column("text"))
PEOPLE = ""  # the summary row of a round's people
MIXED = "*"  # a comment team's cell: a team only, never a role (bot/pulse/cells.py)


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
    question_ids: tuple[str, ...] = ()  # the questions it asked, in order

    @property
    def label(self) -> str:
        return f"Round {self.number} ({self.opens_at:%d %b %Y})"


Answers = dict[str, int]  # answer (value or choice, as text) -> how many gave it


@dataclass
class RoundData:
    """A closed round's counts: per cell for the engine, per group of cells for the figures."""

    respondents: dict[Cell, int] = field(default_factory=dict)
    invited: dict[Cell, int] = field(default_factory=dict)
    # question id -> per cell, how many answered (commented, for a comment question: per
    # comment team, a team only, never a role)
    answered: dict[str, dict[Cell, int]] = field(default_factory=dict)
    commenters: dict[str, dict[Cell, int]] = field(default_factory=dict)
    # question id -> answers per reporting team (its roles together), per role, of everyone
    teams: dict[str, dict[str | None, Answers]] = field(default_factory=dict)
    roles: dict[str, dict[str, Answers]] = field(default_factory=dict)
    whole: dict[str, Answers] = field(default_factory=dict)
    # The team tree at close (team -> parent); None for a round closed before it was kept.
    parents: dict[str, str | None] | None = None
    # The thresholds at close; None for a round closed before they were kept.
    thresholds: Thresholds | None = None

    @classmethod
    def from_summary(cls, rows: Iterable[tuple[str, str]], kinds: Mapping[str, str]) -> RoundData:
        """From a round's `pulse_summaries` rows (question id, JSON) and the questions' kinds;
        rows of questions not in `kinds` are left out."""
        data = cls()
        parts = {qid: json.loads(text) for qid, text in rows}
        people = parts.pop(PEOPLE, None)
        if people is None:
            return data
        cells: list[Cell] = list(zip(people["teams"], people["roles"], strict=True))
        data.invited = dict(zip(cells, people["invited"], strict=True))
        data.respondents = {c: n for c, n in zip(cells, people["respondents"], strict=True) if n}
        if "parents" in people:
            data.parents = {t: p for t, p in people["parents"]}
        if "min_group" in people:
            data.thresholds = Thresholds(people["min_group"], people["min_comments"])
        for qid, part in parts.items():
            kind = kinds.get(qid)
            if kind is None:
                continue
            if kind == "text":
                data.commenters[qid] = {(t, MIXED): n for t, n in
                                        zip(part["teams"], part["commented"], strict=True) if n}
                continue
            data.answered[qid] = {c: n for c, n in zip(cells, part["answered"], strict=True) if n}
            data.teams[qid] = {t: d for t, d in part["teams"]}
            data.roles[qid] = {r: d for r, d in part["roles"]}
            data.whole[qid] = part["all"]
        return data


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
        return headline(self.favourable, self.enps, self.yes)


def headline(favourable: float | None = None, enps: float | None = None, yes: float | None = None,
             **_: Any) -> float | None:
    """A question's headline number: favourable %, eNPS or yes %."""
    if favourable is not None:
        return round(favourable * 100, 1)
    if enps is not None:
        return enps
    if yes is not None:
        return round(yes * 100, 1)
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


def round_org(today: Org, labels: Mapping[str, str], data: RoundData
              ) -> tuple[Org, dict[str, str]]:
    """The tree a closed round is reported on (kept at its close, else today's), and a label
    for every group (a team gone since is named by its id)."""
    out = dict(labels)
    if data.parents is None:
        return today, out
    for t in data.parents:
        out.setdefault(team_key(t), t)
    return Org(data.parents, today.roles), out


async def org_of_round(s: AsyncSession, round_id: str) -> Org:
    """The tree a closed round's comments are grouped by, the same as its figures."""
    m = SUMMARIES.c
    text = await s.scalar(select(m.counts).where(m.round_id == round_id, m.question_id == PEOPLE))
    today, labels = await load_org(s)
    data = RoundData.from_summary([(PEOPLE, text)], {}) if text else RoundData()
    return round_org(today, labels, data)[0]


async def thresholds(s: AsyncSession) -> Thresholds:
    """The programme's anonymity thresholds (5 and 10 unless it says stricter)."""
    return Thresholds.from_programme(await get_setting(s, "programme"))


async def round_stamp(s: AsyncSession, round_id: str) -> tuple[int, int]:
    """What a round's stored counts amount to (rows, characters): results computed from them
    stay true while this is the same."""
    m = SUMMARIES.c
    n, size = (await s.execute(select(func.count(), func.coalesce(func.sum(func.length(m.counts)), 0))
                               .where(m.round_id == round_id))).one()
    return int(n), int(size)


async def round_data(s: AsyncSession, round_id: str, questions: Sequence[QuestionInfo]) -> RoundData:
    """A closed round's counts: one read of the summary rows kept at close, never the comments."""
    return (await rounds_data(s, [round_id], {q.id: q.kind for q in questions}))[round_id]


async def rounds_data(
    s: AsyncSession, round_ids: Sequence[str], kinds: Mapping[str, str]
) -> dict[str, RoundData]:
    """Several closed rounds' counts in one read, only for the questions in `kinds` (id ->
    kind) and the people."""
    m = SUMMARIES.c
    rows: dict[str, list[tuple[str, str]]] = {r: [] for r in round_ids}
    wanted = [PEOPLE, *kinds]
    for rid, qid, text in await s.execute(select(m.round_id, m.question_id, m.counts).where(
            m.round_id.in_(list(round_ids)), m.question_id.in_(wanted))):
        rows[rid].append((qid, text))
    return {rid: RoundData.from_summary(parts, kinds) for rid, parts in rows.items()}


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
    label = rnd.label  # formatted once, not once per comment (a CSV holds 100,000 of them)
    for team, text in rows:
        if not open_groups:
            break
        if not text or not text.strip():
            continue
        comment = None
        for g in members.get(team, [ALL] if ALL in open_groups else []):
            if g in open_groups:
                comment = comment or Comment(text.strip(), label, rnd.opens_at)
                out[g].append(comment)
                if len(out[g]) >= limit:
                    open_groups.discard(g)
    return out


# --- computing ---------------------------------------------------------------------------------


def _group_answers(org: Org, data: RoundData, qid: str, wanted: Collection[str]) -> dict[str, Answers]:
    """Per group in `wanted`, how many gave each answer: each reporting team's sum added up
    today's tree (one pass, lowest teams first), the roles and the whole as kept."""
    out: dict[str, Answers] = {}
    whole = data.whole.get(qid)
    if whole is not None and ALL in wanted:
        out[ALL] = whole
    for role, d in data.roles.get(qid, {}).items():
        if role_key(role) in wanted:
            out[role_key(role)] = d
    teams = data.teams.get(qid, {})
    up = org.upward()
    if up is None:  # the parents loop: each sum goes to the team and every one above it
        for team, d in teams.items():
            for key in org.team_groups(team):
                if key in wanted:
                    _add(out.setdefault(key, {}), d)
        return out
    below: dict[str, Answers] = {}  # a team's answers with every team under it
    for team, parent in up:
        mine, under = teams.get(team), below.pop(team, None)
        if mine is None and under is None:
            continue
        total = under if under is not None else {}
        if mine is not None:
            _add(total, mine)
        if team_key(team) in wanted:
            out[team_key(team)] = total
        if parent is not None:
            acc = below.get(parent)
            if acc is None:
                below[parent] = dict(total)
            else:
                _add(acc, total)
    return out


def _add(into: Answers, d: Mapping[str, int]) -> None:
    for answer, n in d.items():
        into[answer] = into.get(answer, 0) + n


SCALES = {"likert5": range(1, 6), "enps": range(0, 11), "yesno": range(0, 2)}
KEYS = {kind: tuple(str(v) for v in scale) for kind, scale in SCALES.items()}
YES_NO = {0: "no", 1: "yes"}
LABELS = {kind: tuple(YES_NO[v] if kind == "yesno" else str(v) for v in scale)
          for kind, scale in SCALES.items()}


def question_stats(q: QuestionInfo, dist: Mapping[str, int]) -> dict[str, Any]:
    """n, distribution, mean, favourable share, eNPS and yes share of one group's answers."""
    n = sum(dist.values())
    out: dict[str, Any] = {"n": n}
    if q.kind == "choice":
        order = list(q.options.get("choices") or sorted(dist))
        out["distribution"] = tuple((c, dist.get(c, 0)) for c in order)
        return out
    scale = SCALES[q.kind]
    counts = [dist.get(key, 0) for key in KEYS[q.kind]]
    if sum(counts) != n:  # an answer off the scale (never stored by the pulse): count it too
        return _stats_of_any(q, dist, out)
    out["distribution"] = tuple(zip(LABELS[q.kind], counts, strict=True))
    if not n:
        return out
    if q.kind != "yesno":
        out["mean"] = round(sum(v * c for v, c in zip(scale, counts, strict=True)) / n, 2)
    if q.kind == "likert5":
        out["favourable"] = (counts[3] + counts[4]) / n
    elif q.kind == "enps":
        out["enps"] = round((counts[9] + counts[10] - sum(counts[:7])) * 100 / n, 1)
    else:
        out["yes"] = counts[1] / n
    return out


def _stats_of_any(q: QuestionInfo, dist: Mapping[str, int], out: dict[str, Any]) -> dict[str, Any]:
    n = out["n"]
    values = {int(k): c for k, c in dist.items()}
    labels = YES_NO if q.kind == "yesno" else {}
    out["distribution"] = tuple((labels.get(v, str(v)), values.get(v, 0)) for v in SCALES[q.kind])
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
    *,
    groups: Collection[str] | None = None,
) -> RoundResults:
    """Every group's results for a round (or only `groups`'), with what the anonymity engine
    hides removed. The engine always weighs the whole round, whichever groups are built.

    A round whose thresholds were kept at its close is never shown under lower ones, and under
    higher ones (the programme made stricter since) only groups that the thresholds at close
    showed: every view of the round is then a part of the view at close, so views under two
    thresholds add up to nothing the view at close did not show. (Each view alone is safe; the
    engine may hide different groups under different thresholds, and two such views together
    let a group be subtracted from another down to one person.)"""
    base = data.thresholds
    if base is not None:
        th = Thresholds(max(th.min_group, base.min_group), max(th.min_comments, base.min_comments))
    groups_all = frozenset(org.groups())
    first = disclose(org, data.respondents, base.min_group) if base is not None else None
    people = (first if first is not None and first.k == th.min_group
              else disclose(org, data.respondents, th.min_group,
                            hidden=groups_all - first.visible if first is not None else ()))
    invited = group_counts(org, data.invited)
    hidden = groups_all - people.visible
    keys = org.groups() if groups is None else [g for g in org.groups() if g in groups]
    shown_keys = [g for g in keys if g in people.visible]
    memo: dict[tuple[frozenset[tuple[Cell, int]], int], Disclosure] = {}
    everyone = {c: n for c, n in data.respondents.items() if n > 0}

    def safe(cells: Mapping[Cell, int], k: int, k0: int | None) -> Disclosure:
        # Where a question's answerers per cell are the round's respondents, its groups are
        # exactly the people's (the engine's answer for the same counts with the hidden
        # removed is the same fixed point); otherwise questions with equal counts decide once.
        # `k0`: the threshold at close; what it hid stays hidden under a higher `k`, and under
        # the same `k` when the people view is stricter than at close (min_group raised alone:
        # hiding more groups can make the engine show one the close hid).
        if k == th.min_group and cells == everyone:
            return people
        key = (frozenset(cells.items()), k)
        if key not in memo:
            also: frozenset[str] = frozenset()
            if first is not None and k0 is not None and (k0 < k or people is not first):
                at_close = disclose(org, cells, k0, hidden=groups_all - first.visible)
                also = groups_all - at_close.visible
            memo[key] = disclose(org, cells, k, hidden=hidden | also)
        return memo[key]

    per_q: dict[str, tuple[Disclosure, dict[str, Answers]]] = {}
    for q in questions:
        if q.kind == "text":
            per_q[q.id] = (safe(data.commenters.get(q.id, {}), th.min_comments,
                                base.min_comments if base else None), {})
        else:
            shown = safe(data.answered.get(q.id, {}), th.min_group,
                         base.min_group if base else None)
            per_q[q.id] = (shown, _group_answers(org, data, q.id, shown.visible.intersection(shown_keys)))
    out: dict[str, GroupResult] = {}
    for g in keys:
        label = labels.get(g, g)
        if g not in people.visible:
            out[g] = GroupResult(g, label, shown=False)
            continue
        before = previous.groups.get(g) if previous else None
        qs = tuple(_question(q, g, per_q[q.id], before) for q in questions)
        resp, inv = people.counts[g], invited.get(g, 0)
        rate = resp / inv if inv else None
        rate_change = None
        if rate is not None and before is not None and before.shown and before.rate is not None:
            rate_change = round((rate - before.rate) * 100, 1)
        out[g] = GroupResult(g, label, True, inv, resp, rate, rate_change, qs)
    return RoundResults(rnd, th, out)


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
    prev = _previous_question(before, q.id)
    if prev is not None and prev.score is not None:
        score = headline(**stats)
        if score is not None:
            stats["change"] = round(score - prev.score, 1)
    return QuestionResult(q, True, **stats)


def _previous_question(before: GroupResult | None, qid: str) -> QuestionResult | None:
    if before is None or not before.shown:
        return None
    return next((x for x in before.questions if x.question.id == qid and x.shown), None)


def hidden_text() -> str:
    return NOT_ENOUGH[0].upper() + NOT_ENOUGH[1:]


def visible_groups(results: RoundResults, keys: Iterable[str]) -> list[GroupResult]:
    return [results.groups[k] for k in keys if k in results.groups]
