"""A motivated intruder against a round in which someone was erased before it closed.

Erasure (a subject's request, or a leaver's grace period running out) deletes the person's
participation in open rounds. The round's reporting cells were fixed when it opened, each with
k or more people asked; if the closing round counted each cell from the participation that is
left, a cell of exactly k would be stored with k-1 people asked and their answers, below the
threshold, and the intruder (the organisation chart, and the trail's "people.erase") knows
exactly who those k-1 are. CI runs this folder on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import timedelta

from bot.core import Core
from bot.people.service import person_by_email
from bot.privacy import erasure
from tests.conformance.drivers.fake import FakeDriver
from tests.conftest import MONDAY_10
from tests.test_feedback_helpers import dump

K = 5
# Front Door (MASH) in the example programme: its manager, three duty social workers and an
# emergency duty worker (asked at 17:00, so not yet invited when the others answer).
FRONT_DOOR = ["lead.frontdoor@northbridge.example",
              *(f"practitioner{i}@northbridge.example" for i in (11, 12, 13)),
              "nightduty@northbridge.example"]
ANSWERS = ("1", "1", "1", "1", "1", "0", "Skip")  # the same answers from everyone in the team


async def test_an_erasure_before_the_close_leaves_no_cell_below_k(loaded: Core) -> None:
    """Attack: one of a team of five is erased while the round is open; read the cells.

    Before: the close counted the four who were left as the team's own cell (`pulse_cells`
    invited 4, respondents 4) with their answers in `pulse_tallies` and `pulse_summaries`:
    four known people's answers, below k, and here all the same, so each one's answer.
    """
    d = FakeDriver(loaded)
    await loaded.tick()  # the round opens and everyone is invited
    tables = await dump(loaded.db)
    team_of = {p["email"]: p["team_id"] for p in tables["people"]}
    front = sorted(e for e, t in team_of.items() if t == "front-door")
    assert front == sorted(FRONT_DOOR), front
    cells = {(p["cell_team"], p["cell_role"]) for p in tables["pulse_participation"]}
    assert ("front-door", "*") in cells  # a team of exactly k reports on its own
    for who in FRONT_DOOR[:4]:
        for label in ANSWERS:
            await d.tap(who, label)
    async with loaded.db.session() as s:  # the fifth leaves and is erased, unanswered
        person = await person_by_email(s, FRONT_DOOR[4])
        assert person is not None
        await erasure.erase(s, person)
        await s.commit()
    loaded.clock.set(MONDAY_10 + timedelta(days=5))  # type: ignore[attr-defined]
    await loaded.tick()  # Friday 17:00 has passed: the round closes
    tables = await dump(loaded.db)
    assert tables["pulse_rounds"][0]["state"] == "closed"
    assert tables["pulse_rounds"][0]["n_respondents"] == 4
    sizes = {(c["team_id"], c["role"]): c["invited"] for c in tables["pulse_cells"]}
    assert all(n >= K for n in sizes.values()), sizes
    assert "front-door" not in {t for t, _r in sizes}, sizes
    for row in tables["pulse_tallies"]:
        if row["value"] is None and row["choice"] is None:
            continue  # how many commented, under a comment team (ten or more asked)
        assert sizes[(row["team_id"], row["role"])] >= K, row
    for row in tables["pulse_summaries"]:  # the sums reports read: no Front Door of its own
        part = json.loads(row["counts"])
        named = [t if isinstance(t, str) or t is None else t[0] for t in part.get("teams", [])]
        assert "front-door" not in named, row
    # The four answers are still counted, in a cell of k or more.
    ones = sum(r["n"] for r in tables["pulse_tallies"] if r["value"] == 1)
    assert ones == 4 * 5


async def test_an_erasure_mid_round_leaves_no_row_that_says_they_were_asked_or_answered(
        loaded: Core) -> None:
    """Guard (found holding, 2026-12-07): a duty social worker answers, then is erased while
    the round is open. Their participation and their invitation's row in the delivery ledger
    (who was asked, when it went) named them; after the erasure no row of any table holds
    their id, email, platform account or DM (their sealed answers stay, keyed under the
    round's secret, and go at the close: N13)."""
    from tests.test_design_invariants import rows_naming
    from tests.test_feedback_helpers import identity_strings

    d = FakeDriver(loaded)
    await loaded.tick()  # the round opens and everyone is invited
    for label in ANSWERS:
        await d.tap(FRONT_DOOR[1], label)
    who = await identity_strings(loaded.db, FRONT_DOOR[1])
    before = await rows_naming(loaded, who)
    assert {"pulse_participation", "broadcast_deliveries", "people"} <= set(before), set(before)
    async with loaded.db.session() as s:
        person = await person_by_email(s, FRONT_DOOR[1])
        assert person is not None
        await erasure.erase(s, person)
        await s.commit()
    assert await rows_naming(loaded, who) == {}
