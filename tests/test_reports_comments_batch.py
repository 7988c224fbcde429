"""The export reads each question's comments once for every group, and each group gets exactly
the list it gets when asked for alone (the same comments, the same order)."""

from __future__ import annotations

from datetime import timedelta

from bot.core import Core
from bot.reports import service
from bot.reports.results import comments_by_group, comments_for, load_org
from tests.conftest import MONDAY_10
from tests.test_reports_seed import emails, everyone_answers, seed_round


async def test_comments_read_for_all_groups_at_once_match_each_group_alone(loaded: Core) -> None:
    everyone = await emails(loaded)
    rid = await seed_round(loaded, MONDAY_10 - timedelta(days=7),
                           everyone_answers(everyone, comments=len(everyone)))
    async with loaded.db.session() as s:
        info = await service.round_info(s, rid)
        assert info is not None
        org, _ = await load_org(s)
        qid = next(q.id for q in await service.questions(s, rid) if q.kind == "text")
        groups = ["all", "team:childrens-services", "team:assessment", "team:front-door", "role:practitioner"]
        for limit in (3, 10_000):
            batch = await comments_by_group(s, org, info, qid, groups, limit=limit)
            for g in groups:
                alone = await comments_for(s, org, info, qid, g, limit=limit)
                assert [c.text for c in batch[g]] == [c.text for c in alone], (g, limit)
        assert len(batch["all"]) == len(everyone) and batch["role:practitioner"] == []
