"""A closed round's results are computed once per process, and afresh whenever what they were
computed from changes: a team renamed, a stricter threshold, counts removed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, update

from bot.core import Core
from bot.people.tables import Team
from bot.programme.core_sections import get_setting, set_setting
from bot.pulse.tables import PulseSummary
from bot.reports import results as res
from bot.reports import service
from tests.conftest import MONDAY_10
from tests.test_reports_seed import emails, everyone_answers, seed_round


async def _results(core: Core, rid: str) -> res.RoundResults:
    async with core.db.session() as s:
        info = await service.round_info(s, rid)
        assert info is not None
        return await service.round_results(s, info)


async def _change(core: Core, statement: Any) -> None:
    async with core.db.session() as s:
        await s.execute(statement)


async def test_cached_results_follow_the_organisation_thresholds_and_counts(loaded: Core) -> None:
    rid = await seed_round(loaded, MONDAY_10 - timedelta(days=7), everyone_answers(await emails(loaded)))
    first = await _results(loaded, rid)
    assert await _results(loaded, rid) is first  # the same round, nothing changed: not recomputed
    assert first.groups["team:assessment"].shown
    await _change(loaded, update(Team).where(Team.id == "assessment").values(name="Assessment and Intervention"))
    assert (await _results(loaded, rid)).groups["team:assessment"].label == "Assessment and Intervention"
    async with loaded.db.session() as s:
        prog = await get_setting(s, "programme")
        await set_setting(s, "programme", {**prog, "anonymity": {"min_group": 7, "min_comments": 10}})
    assert not (await _results(loaded, rid)).groups["team:assessment"].shown  # 6 answered: under 7
    # What reports read of a closed round: its summary rows (bot/pulse/summary.py).
    await _change(loaded, delete(PulseSummary).where(PulseSummary.round_id == rid))
    assert not (await _results(loaded, rid)).groups["all"].shown
