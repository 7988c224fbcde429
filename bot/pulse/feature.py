"""Pulse surveys: scheduled one-tap questions in DMs, reminders, closing, one answer each."""

from __future__ import annotations

from bot.pulse import answers, cards, commands, rounds
from bot.pulse.section import PulseSection
from bot.roles import CHANGE_TEAM
from bot.router import Router
from bot.scheduling.jobs import with_next_due


def register(r: Router) -> None:
    r.sections.append(PulseSection())
    r.ticker(rounds.JOB, with_next_due(rounds.tick, rounds.next_due))
    r.action(cards.ANSWER, answers.on_answer, joins=True)  # one commit per tap
    r.action(cards.NAV, answers.on_nav)
    r.form(cards.FORM, answers.on_comment)
    r.form(commands.DEFINE_FORM, commands.on_define, roles={CHANGE_TEAM})
    ct = {CHANGE_TEAM}
    r.command("pulse", commands.list_surveys, "pulse surveys and response rates",
              usage="[SURVEY]", roles=ct)
    r.command("pulse open", commands.open_now, "open a round of a survey now", usage="SURVEY",
              roles=ct)
    r.command("pulse close", commands.close_now, "close a survey's open round early",
              usage="SURVEY", roles=ct)
    r.command("pulse pause", commands.pause, "pause a survey", usage="SURVEY", roles=ct)
    r.command("pulse resume", commands.resume, "resume a paused survey", usage="SURVEY", roles=ct)
    r.command("pulse new", commands.new_survey, "define a new pulse survey", roles=ct)
