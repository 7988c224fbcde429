"""Test data for reports: rounds answered through the pulse feature's own storage (no tests here).

Answers are stored as the tap path stores them (sealed under the round's secret, by response
key), and a closed round is closed by the pulse feature itself, so reports read exactly what a
real round keeps: counts per reporting cell and comments under a team with enough people.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import select

from bot.core import Core
from bot.people.service import person_by_email
from bot.people.tables import Person
from bot.pulse import cells
from bot.pulse import service as pulse
from bot.pulse.tables import PulseParticipation, PulseRound, PulseRoundKey
from bot.reports.results import ROLE_ORDER
from bot.secrets import derive, seal_bytes

SURVEY = "weekly-pulse"


def main_role(roles: frozenset[str]) -> str:
    return next(r for r in ROLE_ORDER if r in roles or r == "practitioner")


async def seed_round(
    core: Core,
    opens_at: datetime,
    answers: Mapping[str, Mapping[str, int | str]],
    *,
    survey: str = SURVEY,
    close: bool = True,
) -> str:
    """A round of `survey` where everyone is asked and `answers[email][question key]` answered."""
    secret = b"r" * 32
    async with core.db.session() as s:
        qs = {q.key: q for q in await pulse.questions_of(s, survey)}
        number = len(await pulse.rounds_of(s, survey)) + 1
        rnd = PulseRound(survey_id=survey, number=number, opens_at=opens_at,
                         remind_at=opens_at + timedelta(days=2),
                         closes_at=opens_at + timedelta(days=4), state="open",
                         question_ids=[q.id for q in qs.values()])
        s.add(rnd)
        await s.flush()
        s.add(PulseRoundKey(round_id=rnd.id, sealed=seal_bytes(
            derive(core.secret, pulse.ROUND_KEY_LABEL), rnd.id, secret)))
        everyone = list((await s.execute(select(Person))).scalars())
        roles = await pulse.main_roles(s, [p.id for p in everyone])
        where = cells.assign(((p.id, p.team_id, roles[p.id]) for p in everyone),
                             await pulse.team_parents(s), (await pulse.thresholds(s)).min_group)
        for person in everyone:
            t, r = where[person.id]
            s.add(PulseParticipation(round_id=rnd.id, person_id=person.id, team_id=person.team_id,
                                     cell_team=t, cell_role=r))
        await s.flush()
        for email, given in answers.items():
            person = await person_by_email(s, email)
            assert person is not None, email
            key = pulse.response_key(secret, person.id)
            for qkey, v in given.items():
                q = qs[qkey]
                await pulse.save_answer(s, rnd=rnd, question_id=q.id, key=key,
                                        round_secret=secret,
                                        text=v if q.kind == "text" else None,  # type: ignore[arg-type]
                                        value=v if q.kind != "text" else None)  # type: ignore[arg-type]
            await pulse.mark_completed(s, rnd.id, key)
        if close:
            await pulse.close_round(s, rnd, rnd.closes_at, core.secret)
        return rnd.id


async def emails(core: Core) -> list[str]:
    async with core.db.session() as s:
        return sorted(p.email for p in (await s.execute(select(Person))).scalars() if p.email)


def everyone_answers(people: list[str], listened: Mapping[str, int] | None = None,
                     default: int = 4, enps: int = 8,
                     comments: int = 0) -> dict[str, dict[str, int | str]]:
    """Answers for `people`: 'listened-to' per person (else default), eNPS, some comments."""
    out: dict[str, dict[str, int | str]] = {}
    for i, e in enumerate(people):
        out[e] = {"listened-to": (listened or {}).get(e, default), "shared-vision": 4,
                  "enps": enps}
        if i < comments:
            out[e]["comment"] = f"Comment number {i} about the change"
    return out
