"""A motivated intruder who reads a closed round's results before and after a reorganisation.

Each version of the team tree is checked by the anonymity engine on its own; the intruder holds
both. When a small team moves under another after the round closed, a group shown before and
after (its new parent) differs by exactly the small team's respondents, so subtracting one
version's figures from the other's reads the answers of fewer than k people. CI runs this
folder on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta

from bot.core import Core
from bot.programme import loader
from bot.reports import service
from bot.reports.results import RoundResults
from tests.conftest import EXAMPLE, MONDAY_10
from tests.test_reports_seed import emails, everyone_answers, seed_round

K = 5
FRONT_DOOR = ("lead.frontdoor@northbridge.example", "practitioner11@northbridge.example")


async def _results(core: Core, rid: str) -> RoundResults:
    async with core.db.session() as s:
        info = await service.round_info(s, rid)
        assert info is not None
        return await service.round_results(s, info)


def _figures(r: RoundResults) -> dict[tuple[str, str], tuple[int, dict[str, int]]]:
    """(group, question) -> (how many answered, distribution): every figure a viewer sees."""
    return {(g.key, q.question.id): (q.n, dict(q.distribution))
            for g in r.groups.values() if g.shown for q in g.questions if q.shown and q.distribution}


async def test_moving_a_small_team_after_the_close_reveals_nothing_by_subtraction(
        loaded: Core) -> None:
    """Attack: read "results assessment team" (and every group) before and after Front Door
    moves under Assessment; subtract.

    Before: reports added the per-team sums up today's tree, so Assessment read 6 answers before
    the move and 8 after; the difference was the two Front Door answers (both "1"), which the
    round had hidden as a group under k.
    """
    people = await emails(loaded)
    front = [e for e in people if e in FRONT_DOOR]
    answers = everyone_answers([e for e in people if e not in FRONT_DOOR
                                and not e.startswith(("nightduty", "practitioner12",
                                                      "practitioner13"))], default=5)
    for e in front:  # two of Front Door's five answer, and the round hides Front Door
        answers[e] = {"listened-to": 1, "shared-vision": 4, "enps": 8}
    rid = await seed_round(loaded, MONDAY_10 - timedelta(days=7), answers)
    before = await _results(loaded, rid)
    assert not before.groups["team:front-door"].shown
    assert before.groups["team:assessment"].shown
    # The reorganisation: Front Door becomes part of Assessment (a programme file reload).
    text = EXAMPLE.read_text()
    old = "{id: front-door, name: Front Door (MASH), parent: childrens-services,"
    assert old in text
    await loader.load(loaded.db, text.replace(old, "{id: front-door, name: Front Door (MASH), "
                                                   "parent: assessment,"), loaded.router)
    after = await _results(loaded, rid)
    a, b = _figures(before), _figures(after)
    for key in a.keys() & b.keys():
        (n1, d1), (n2, d2) = a[key], b[key]
        diff = {v: d2.get(v, 0) - d1.get(v, 0) for v in d1.keys() | d2.keys()}
        gap = abs(n2 - n1)
        assert not 0 < gap < K, (key, "differs by", gap, "answers:", {v: x for v, x in diff.items() if x})
    for key, g in before.groups.items():
        other = after.groups.get(key)
        if g.shown and other is not None and other.shown:
            assert not 0 < abs(other.respondents - g.respondents) < K, key
