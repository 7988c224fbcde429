"""Test data for reports, written straight into the agreed pulse tables (no tests here).

Rows are shaped as agreed with the pulse feature: answers carry a keyed response hash, the
team at answer time and the main role, never a person id or a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import select

from bot.core import Core
from bot.people.service import person_by_email, roles_of
from bot.people.tables import Person
from bot.pulse import service as pulse
from bot.pulse.tables import PulseAnswer, PulseParticipation, PulseRound
from bot.reports.results import ROLE_ORDER
from bot.secrets import keyed_hash

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
    async with core.db.session() as s:
        qs = {q.key: q for q in await pulse.questions_of(s, survey)}
        number = len(await pulse.rounds_of(s, survey)) + 1
        rnd = PulseRound(survey_id=survey, number=number, opens_at=opens_at,
                         remind_at=opens_at + timedelta(days=2),
                         closes_at=opens_at + timedelta(days=4),
                         state="closed" if close else "open",
                         question_ids=[q.id for q in qs.values()])
        s.add(rnd)
        await s.flush()
        for person in (await s.execute(select(Person))).scalars():
            s.add(PulseParticipation(round_id=rnd.id, person_id=person.id, team_id=person.team_id,
                                     finished=person.email in answers))
        for email, given in answers.items():
            person = await person_by_email(s, email)
            assert person is not None, email
            role = main_role(await roles_of(s, person.id))
            key = keyed_hash(core.secret, "pulse", rnd.id, person.id)
            for qkey, v in given.items():
                q = qs[qkey]
                s.add(PulseAnswer(round_id=rnd.id, question_id=q.id, response_key=key,
                                  team_id=person.team_id, role=role,
                                  text=v if q.kind == "text" else None,
                                  value=v if q.kind != "text" else None))
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
