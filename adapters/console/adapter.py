"""The console chat: one process, several local users, the same core as Slack and Teams."""

from __future__ import annotations

import itertools
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from adapters.console.render import Tap, render
from bot.clock import SystemClock
from bot.core import Core, HandleResult
from bot.model import (
    ActionEvent,
    ConversationRef,
    Event,
    Form,
    FormSubmitEvent,
    Message,
    MessageEvent,
    MessageRef,
    NumberInput,
    SelectInput,
    TextInput,
    ToggleInput,
    UserRef,
)

WORKSPACE = "local"
HELP = """Console commands:
  /as EMAIL   switch to another person (their unread messages are shown)
  /tick       run the scheduler once now (pulse rounds, reminders, check-ins)
  /time [YYYY-MM-DD] HH:MM   move the console's clock (programme time zone), then run the
              scheduler: pulse questions and reminders only go out in working hours
  /cancel     abandon the form being filled in
  /help       this text
  /quit       leave
Type a number to tap that choice; anything else is sent to the bot as a message.
Type "help" (without the slash) to see what the bot can do for you."""


TIME = re.compile(r"^(?:(\d{4}-\d{2}-\d{2})[ T])?(\d{1,2}:\d{2})$")


class ConsoleClock:
    """Real time, moved by `/time` (or `chat --at`): a demo can run at any hour, and whatever
    the core does by the clock (working hours, rounds, reminders) follows it."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def set(self, when: datetime) -> None:
        self.offset = when - datetime.now(UTC)


def parse_time(text: str, tz: str, now: datetime) -> datetime | None:
    """'2026-12-02 09:30' or '09:30' (today) in the programme's time zone; None if neither."""
    m = TIME.match(text.strip())
    if m is None:
        return None
    zone = ZoneInfo(tz)
    day = m.group(1) or now.astimezone(zone).date().isoformat()
    try:
        return datetime.fromisoformat(f"{day} {m.group(2).zfill(5)}").replace(tzinfo=zone)
    except ValueError:
        return None


async def programme_tz(core: Core) -> str:
    from bot.programme.core_sections import get_setting

    async with core.db.session() as s:
        prog = await get_setting(s, "programme", {}) or {}
    return str(prog.get("timezone") or "Europe/London")


async def clock_line(core: Core) -> str:
    """What time the console thinks it is, and whether prompts can go out now."""
    from bot.programme.core_sections import get_setting
    from bot.workhours import Pattern, is_working_moment, next_working_moment

    async with core.db.session() as s:
        prog = await get_setting(s, "programme", {}) or {}
    p = Pattern.from_settings(prog)
    now = core.clock.now()
    local = now.astimezone(ZoneInfo(p.tz))
    said = f"The console's clock says {local:%a %d %b %Y %H:%M} ({p.tz})"
    if is_working_moment(p, now):
        return f"{said}, within working hours."
    nxt = next_working_moment(p, now).astimezone(ZoneInfo(p.tz))
    return (f"{said}, outside working hours: pulse questions wait until {nxt:%a %H:%M}. "
            f"Move the clock with: /time {nxt:%Y-%m-%d} {max(nxt, nxt.replace(minute=30)):%H:%M}")


@dataclass
class OpenForm:
    form: Form
    event: Event
    answers: dict[str, str] = field(default_factory=dict)
    index: int = 0


