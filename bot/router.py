"""Routes: which handler answers which command, phrase, button or form."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.core import Core, Ctx
    from bot.model import Message
    from bot.programme.schema import Section

Handler = Callable[["Ctx", str], Awaitable[None]]
EventHandler = Callable[["Ctx"], Awaitable[None]]
Ticker = Callable[["Core", datetime], Awaitable[int]]
HomeSection = Callable[["Ctx"], Awaitable[list[Any]]]
# Typed text no command matches: True when it answered (bot/core.py `_text`).
Fallback = Callable[["Ctx", str], Awaitable[bool]]
# Typed text from someone outside the programme: how to answer it instead of the not-enrolled
# notice (given that notice's words), as a message for whether it is shown where others read,
# or None (bot/core.py `handle`).
Outsider = Callable[["Core", str, str], Awaitable["Callable[[bool], Message] | None"]]
# A long-running loop (the broadcast sender): runs until `stop` is set.
Worker = Callable[["Core", asyncio.Event], Awaitable[None]]


@dataclass(frozen=True)
class Command:
    """A typed command: `words` is what the user types first, `args` the rest."""

    words: str
    handler: Handler
    summary: str
    usage: str = ""
    roles: frozenset[str] | None = None  # None: anyone
    hidden: bool = False
    # Personal: asked in a channel or group chat, it is answered in the person's DM, and the
    # shared conversation only hears that it was.
    private: bool = False
    # The handler's first database block continues the dispatcher's transaction (as
    # `Action.joins`): for hot commands that only read before they answer.
    joins: bool = False
    # Using it must leave nothing in the person's chat when nothing is typed there (a slash
    # command opening the anonymous feedback form): no greeting; the privacy notice, if due,
    # is left in `Ctx.notice` for the form the command opens (docs/invariants.md N20).
    traceless: bool = False


@dataclass(frozen=True)
class Intent:
    """A phrase in natural words ("what's at risk?") mapped to a command."""

    pattern: re.Pattern[str]
    words: str  # the command it means; the first group (if any) becomes its args


@dataclass(frozen=True)
class Action:
    prefix: str
    handler: EventHandler
    roles: frozenset[str] | None = None
    # The handler's first database block continues the dispatcher's transaction (one commit
    # per tap); see Ctx.session and Ctx.connection.
    joins: bool = False


@dataclass
class Router:
    commands: dict[str, Command] = field(default_factory=dict)
    intents: list[Intent] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    forms: list[Action] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    tickers: dict[str, Ticker] = field(default_factory=dict)
    home: list[HomeSection] = field(default_factory=list)
    workers: dict[str, Worker] = field(default_factory=dict)
    # Run before the handler of a typed message or an install (the privacy notice on first
    # contact); never on taps, so a pulse answer stays one commit.
    greeters: list[EventHandler] = field(default_factory=list)
    # Asked in turn about typed text that no command or phrase matches, before "I didn't
    # understand" (what looks like a disclosure gets the safeguarding routes: bot/feedback).
    fallbacks: list[Fallback] = field(default_factory=list)
    # Asked in turn about typed text from someone outside the programme, before the polite
    # "you are not part of this programme" (a disclosure still gets the routes: bot/feedback).
    outsiders: list[Outsider] = field(default_factory=list)

    def command(
        self,
        words: str,
        handler: Handler,
        summary: str,
        *,
        usage: str = "",
        roles: frozenset[str] | set[str] | None = None,
        hidden: bool = False,
        private: bool = False,
        joins: bool = False,
        traceless: bool = False,
    ) -> None:
        """`joins`: see `action`; never for a command that talks to a platform before it
        answers (its open transaction would hold SQLite's write lock meanwhile)."""
        key = normalise(words)
        if key in self.commands:
            raise ValueError(f"command {key!r} registered twice")
        self.commands[key] = Command(
            key, handler, summary, usage, frozenset(roles) if roles else None, hidden, private,
            joins, traceless,
        )

    def intent(self, pattern: str, words: str) -> None:
        self.intents.append(Intent(re.compile(pattern, re.IGNORECASE), normalise(words)))

    def action(
        self, prefix: str, handler: EventHandler, *, roles: frozenset[str] | set[str] | None = None,
        joins: bool = False,
    ) -> None:
        """`joins`: the handler's first `ctx.session()` or `ctx.connection()` block continues
        the dispatcher's transaction, so the tap and its effect commit together (a reply or
        any other platform call before it commits the dispatcher's transaction first). For
        hot actions; the handler's code does not change."""
        self.actions.append(Action(prefix, handler, frozenset(roles) if roles else None, joins))

    def form(
        self, prefix: str, handler: EventHandler, *, roles: frozenset[str] | set[str] | None = None,
        joins: bool = False,
    ) -> None:
        """`joins`: as for `action`: the submission's admission and the handler's first
        database block are one transaction."""
        self.forms.append(Action(prefix, handler, frozenset(roles) if roles else None, joins))

    def ticker(self, name: str, fn: Ticker) -> None:
        """A job the scheduler runs every tick: it does whatever the tables say is due."""
        self.tickers[name] = fn

    def greeter(self, fn: EventHandler) -> None:
        """Run `fn(ctx)` before answering a typed message or an install."""
        self.greeters.append(fn)

    def fallback(self, fn: Fallback) -> None:
        """`fn(ctx, text)` answers typed text no command matches, if it returns True."""
        self.fallbacks.append(fn)

    def outsider(self, fn: Outsider) -> None:
        """`fn(core, text, notice)` answers typed text from someone outside the programme, if
        it returns the answer's maker (`notice`: what they would be told otherwise; the maker
        is given whether the answer is shown where others read)."""
        self.outsiders.append(fn)

    def worker(self, name: str, fn: Worker) -> None:
        """A loop every serving replica runs (fn(core, stop_event)), like the send-ledger drain."""
        self.workers[name] = fn

    def match(self, text: str) -> tuple[Command, str] | None:
        """The command a line of text means, and its arguments."""
        clean = normalise(text)
        for intent in self.intents:
            m = intent.pattern.search(clean)
            if m and intent.words in self.commands:
                args = m.group(1) if m.groups() and m.group(1) else ""
                return self.commands[intent.words], args.strip()
        words = clean.split()
        for n in range(min(len(words), 3), 0, -1):
            key = " ".join(words[:n])
            if key in self.commands:
                return self.commands[key], " ".join(text.strip().split()[n:])
        return None

    def find(self, table: list[Action], action_id: str) -> Action | None:
        best: Action | None = None
        for a in table:
            if action_id.startswith(a.prefix) and (best is None or len(a.prefix) > len(best.prefix)):
                best = a
        return best


def normalise(text: str) -> str:
    """Lower case, single spaces, without a leading slash or trailing punctuation."""
    t = " ".join(text.strip().lower().split())
    t = t.lstrip("/")
    return t.rstrip("?!. ")
