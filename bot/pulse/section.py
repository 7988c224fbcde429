"""The `pulse_surveys:` section of the programme file."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.programme.schema import Doc
from bot.pulse import definition
from bot.pulse import service as pulse
from bot.pulse.tables import PulseSurvey


class PulseSection:
    """`pulse_surveys:` a list of surveys (questions, audience, schedule, offsets, anonymity)."""

    key = "pulse_surveys"
    order = 20  # after the organisation, whose teams audiences name

    def validate(self, doc: Doc, value: Any) -> None:
        if not isinstance(value, list):
            doc.problem((self.key,), "should be a list of surveys")
            return
        seen: set[str] = set()
        for i, item in enumerate(value):
            d = definition.check(item, doc.problem, teams=doc.teams, path=(self.key, i))
            if d is not None:
                if d.id in seen:
                    doc.problem((self.key, i, "id"), f"survey '{d.id}' appears twice")
                seen.add(d.id)

    async def sync(self, s: AsyncSession, doc: Doc, value: Any) -> None:
        keep: list[str] = []
        for item in value:
            d = definition.check(item, lambda p, m: None, teams=doc.teams)
            assert d is not None  # validated already
            await pulse.store_definition(s, d, source="programme")
            keep.append(d.id)
        # Gone from the file: no more rounds, but past rounds stay for the reports.
        await s.execute(update(PulseSurvey)
                        .where(PulseSurvey.source == "programme", PulseSurvey.id.not_in(keep))
                        .values(active=False))

    async def export(self, s: AsyncSession) -> Any:
        out = []
        for sv in await pulse.surveys(s):
            out.append(definition.to_yaml(sv, await pulse.questions_of(s, sv.id)))
        return out
