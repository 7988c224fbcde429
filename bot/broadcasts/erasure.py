"""The broadcasts feature's rows that name a person, for erasure and subject access
(bot/privacy/personal.py)."""

from __future__ import annotations

from bot.broadcasts.tables import Broadcast, Celebration, Delivery
from bot.privacy.personal import PersonalRows, Rule, register, table_of

ROWS = register(PersonalRows("broadcasts", (
    Rule(table_of(Broadcast), "author_person_id", "person", "blank",
         "broadcasts they authored (the broadcast stays, without its author)"),
    Rule(table_of(Delivery), "person_id", "person", "delete", "broadcasts sent to them"),
    Rule(table_of(Delivery), "recipient", "recipient", "delete", "broadcasts sent to them"),
    Rule(table_of(Celebration), "person_id", "person", "delete", "celebrations they sent"),
)))
