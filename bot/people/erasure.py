"""The people feature's rows that name a person, for erasure and subject access
(bot/privacy/personal.py). Erased last: every other part's rows refer to the person."""

from __future__ import annotations

from bot.people.tables import Identity, Person, PersonRole, Team
from bot.privacy.personal import PersonalRows, Rule, register, table_of

ROWS = register(PersonalRows("people", (
    Rule(table_of(PersonRole), "person_id", "person", "delete", "their roles"),
    Rule(table_of(Team), "lead_person_id", "person", "blank", "teams they lead"),
    Rule(table_of(Identity), "person_id", "person", "delete", "their Slack and Teams accounts"),
    Rule(table_of(Person), "id", "person", "delete",
         "their profile: name, email, team, time zone"),
)))
