"""The feedback feature's rows that name a person, for erasure and subject access
(bot/privacy/personal.py). Items, their threads and sealed reply routes name no one, so they
are not here: destroying a route on erasure would show which items lost "replies possible"."""

from __future__ import annotations

from bot.feedback.tables import FeedbackAlert, FeedbackMessage, FeedbackResponse
from bot.privacy.personal import PersonalRows, Rule, register, table_of

ROWS = register(PersonalRows("feedback", (
    Rule(table_of(FeedbackAlert), "person_id", "person", "delete",
         "urgent feedback alerts addressed to them as a safeguarding lead"),
    Rule(table_of(FeedbackMessage), "team_person_id", "person", "blank",
         "replies they wrote for the change team (the reply stays, without their name)"),
    Rule(table_of(FeedbackResponse), "published_by", "person", "blank",
         "\u201cyou said, we did\u201d they published (it stays, without their name)"),
)))
