"""What a pulse looks like in chat: one question at a time, in one message edited in place.

Buttons carry the round and the question's position, never a person: the message itself is
the respondent's place in the survey, so nothing about progress is stored next to a name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.model import (
    Block,
    Choice,
    Choices,
    Context,
    LinkButton,
    Message,
    RatingScale,
    Text,
)
from bot.pulse.tables import PulseQuestion, PulseRound, PulseSurvey

ANSWER = "pulse.a."  # pulse.a.<round>.<position>, value = the answer
NAV = "pulse.n."  # pulse.n.<round>.<position>, value = prev | skip | later | go | text
FORM = "pulse.f."  # pulse.f.<round>.<position>: the free-text comment form

CLOSED = ("This round has closed, so that answer was not saved. Thank you all the same: "
          "the next round will come to you here.")


@dataclass(frozen=True)
class Where:
    """Everything a card needs about the round the person is answering."""

    survey: PulseSurvey
    round: PulseRound
    questions: list[PulseQuestion]

    @property
    def total(self) -> int:
        return len(self.questions)

    def closes(self) -> str:
        return when(self.round.closes_at, self.survey.timezone)


def when(t: datetime, tz: str) -> str:
    """'Fri 4 Dec, 17:00' in the survey's time zone."""
    local = t.astimezone(ZoneInfo(tz))
    return f"{local:%a} {local.day} {local:%b}, {local:%H:%M}"


def privacy_note(w: Where) -> str:
    if w.round.anonymity == "attributed":
        return (f"This survey is NOT anonymous: your name is kept with your answers. "
                f"Open until {w.closes()}.")
    return (f"Anonymous: your answers are stored without your name. "
            f"You can change them until {w.closes()}.")


def question_card(w: Where, pos: int, *, answered: bool = False, lead: str = "",
                  saved: str = "") -> Message:
    """The question at `pos` with one-tap answers, skip, back and later.

    No version of the card says what the person answered: the platform keeps every version
    of an edited message in their DM, by name (docs/invariants.md, N19)."""
    q = w.questions[pos]
    rid = w.round.id
    blocks: list[Block] = []
    if lead:
        blocks.append(Text(lead))
    if saved:
        blocks.append(Context(saved))
    blocks.append(Text(f"{w.survey.title}: question {pos + 1} of {w.total}", heading=True))
    blocks.append(Text(q.text))
    blocks.extend(_answer_block(q, f"{ANSWER}{rid}.{pos}"))
    nav = [Choice("Skip", "skip")]
    if pos > 0:
        nav.insert(0, Choice("Previous", "prev"))
    nav.append(Choice("Finish later", "later"))
    blocks.append(Choices(f"{NAV}{rid}.{pos}", tuple(nav)))
    if answered:
        blocks.append(Context("You have answered this question. Tap an answer to change it."))
    blocks.append(Context(privacy_note(w)))
    fallback = f"{w.survey.title}, question {pos + 1} of {w.total}: {q.text}"
    return Message(tuple(blocks), fallback=fallback)


def _answer_block(q: PulseQuestion, action_id: str) -> list[Block]:
    if q.kind == "likert5":
        return [RatingScale(action_id, 1, 5, q.options.get("low", ""), q.options.get("high", ""))]
    if q.kind == "enps":
        return [RatingScale(action_id, 0, 10, q.options.get("low", ""), q.options.get("high", ""))]
    if q.kind == "yesno":
        return [Choices(action_id, (Choice("Yes", "1"), Choice("No", "0")))]
    if q.kind == "choice":
        opts = q.options.get("choices", [])
        return [Choices(action_id, tuple(Choice(c, str(i)) for i, c in enumerate(opts)))]
    # Free text needs a form: one tap opens it.
    # Opens the comment form where the platform can from the button itself (a Teams dialog):
    # a card posted in the chat to open it would say by name that they wrote one (N19).
    return [Choices(action_id.replace(ANSWER, NAV, 1),
                    (Choice("Write a comment", "text", style="primary"),), opens_form=True)]


def thanks_card(w: Where, *, results: str, results_url: str | None, skipped: int,
                saved: str = "") -> Message:
    """The end of the survey: thanks, where results are, and how to change answers."""
    blocks: list[Block] = []
    if saved:
        blocks.append(Context(saved))
    blocks += [Text("Thank you!", heading=True),
               Text(f"Your answers to {w.survey.title} are in. You can change them until "
                    f"{w.closes()}.")]
    if skipped:
        blocks.append(Text(f"You skipped {skipped} question{'s' if skipped > 1 else ''}; "
                           "tap Change my answers to go back to them."))
    blocks.append(Text(results))
    if results_url:
        blocks.append(LinkButton("See the latest results", results_url))
    blocks.append(Choices(f"{NAV}{w.round.id}.0", (Choice("Change my answers", "go"),)))
    return Message(tuple(blocks), fallback=f"Thank you! Your answers to {w.survey.title} are in.")


def later_card(w: Where, pos: int) -> Message:
    text = (f"No problem: what you have answered so far is saved. Tap Continue when you have a "
            f"minute; {w.survey.title} is open until {w.closes()}.")
    return Message((Text(text), Choices(f"{NAV}{w.round.id}.{pos}", (Choice("Continue", "go"),))),
                   fallback=text)


def resume_at(questions: list[PulseQuestion], answered: set[str] | frozenset[str]) -> int:
    """Where a reminder carries the survey on: the first question not answered, counting
    back over the comment questions just before it (or at the end), so the place never
    depends on whether a comment was written (a comment question has an answer only then).

    The reminder stays in the person's chat by name: taken as the first question with no
    stored answer, it went past a comment question for its writer alone (N19, N44)."""
    pos = next((i for i, q in enumerate(questions)
                if q.kind != "text" and q.id not in answered), len(questions))
    while pos > 0 and questions[pos - 1].kind == "text":
        pos -= 1
    return 0 if pos == len(questions) else pos


def reminder_lead(w: Where) -> str:
    return (f"A gentle reminder: {w.survey.title} closes {w.closes()}. "
            "It takes about a minute, and you can pick up where you left off.")


def moved_card(w: Where) -> Message:
    """The old survey message, once a reminder carries the survey on."""
    return Message((Context(f"{w.survey.title} continues in a newer message below."),),
                   fallback=f"{w.survey.title} continues in a newer message below.")


def closed_card() -> Message:
    return Message((Text(CLOSED),), fallback=CLOSED)
