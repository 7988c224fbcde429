"""The milestones feature's rows that name a person, for erasure and subject access
(bot/privacy/personal.py)."""

from __future__ import annotations

from bot.milestones.tables import Milestone, MilestoneCheckin, MilestoneOwner, MilestoneUpdate
from bot.privacy.personal import PersonalRows, Rule, register, table_of

ROWS = register(PersonalRows("milestones", (
    Rule(table_of(MilestoneOwner), "person_id", "person", "delete", "milestones they own"),
    Rule(table_of(MilestoneCheckin), "person_id", "person", "delete",
         "check-in prompts sent to them"),
    Rule(table_of(MilestoneUpdate), "person_id", "person", "blank",
         "updates they wrote (the update stays, without their name)"),
    Rule(table_of(Milestone), "offer_to", "list", "drop", "early-win offers waiting for them"),
    Rule(table_of(Milestone), "stale_tell", "list", "drop",
         "stale-milestone notices waiting for them"),
)))
