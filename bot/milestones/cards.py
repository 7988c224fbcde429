"""How milestones look in chat: status cards, lists, check-in prompts and confirmations."""

from __future__ import annotations

from datetime import date, datetime

from bot.milestones.service import AnyMilestone, View, is_overdue
from bot.milestones.status import (
    EMOJI,
    LABELS,
    STALE_EMOJI,
    STATUSES,
    age,
    due_words,
)
from bot.milestones.tables import Milestone
from bot.model import (
    Block,
    Choice,
    Choices,
    Context,
    Fields,
    Form,
    Input,
    Message,
    NumberInput,
    SelectInput,
    Text,
    TextInput,
)

CHECKIN_ACTION = "ms:checkin"  # value: "<milestone id>|<status>"
PICK_ACTION = "ms:show"  # value: milestone id
DRAFT_ACTION = "ms:draft"  # value: milestone id
UPDATE_FORM = "ms:update"  # metadata: milestone id
NEW_FORM = "ms:new"
EDIT_FORM = "ms:edit"  # metadata: milestone id


def badge(m: AnyMilestone) -> str:
    """'🟢 On track' (with a stale mark when check-ins went unanswered)."""
    text = f"{EMOJI.get(m.status, '')} {LABELS.get(m.status, m.status)}"
    return text + (f" · {STALE_EMOJI} stale" if m.stale_since and m.status != "done" else "")


def names(v: View) -> str:
    return ", ".join(p.display_name or p.email or "?" for p in v.owners) or "nobody"


def last_words(v: View, now: datetime) -> str:
    if v.last is None:
        return "none yet"
    who = (v.last_by.display_name or v.last_by.email) if v.last_by else "the programme file"
    note = f": “{v.last.note}”" if v.last.note else ""
    return f"{v.last.at:%d %b %Y} ({age(v.last.at, now)}) by {who}{note}"


def card(v: View, now: datetime, today: date) -> Message:
    """One milestone: status, progress, owner, team, due date, last update and its age."""
    m = v.m
    pairs = [
        ("Status", badge(m)),
        ("Progress", f"{m.progress}%"),
        ("Owner", names(v)),
        ("Team", v.team.name if v.team else "-"),
        ("Due", due_words(m.due, today)),
        ("Last update", last_words(v, now)),
    ]
    blocks: list[Block] = [Text(f"{EMOJI.get(m.status, '')} {m.title}", heading=True), Fields(tuple(pairs))]
    if m.description:
        blocks.append(Context(m.description))
    blocks.append(Context(f"id: {m.id}"))
    fallback = (
        f"{m.title}: {badge(m)}, {m.progress}%, owner {names(v)}, due {due_words(m.due, today)}, "
        f"last update {last_words(v, now)}"
    )
    return Message(tuple(blocks), fallback=fallback)


def line(v: View, now: datetime, today: date) -> str:
    """One milestone in a list."""
    m = v.m
    late = " — overdue" if is_overdue(m, today) else ""
    upd = f"updated {age(v.last.at, now)}" if v.last else "no update yet"
    return (f"{badge(m)} · {m.title} ({m.id}) · {m.progress}% · {names(v)} · "
            f"due {m.due:%d %b %Y}{late} · {upd}")


def listing(title: str, vs: list[View], now: datetime, today: date, empty: str) -> Message:
    """A titled list of milestones, or `empty` when there are none."""
    if not vs:
        return Message((Text(empty),), fallback=empty)
    lines = [line(v, now, today) for v in vs]
    body = "\n".join(f"• {x}" for x in lines)
    return Message(
        (Text(title, heading=True), Text(body),
         Context("Ask “status <milestone>” for one milestone in full.")),
        fallback=f"{title}\n{body}",
    )


def overview(counts: dict[str, int], vs: list[View], now: datetime, today: date) -> Message:
    """`status` with no name: counts by status, then every milestone."""
    summary = " · ".join(f"{EMOJI[s]} {LABELS[s]}: {counts.get(s, 0)}" for s in STATUSES)
    extra = f"Overdue: {counts.get('overdue', 0)} · Stale: {counts.get('stale', 0)}"
    lines = "\n".join(f"• {line(v, now, today)}" for v in vs) or "No milestones yet."
    return Message(
        (Text("Roadmap status", heading=True), Text(summary), Text(extra), Text(lines),
         Context("Ask “status <milestone>”, “what's at risk?”, “overdue”, “my milestones” "
                 "or “milestones for <team>”.")),
        fallback=f"Roadmap status\n{summary}\n{extra}\n{lines}",
    )