class ConsolePort:
    """The port for the console: messages are printed (or queued for another user)."""

    platform = "console"

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self.current = ""
        self.inbox: dict[str, list[str]] = {}
        self.messages: dict[str, Message] = {}
        self.taps: dict[str, list[tuple[Tap, MessageRef]]] = {}
        self.forms: dict[str, OpenForm] = {}
        # The last notice printed for each person (a screen with nothing to answer), until
        # they type again: what they see in place of a form.
        self.notices: dict[str, Form] = {}
        self.sent_to: dict[str, list[str]] = {}
        self._ids = itertools.count(1)

    def _show(self, user: str, ref: MessageRef, message: Message, edited: bool = False) -> None:
        text, taps = render(message)
        self.taps[user] = [(t, ref) for t in taps]
        prefix = "staffvoice (edited) ▸ " if edited else "staffvoice ▸ "
        out = prefix + text.replace("\n", "\n    ")
        if user == self.current:
            self.write(out)
        else:
            self.inbox.setdefault(user, []).append(out)

    async def send(self, conversation: ConversationRef, message: Message) -> MessageRef:
        ref = MessageRef(conversation, f"c{next(self._ids)}")
        self.messages[ref.message_id] = message
        self.sent_to.setdefault(conversation.conversation_id, []).append(ref.message_id)
        self._show(conversation.conversation_id, ref, message)
        return ref

    async def update(self, ref: MessageRef, message: Message) -> None:
        self.messages[ref.message_id] = message
        self._show(ref.conversation.conversation_id, ref, message, edited=True)

    async def delete(self, ref: MessageRef) -> None:
        self.messages.pop(ref.message_id, None)
        user = ref.conversation.conversation_id
        note = "staffvoice ▸ (a message was removed by the change team)"
        if user == self.current:
            self.write(note)
        else:
            self.inbox.setdefault(user, []).append(note)

    async def open_dm(self, user: UserRef, *, remember: bool = True) -> ConversationRef:
        return ConversationRef(self.platform, WORKSPACE, user.user_id)

    async def find_user(self, email: str) -> UserRef | None:
        """Everyone in the programme can be reached in the console."""
        return user_ref(email)

    async def open_form(self, event: Event, form: Form) -> None:
        if form.notice:
            # Printed, as a form is; nothing to answer, so nothing stays open (and, as for
            # any form, nothing is kept among the messages sent to the person).
            self.notices[event.user.user_id] = form
        else:
            self.notices.pop(event.user.user_id, None)
            self.forms[event.user.user_id] = OpenForm(form, event)
        self.write(f"staffvoice ▸ {form.title.upper()}")
        for b in form.intro:
            self.write("    " + getattr(b, "text", "").replace("\n", "\n    "))
        if form.notice:
            return
        self.write("    (answer each question; /cancel to stop)")
        if form.inputs:
            self.write(prompt_for(form.inputs[0]))


def user_ref(email: str) -> UserRef:
    return UserRef("console", WORKSPACE, email.lower(), email=email.lower(), display_name=email)


def prompt_for(inp: TextInput | SelectInput | ToggleInput | NumberInput) -> str:
    label = inp.label.removesuffix("(optional)").rstrip()
    skip = " (optional, Enter to skip)" if getattr(inp, "optional", False) else ""
    if isinstance(inp, SelectInput):
        opts = "  ".join(f"[{i}] {o.label}" for i, o in enumerate(inp.options, 1))
        return f"  {label}{skip}: {opts}"
    if isinstance(inp, ToggleInput):
        return f"  {label} [y/n]"
    if isinstance(inp, NumberInput):
        return f"  {label} ({inp.min}-{inp.max}){skip}"
    return f"  {label}{skip}"


