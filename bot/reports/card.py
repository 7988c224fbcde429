"""How a group's results look in chat: one card with numbers, comments and a trend chart."""

from __future__ import annotations

from bot.model import Block, Context, Fields, Image, Message, Text
from bot.reports import chart
from bot.reports.anonymity import Comment
from bot.reports.results import GroupResult, QuestionResult, RoundResults, hidden_text

MAX_COMMENTS = 5


def pct(share: float) -> str:
    return f"{round(share * 100)}%"


def signed(points: float, unit: str = " pts") -> str:
    if points == 0:
        return "no change"
    return f"{'+' if points > 0 else '-'}{abs(points):g}{unit}"


def responses_line(g: GroupResult) -> str:
    """'12 of 20 asked (60%, +5 pts on last round)'."""
    if g.rate is None:
        return f"{g.respondents}"
    change = f", {signed(g.rate_change)} on last round" if g.rate_change is not None else ""
    return f"{g.respondents} of {g.invited} asked ({pct(g.rate)}{change})"


def question_line(q: QuestionResult) -> str:
    """One question's numbers in a line (or why they are not shown)."""
    if q.question.kind == "text":
        return "comments below" if q.comments_shown else "comments are shown from 10 answers"
    if not q.shown:
        return hidden_text()
    change = f" ({signed(q.change)})" if q.change is not None else ""
    dist = " · ".join(f"{label}: {n}" for label, n in q.distribution)
    if q.favourable is not None:
        head = f"{pct(q.favourable)} favourable{change} · average {q.mean:g} of 5"
    elif q.enps is not None:
        head = f"eNPS {q.enps:+g}{change} · average {q.mean:g} of 10"
    elif q.yes is not None:
        head = f"{pct(q.yes)} yes{change}"
    else:
        head = f"{q.n} answers"
    return f"{head} · {dist}" if dist else head


def group_card(
    results: RoundResults, g: GroupResult, *, comments: dict[str, list[Comment]] | None = None,
    trend: chart.Trend | None = None, others: list[str] | None = None,
) -> Message:
    """The card for one group of one round."""
    r = results.round
    blocks: list[Block] = [
        Text(f"Pulse results: {r.survey_title}, {r.label}", heading=True),
        Text(g.label),
    ]
    if not g.shown:
        blocks.append(Text(hidden_text() + "."))
    else:
        pairs = [("Responses", responses_line(g))]
        pairs += [(q.question.text, question_line(q)) for q in g.questions]
        blocks.append(Fields(tuple(pairs)))
        for q in g.questions:
            shown = (comments or {}).get(q.question.id) or []
            if q.comments_shown and shown:
                blocks.append(Text(f"Comments on \u201c{q.question.text}\u201d (in random order):"))
                blocks.extend(Text(f"\u201c{c.text}\u201d \u2014 {c.round_label}")
                              for c in shown[:MAX_COMMENTS])
        if trend is not None and len(trend.points) > 1:
            blocks.append(Image(alt=chart.describe(trend), png=chart.render_png(trend),
                                title=trend.title))
    th = results.thresholds
    small = (f"Results show only for groups of {th.min_group} or more people who answered, and "
             f"comments from {th.min_comments}; some groups are hidden so nobody can be worked out.")
    if others:
        small += " Also: " + ", ".join(others) + "."
    blocks.append(Context(small))
    text = f"Pulse results for {g.label}, {r.label}"
    return Message(tuple(blocks), fallback=text)