def which_one(query: str, ms: list[Milestone]) -> Message:
    text = f"“{query}” matches {len(ms)} milestones. Which one?"
    return Message(
        (Text(text), Choices(PICK_ACTION, tuple(Choice(m.title, m.id) for m in ms[:8]))),
        fallback=text,
    )


def not_found(query: str, closest: Milestone | None) -> Message:
    if closest is None:
        text = f"I couldn't find a milestone matching “{query}”. Type “status” to see them all."
        return Message((Text(text),), fallback=text)
    text = (f"I couldn't find a milestone matching “{query}”. "
            f"The closest is “{closest.title}” ({closest.id}).")
    return Message(
        (Text(text), Choices(PICK_ACTION, (Choice(f"Show {closest.title}", closest.id),))),
        fallback=text,
    )


def status_choices(milestone_id: str) -> Choices:
    return Choices(
        CHECKIN_ACTION,
        tuple(Choice(LABELS[s], f"{milestone_id}|{s}", "primary" if s == "on_track" else "default")
              for s in STATUSES),
    )


def checkin_prompt(v: View, now: datetime, today: date, *, reminder: bool = False) -> Message:
    """The owner's check-in card: where it stands, then one tap on the new status."""
    m = v.m
    head = ("Reminder: " if reminder else "") + f"Check-in: {m.title}"
    ask = ("This check-in is still open. How is it going? Tap the status, then add progress and "
           "a note." if reminder else "How is it going? Tap the status, then add progress and a note.")
    return Message(
        (
            Text(head, heading=True),
            Fields((("Now", badge(m)), ("Progress", f"{m.progress}%"),
                    ("Due", due_words(m.due, today)), ("Last update", last_words(v, now)))),
            Text(ask),
            status_choices(m.id),
            Context(f"You own this milestone ({m.id}). You can also type “update {m.id}” any time."),
        ),
        fallback=f"{head}. {ask}",
    )


def confirmation(m: Milestone, who: str, note: str, *, yours: bool) -> Message:
    """What a check-in card becomes once answered."""
    said = f" Note: “{note}”" if note else ""
    text = (f"Thanks, recorded for {m.title}: {LABELS[m.status]}, {m.progress}%.{said}" if yours
            else f"{who} updated {m.title}: {LABELS[m.status]}, {m.progress}%.{said}")
    return Message((Text(f"{EMOJI[m.status]} {text}"),), fallback=text)


def update_form(m: Milestone, status: str | None = None) -> Form:
    """Status, progress and a note for one milestone."""
    return Form(
        form_id=UPDATE_FORM,
        title="Milestone update"[:24],
        intro=(Text(m.title), Context(f"Now {LABELS[m.status]}, {m.progress}%. Due {m.due:%d %b %Y}.")),
        inputs=(
            SelectInput("status", "Status", tuple(Choice(LABELS[s], s) for s in STATUSES),
                        initial=status or m.status),
            NumberInput("progress", "Progress (%)", 0, 100, initial=m.progress),
            TextInput("note", "Note (what changed, what's in the way)", multiline=True,
                      optional=True, max_length=2000),
        ),
        submit_label="Record update",
        metadata=m.id,
    )


def milestone_form(teams: list[tuple[str, str]], themes: list[tuple[str, str]],
                   m: Milestone | None = None, owners: str = "") -> Form:
    """Create (m is None) or edit a milestone's details."""
    from bot.milestones.status import CADENCES

    inputs: list[Input] = []
    if m is None:
        inputs.append(TextInput("id", "Short id (like family-network-meetings)", max_length=64))
    inputs += [
        TextInput("title", "Title", max_length=200, initial=m.title if m else ""),
        TextInput("description", "Description", multiline=True, optional=True,
                  initial=m.description if m else ""),
        TextInput("owners", "Owner emails (comma separated)", initial=owners),
        SelectInput("team", "Team", tuple(Choice(n, i) for i, n in teams), optional=True,
                    initial=(m.team_id or "") if m else ""),
        TextInput("due", "Due date (YYYY-MM-DD)", max_length=10,
                  initial=m.due.isoformat() if m else ""),
        SelectInput("cadence", "Check-in", tuple(Choice(c, c) for c in CADENCES),
                    initial=m.cadence if m else "fortnightly"),
        SelectInput("theme", "Theme", tuple(Choice(n, i) for i, n in themes), optional=True,
                    initial=(m.theme_id or "") if m else ""),
    ]
    return Form(
        form_id=EDIT_FORM if m else NEW_FORM,
        title="Edit milestone" if m else "New milestone",
        inputs=tuple(inputs),
        submit_label="Save",
        metadata=m.id if m else "",
    )
