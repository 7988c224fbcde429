"""The pulse feature's rows that name a person, for erasure and subject access
(bot/privacy/personal.py). Anonymous answers, tallies, cells and comments name no one."""

from __future__ import annotations

from bot.privacy.personal import PersonalRows, Rule, register, table_of
from bot.pulse.tables import PulseAttributedAnswer, PulseParticipation

ROWS = register(PersonalRows("pulse", (
    Rule(table_of(PulseParticipation), "person_id", "person", "delete",
         "who was asked in a round still open"),
    Rule(table_of(PulseAttributedAnswer), "person_id", "person", "delete",
         "their answers to attributed (named) surveys"),
)))
