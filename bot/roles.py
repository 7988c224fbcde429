"""Roles and what they are called in chat."""

from __future__ import annotations

PRACTITIONER = "practitioner"
TEAM_LEAD = "team_lead"
CHANGE_TEAM = "change_team"
SAFEGUARDING_LEAD = "safeguarding_lead"
LEADER = "leader"

ALL_ROLES = (PRACTITIONER, TEAM_LEAD, CHANGE_TEAM, SAFEGUARDING_LEAD, LEADER)

LABELS = {
    PRACTITIONER: "practitioners",
    TEAM_LEAD: "team leads",
    CHANGE_TEAM: "the change team",
    SAFEGUARDING_LEAD: "safeguarding leads",
    LEADER: "leaders",
}


def describe(roles: frozenset[str]) -> str:
    """'the change team or leaders' for a refusal message."""
    names = [LABELS[r] for r in ALL_ROLES if r in roles]
    if len(names) <= 1:
        return names[0] if names else "nobody"
    return ", ".join(names[:-1]) + " or " + names[-1]