class ConsoleChat:
    """Reads lines, turns them into events for the core, prints what comes back."""

    def __init__(self, core: Core, email: str, write: Callable[[str], None] | None = None) -> None:
        self.core = core
        self.write = write or (lambda s: print(s, flush=True))
        self.port = ConsolePort(self.write)
        core.add_port(self.port)
        if isinstance(core.clock, SystemClock):
            core.clock = ConsoleClock()  # movable with /time
        self.port.current = email.lower()
        self._n = itertools.count(1)

    @property
    def email(self) -> str:
        return self.port.current

    def _event_id(self) -> str:
        import secrets

        return f"console-{secrets.token_hex(6)}-{next(self._n)}"

    def _conv(self) -> ConversationRef:
        return ConversationRef("console", WORKSPACE, self.email)

    async def line(self, text: str) -> bool:
        """Handle one typed line; False when the user wants to quit."""
        text = text.rstrip("\n")
        self.port.notices.pop(self.email, None)  # read: the person has moved on
        open_form = self.port.forms.get(self.email)
        if text.strip() in ("/quit", "/exit"):
            return False
        if text.strip() == "/help":
            self.write(HELP)
            return True
        if text.strip().startswith("/as"):
            parts = text.split()
            if len(parts) != 2 or "@" not in parts[1]:
                self.write("  usage: /as someone@example.org")
                return True
            self.port.current = parts[1].lower()
            self.write(f"-- you are now {self.email} --")
            for m in self.port.inbox.pop(self.email, []):
                self.write(m)
            return True
        if text.strip() == "/tick":
            await self._tick()
            return True
        if text.strip() == "/time" or text.strip().startswith("/time "):
            await self._time(text.strip()[5:].strip())
            return True
        if open_form is not None:
            await self._form_line(open_form, text)
            return True
        if not text.strip():
            return True
        taps = self.port.taps.get(self.email, [])
        if text.strip().isdigit() and taps:
            i = int(text.strip())
            if not 1 <= i <= len(taps):
                self.write(f"  choose a number from 1 to {len(taps)}")
                return True
            tap, ref = taps[i - 1]
            await self._handle(ActionEvent(self._event_id(), user_ref(self.email), self._conv(),
                                           action_id=tap.action_id, value=tap.value, message=ref,
                                           trigger="console"))
            return True
        await self._handle(MessageEvent(self._event_id(), user_ref(self.email), self._conv(),
                                        text=text, trigger="console"))
        return True

    async def _tick(self) -> None:
        done = await self.core.tick()
        self.write("  (scheduler ran: " + ", ".join(f"{k}={v}" for k, v in done.items()) + ")")
        for m in self.port.inbox.pop(self.email, []):
            self.write(m)

    async def _time(self, arg: str) -> None:
        """`/time` says the clock; `/time [DATE] HH:MM` moves it and runs the scheduler."""
        if arg:
            when = parse_time(arg, await programme_tz(self.core), self.core.clock.now())
            setter = getattr(self.core.clock, "set", None)
            if when is None or setter is None:
                self.write("  usage: /time 2026-12-02 09:30 (or /time 09:30 for today)")
                return
            setter(when)
        self.write("  " + await clock_line(self.core))
        if arg:
            await self._tick()

    async def _form_line(self, of: OpenForm, text: str) -> None:
        if text.strip() == "/cancel":
            del self.port.forms[self.email]
            self.write("  (form cancelled, nothing was sent)")
            return
        inp = of.form.inputs[of.index] if of.index < len(of.form.inputs) else None
        if inp is not None:
            value = text.strip()
            err = None
            if isinstance(inp, SelectInput):
                if value.isdigit() and 1 <= int(value) <= len(inp.options):
                    value = inp.options[int(value) - 1].value
                elif value == "" and inp.optional:
                    value = ""
                else:
                    err = f"choose 1 to {len(inp.options)}"
            elif isinstance(inp, ToggleInput):
                if value.lower() in ("y", "yes"):
                    value = "true"
                elif value.lower() in ("n", "no", ""):
                    value = "false"
                else:
                    err = "answer y or n"
            elif isinstance(inp, NumberInput):
                if value == "" and inp.optional:
                    pass
                elif not value.lstrip("-").isdigit() or not inp.min <= int(value) <= inp.max:
                    err = f"a whole number from {inp.min} to {inp.max}"
            elif isinstance(inp, TextInput):
                if not value and not inp.optional:
                    err = "this is required"
            if err:
                self.write(f"  {err}")
                self.write(prompt_for(inp))
                return
            of.answers[inp.name] = value
            of.index += 1
        if of.index < len(of.form.inputs):
            self.write(prompt_for(of.form.inputs[of.index]))
            return
        del self.port.forms[self.email]
        result = await self._handle(FormSubmitEvent(
            self._event_id(), user_ref(self.email), self._conv(), form_id=of.form.form_id,
            values=dict(of.answers), metadata=of.form.metadata, trigger="console"))
        if result.form_errors:
            for k, v in result.form_errors.items():
                self.write(f"  {'' if k == '_' else k + ': '}{v}")
            self.write("  (form not sent; try again)")

    async def _handle(self, event: Event) -> HandleResult:
        return await self.core.handle(event, self.port)


async def run(core: Core, email: str, stream=None, at: str | None = None) -> None:  # type: ignore[no-untyped-def]
    """Chat until EOF or /quit. Reads stdin line by line (works piped or interactive).
    `at` starts the console's clock there ('2026-12-02 09:30'), as `/time` would."""
    import asyncio

    stream = stream or sys.stdin
    chat = ConsoleChat(core, email)
    interactive = stream.isatty()
    if interactive:
        chat.write(f"staffvoice console — you are {email}. /help for console commands, "
                   "'help' for the bot.")
    if at:
        await chat.line(f"/time {at}")
    else:
        chat.write(await clock_line(core))
    loop = asyncio.get_running_loop()
    while True:
        if interactive:
            print(f"{chat.email}> ", end="", flush=True)
        line = await loop.run_in_executor(None, stream.readline)
        if not line:
            break
        if not interactive:
            chat.write(f"{chat.email}> {line.rstrip()}")
        if not await chat.line(line):
            break
