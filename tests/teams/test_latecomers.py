"""Teams: someone who had not installed the app when a round opened is asked once they do."""

from __future__ import annotations

from datetime import timedelta

from bot.core import Core
from tests.conformance.drivers.teams import TEAM_ID, TeamsDriver

P9 = "practitioner9@northbridge.example"


async def test_a_person_who_installs_after_the_round_opened_gets_that_round(
        teams: TeamsDriver, loaded: Core) -> None:
    st = teams.fake.state
    user = teams.fake.user_by_email(P9)
    st.team_members[TEAM_ID].remove(user.id)  # not in the council's team, no personal install
    await loaded.tick()  # the round opens: Teams answers 403 for them, so they are unreachable
    assert not any("question 1 of 7" in m for m in teams.seen(P9))
    assert any("question 1 of 7" in m for m in teams.seen("practitioner1@northbridge.example"))
    await teams.say(P9, "help")  # they install the app and write to it: first contact
    loaded.clock.advance(timedelta(minutes=5))  # type: ignore[attr-defined]
    await loaded.tick()
    asked = [m for m in teams.seen(P9) if "question 1 of 7" in m]
    assert len(asked) == 1
    await loaded.tick()
    assert len([m for m in teams.seen(P9) if "question 1 of 7" in m]) == 1  # once
