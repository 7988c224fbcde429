"""The core: events in, messages out. Routes, permissions, dedup and friendly errors."""

from __future__ import annotations

import asyncio
import importlib
import logging
import pkgutil
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import bindparam, delete, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

import bot
from bot import background
from bot.clock import Clock, SystemClock
from bot.config import Settings
from bot.dispatch_tables import ProcessedEvent
from bot.errors import FormInvalid, NotAllowed, UserError
from bot.model import (
    ActionEvent,
    CommandEvent,
    ConversationRef,
    Event,
    Form,
    FormSubmitEvent,
    HomeOpenedEvent,
    InstallEvent,
    Message,
    MessageEvent,
    MessageRef,
    UserRef,
    text_message,
)
from bot.people import service as people
from bot.people.held import flush as flush_held
from bot.people.held import held
from bot.people.tables import Identity, Person
from bot.port import AppNotAuthorised, PlatformError, Port, RateLimited, TransientError, Unreachable
from bot.roles import describe
from bot.router import Action, Command, Router
from bot.secrets import keyed_hash
from storage import written
from storage.db import Database, NotCommitted
from storage.prepared import Prepared
from storage.retry import Retry, database_busy

log = logging.getLogger("staffvoice.core")
# Slack retries an event three times within minutes, the Bot Connector within its HTTP timeout
# (DESIGN.md, platform facts); a day is far beyond either.
EVENT_RETRIES = timedelta(days=1)
# The first events of one new user can race (a double tap, retries): the loser's insert
# conflicts (PostgreSQL) or SQLite refuses it the lock. Either way it is admitted on a retry.
ADMISSION = Retry(lambda e: isinstance(e, IntegrityError) or database_busy(e), attempts=5)
# A DM refused with a 429: waited out on the same platform (Retry-After honoured), a few
# times within about DM_RATE_WAIT_S, then RateLimited reaches the caller, who tries again
# later (an alert at the next tick, N45). A rate limit says nothing about the person: their
# other accounts are never tried for it (`Core.dm`). A Retry-After longer than that is not
# slept through at all.
DM_RATE_WAIT_S = 10.0


def _rate_limited(e: BaseException) -> bool:
    return isinstance(e, RateLimited) and e.retry_after <= DM_RATE_WAIT_S


T = TypeVar("T")
DM_RATE = Retry(_rate_limited, attempts=3, base=0.5, cap=DM_RATE_WAIT_S,
                deadline=DM_RATE_WAIT_S,
                after=lambda e: e.retry_after if isinstance(e, RateLimited) else None)


async def rate_waited(since: float, fn: Callable[..., Awaitable[T]], *args: Any,
                      **kwargs: Any) -> T:
    """`fn(*args, **kwargs)`, a 429 waited out on the same platform under DM_RATE, and only
    while the time spent since `since` (time.monotonic: the start of the `Core.dm` or the
    reply; the adapter's own waits included, the Slack Pacer's, the Bot Connector's
    retries) plus its Retry-After stays within DM_RATE_WAIT_S: one budget for a DM's every
    step (the route, opening the DM, the send). DM_RATE's own deadline counts from the first
    refusal and is checked only at the next one: a third try came after 12 s at Retry-After
    6, and with the adapter's inline waits a DM waited up to three times their 15 s (a Slack
    queue slot, a Teams turn, the alerts' tick held). Nothing is built unless a 429 comes:
    every reply goes through here (about 3,000 instructions a call, callgrind over 10,000;
    6,000 through `Retry.run` with a partial, 30,000 with a Retry built per call)."""
    try:
        return await fn(*args, **kwargs)
    except RateLimited as e:
        error = e
    tries = DM_RATE.begin()
    while True:
        wait = (tries.wait(error)
                if time.monotonic() - since + error.retry_after <= DM_RATE_WAIT_S else None)
        if wait is None:
            raise error
        _waited(error, wait)
        await asyncio.sleep(wait)
        try:
            return await fn(*args, **kwargs)
        except RateLimited as e:
            error = e


SORRY = "Sorry, something went wrong on our side and nothing was saved. Please try again in a minute."
# Said in a channel or group chat when the answer went to the person privately (nothing personal).
PRIVATELY = "I've answered you privately."
FORM_PRIVATELY = "I've opened the form for you privately."
NO_DM = ("I can't message you privately yet, and that answer is personal. Open a chat with me "
         "(or add the app for yourself) and ask there.")
UNKNOWN = "Sorry, I didn't understand that. Type “help” to see what you can do."


@dataclass
class HandleResult:
    """What the adapter needs back synchronously (form errors must go in the ack)."""

    handled: bool = True
    duplicate: bool = False
    form_errors: dict[str, str] | None = None
    error: str | None = None
    # What the sender was told instead (e.g. that they are not part of the programme), for
    # surfaces the adapter draws itself (a home tab).
    notice: str | None = None


# A middleware wraps every inbound event, as Bolt's do: it gets the event, the port it came
# from and `call_next` (the rest of the chain, then the core), and returns the result; it may
# look at or time the call, never change the event. Registered with `Core.use`.
Next = Callable[[], Awaitable[HandleResult]]


class _Chain:
    """The rest of the middleware chain from `i`, as a `Next`. An object rather than a
    closure that calls itself: such a closure is a reference cycle (function, cell,
    function), and with it the event and the port, which only the garbage collector frees;
    at a few hundred events a second those cycles made its young collections long enough to
    set the p99 (bench/README, eleventh session)."""

    __slots__ = ("core", "event", "port", "i")

    def __init__(self, core: Core, event: Event, port: Port, i: int) -> None:
        self.core, self.event, self.port, self.i = core, event, port, i

    def __call__(self) -> Awaitable[HandleResult]:
        chain = self.core.middleware
        if self.i == len(chain):
            return self.core._handle(self.event, self.port)
        return chain[self.i](self.event, self.port, _Chain(self.core, self.event, self.port, self.i + 1))
Middleware = Callable[[Event, Port, Next], Awaitable[HandleResult]]

# Who sent an event: the person, their roles, their DM route on the event's platform, and
# whether the one-statement lookup found them (False: a new account, or details just saved).
_Sender = tuple[Person, frozenset[str], dict[str, Any] | None, bool]


class _Pending:
    """An open transaction of the dispatcher's, handed to the handler of a joining action."""

    def __init__(self, db: Database, conn: AsyncConnection) -> None:
        self.db, self.conn = db, conn
        self.written: set[str] = set()  # tables a joined session changed (storage/written.py)

    async def end(self, *, commit: bool) -> None:
        if await self.db.end(self.conn, commit=commit):
            # now the changes are there for other connections to read
            written.committed(self.conn.sync_engine, self.written)
        elif commit:
            # Rolled back under the handler (`Database.end` logged why): the event fails
            # and may come again, rather than the handler telling the person it was done.
            raise NotCommitted("the dispatcher's transaction had ended before its commit; "
                               "the handler's writes in it are not stored")


@dataclass
class Ctx:
    """Everything a handler needs for one event.

    Database work goes through `session()` (the ORM) or `connection()` (prepared Core
    statements, cheaper on hot paths): each is one transaction, committed at the end of its
    block and rolled back on error. Neither says whether the handler joined the dispatcher's
    transaction (`Router.action(joins=True)`): if it did, its first block simply continues
    it, so the tap and its effect are one commit; the handler's code is the same either way.
    """

    core: Core
    event: Event
    port: Port
    person: Person
    roles: frozenset[str]
    replies: list[MessageRef] = field(default_factory=list)
    # The dispatcher's own transaction, still open, for an action that joins it: the first
    # `session()` or `connection()` block continues it. Anything that talks to a platform
    # commits it first (`settle`), so no lock is held across a platform call.
    pending: _Pending | None = field(default=None, repr=False)
    # The sender's stored DM route on this platform, when admission read it: a reply to an
    # event with no conversation (a tap in a form or home tab) goes there without a lookup.
    sender_dm: dict[str, Any] | None = field(default=None, repr=False)
    # The sender's account was already linked (admission's one-statement lookup found it):
    # False for an account seen for the first time since it was linked (or linked again
    # after an erasure), so per-account facts a feature remembers are read again.
    sender_known: bool = field(default=False, repr=False)
    # The privacy notice a greeter could not post in the chat (a first contact that must
    # leave no trace there, docs/invariants.md N20): the form the handler opens shows it.
    notice: Message | None = field(default=None, repr=False)

    @property
    def now(self) -> datetime:
        return self.core.clock.now()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """An ORM session in a transaction (the dispatcher's own, if this action joins it)."""
        pending, self.pending = self.pending, None
        if pending is None:
            async with self.core.db.session() as s:
                yield s
            return
        try:
            # Bound to the open transaction: the session's commit only flushes; the
            # dispatcher's transaction is committed below, once.
            async with AsyncSession(bind=pending.conn, expire_on_commit=False) as s:
                written.defer_commit(s.sync_session, pending.written)
                yield s
                await s.commit()
        except BaseException:
            await pending.end(commit=False)
            raise
        await pending.end(commit=True)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction for prepared statements (the dispatcher's own, if
        this action joins it): no ORM session to build, for the hottest handlers."""
        pending, self.pending = self.pending, None
        if pending is None:
            async with self.core.db.transaction() as conn:
                yield conn
            return
        try:
            yield pending.conn
        except BaseException:
            await pending.end(commit=False)
            raise
        await pending.end(commit=True)

    async def settle(self) -> None:
        """Commit the dispatcher's transaction if this handler has not continued it."""
        pending, self.pending = self.pending, None
        if pending is not None:
            await pending.end(commit=True)

    async def abandon(self) -> None:
        """Roll back the dispatcher's transaction if this handler has not continued it."""
        pending, self.pending = self.pending, None
        if pending is not None:
            await pending.end(commit=False)

    def has(self, *roles: str) -> bool:
        return any(r in self.roles for r in roles)

    def require(self, *roles: str) -> None:
        """Refuse (NotAllowed) unless the user has one of `roles`."""
        if not self.has(*roles):
            raise NotAllowed(
                f"Sorry, only {describe(frozenset(roles))} can do that. Nothing was changed."
            )

    async def reply(self, message: Message) -> MessageRef | None:
        """Answer where the event happened (in thread for a channel mention), else by DM."""
        await self.settle()
        conv = self.event.conversation
        if conv is None:
            return await self.core.dm(self.person.id, message, prefer=self.event.user,
                                      route=self.sender_dm)
        # A 429 waited out as a DM's is (N56): raised at once, the event failed, its "Sorry"
        # met the same 429, and the person got nothing, or was told nothing was saved.
        ref = await rate_waited(time.monotonic(), self.port.send, conv, message)
        self.replies.append(ref)
        return ref

    async def say(self, text: str) -> MessageRef | None:
        return await self.reply(text_message(text))

    async def update(self, message: Message) -> MessageRef | None:
        """Edit the message whose button was tapped; reply if there is none."""
        await self.settle()
        ref = getattr(self.event, "message", None)
        if isinstance(ref, MessageRef):
            await self.port.update(ref, message)
            return ref
        return await self.reply(message)

    async def open_form(self, form: Form) -> None:
        """Show a form to the person (adapters never show one in a shared conversation)."""
        await self.settle()
        await self.port.open_form(self.event, form)
        if shared(self.event):
            await self.core.say_shared(self.port, self.event, FORM_PRIVATELY)


class Core:
    """The platform-neutral bot. Adapters call `handle`; the scheduler calls `tick`."""

    def __init__(
        self,
        db: Database,
        *,
        settings: Settings | None = None,
        clock: Clock | None = None,
        router: Router | None = None,
    ) -> None:
        self.db = db
        self.settings = settings or Settings()
        self.clock: Clock = clock or SystemClock()
        self.router = router or build_router()
        self.ports: dict[str, Port] = {}
        self.secret: bytes = b""
        self._unconnected: set[str] = set()  # channels whose platform is off, already said
        self.middleware: list[Middleware] = []

    def add_port(self, port: Port) -> None:
        self.ports[port.platform] = port

    def use(self, middleware: Middleware) -> None:
        """Run `middleware` around every inbound event (first registered, outermost)."""
        self.middleware.append(middleware)

    async def start(self) -> None:
        """Load the server secret (from the environment, else one kept in the database)."""
        from bot.secrets import load_secret

        self.secret = await load_secret(self.db, self.settings.secret_key)

    # -- inbound ---------------------------------------------------------------------

    async def handle(self, event: Event, port: Port) -> HandleResult:
        """Handle one inbound event exactly once, through the middleware; never raises for
        user errors."""
        if not self.middleware:
            return await self._handle(event, port)
        return await _Chain(self, event, port, 0)()

    async def _handle(self, event: Event, port: Port) -> HandleResult:
        if not self.secret:
            await self.start()
        event = clean_event(event)
        u = event.user
        if len(u.platform) > 16 or len(u.workspace) > 128 or len(u.user_id) > 255:
            # No platform issues ids this long; storing them would fail, so refuse cleanly.
            log.warning("event refused: platform ids too long", extra={"kind": type(event).__name__})
            return HandleResult(handled=False, error="invalid")
        # A tap's trigger goes into its key (N33); a form's submission keeps its id alone, so
        # the same view sent twice (a double press of Submit) is still one event.
        key = self.event_key(event.event_id,
                             event.trigger if isinstance(event, ActionEvent) else None)
        act = (self.router.find(self.router.actions, event.action_id)
               if isinstance(event, ActionEvent) else
               self.router.find(self.router.forms, event.form_id)
               if isinstance(event, FormSubmitEvent) else None)
        said = (self.router.match(event.text)
                if isinstance(event, MessageEvent | CommandEvent) else None)
        joins = (act.joins if act is not None else
                 said is not None and said[0].joins and not (said[0].private and shared(event)))
        joined = await self._admit_joined(event, key) if joins else None
        if joined is not None:
            pending, (person, roles, route, known) = joined
        else:
            pending = None
            try:
                admitted = await self._admit(event, key)
            except people.NotEnrolled:
                # Not a person of the programme: told politely, never stored, never counted.
                log.info("event from someone outside the programme", extra={"kind": type(event).__name__})
                notice = await self.not_enrolled_text()
                if isinstance(event, MessageEvent | CommandEvent) and await self._outsider(
                        event, port, notice):
                    return HandleResult(handled=False, error="not_enrolled", notice=notice)
                if not isinstance(event, HomeOpenedEvent):
                    await self._tell(event, port, notice)
                return HandleResult(handled=False, error="not_enrolled", notice=notice)
            except Exception:
                log.exception("event not admitted",
                              extra={"event": key[:16], "kind": type(event).__name__})
                await self._tell_sorry(event, port)
                return HandleResult(handled=False, error="internal")
            if admitted is None:
                log.info("duplicate event dropped", extra={"event": key[:16]})
                return HandleResult(duplicate=True)
            person, roles, route, known = admitted
        ctx = Ctx(self, event, port, person, roles, pending=pending, sender_dm=route,
                  sender_known=known)
        try:
            result = await self._route(ctx, act, said)
            await ctx.settle()
            return result
        except FormInvalid as e:
            await ctx.abandon()
            await self._forget(key)
            return HandleResult(form_errors=e.errors)
        except Exception:
            # Unknown failure: let a redelivery try again, tell the user, log no content.
            log.exception("event failed", extra={"event": key[:16], "kind": type(event).__name__})
            await ctx.abandon()
            await self._forget(key)
            await self._tell_sorry(event, port)
            return HandleResult(handled=False, error="internal")

    def event_key(self, event_id: str, trigger: str | None = None) -> str:
        """What is stored of an event id: a keyed hash, since platform ids can embed who
        tapped what and when (Slack action ids carry the user, a precise time and the button,
        which is the answer). A tap's `trigger` (Slack's trigger_id: the same in every
        redelivery of one interaction, random to anyone but the platform) is hashed in too:
        without it, the holder of the server key could try every `action_ts` of the stored day
        for a known user and each button of a known question, and read their answer, after
        the round closed (docs/invariants.md N33)."""
        if trigger:
            return keyed_hash(self.secret, "event", event_id, trigger)
        return keyed_hash(self.secret, "event", event_id)

    async def _admit(self, event: Event, key: str) -> _Sender | None:
        """Record the event as seen and find who sent it, in one transaction.

        None means a duplicate. Two first events from one new user can race (a double tap,
        retries): the loser's insert conflicts (PostgreSQL) or its write lock is refused
        (SQLite), so it tries again.
        """
        # A loop, not a closure calling itself: a self-referring closure is a reference
        # cycle, left to the garbage collector on every event (bench/README, eleventh session).
        # Enrolled once and still not found (the person erased as it was made): the event
        # fails like any other (an apology; a redelivery tries again), never enrols on and on.
        async def attempt() -> _Sender | None:
            enrolled = False
            while True:
                try:
                    async with self.db.transaction() as conn:
                        return await self._admit_on(conn, event, key)
                except IntegrityError:
                    if await self._seen(key):
                        return None
                    raise
                except people.MustEnrol:
                    if enrolled:
                        raise
                    await self._enrol(event.user)
                    enrolled = True

        return await ADMISSION.run(attempt)

    async def _enrol(self, u: UserRef) -> None:
        """Create the person of an account new to the programme that may enrol itself, in a
        transaction of its own before its event's (the row must exist: what the event does
        may refer to it); undated, its link held, and the next flush rewrites every person
        row, so theirs ends with the flush's `xmin` (N21)."""
        async def attempt() -> str:
            async with self.db.session() as s:
                return await people.enrol(s, u)

        pid = await ADMISSION.run(attempt)  # a racing first event enrolled them: found next
        hold = held(self)
        hold.links[(u.platform, u.workspace, u.user_id)] = pid
        hold.enrolled = True

    async def _admit_on(self, conn: AsyncConnection, event: Event, key: str) -> _Sender:
        """The admission's statements, in the caller's transaction. What they learn about
        the sender (a new account's link, its DM route, a new time zone) is held for the
        flusher (bot/people/held.py), never written here: a first message is often
        "feedback", and a tap's admission is its answer's own transaction (N21)."""
        # The day only: an hour would mark which events came together (a form sent again
        # after "Before you send" stands out as the hour with one more event).
        await _SEEN_RUN.all(conn, {"event_id": key, "seen_at": day_of(self.clock.now())})
        u = event.user
        account = (u.platform, u.workspace, u.user_id)
        hold = held(self)
        person, roles, stored, reachable, known = await self._sender_of(conn, u)
        tz = people.valid_tz(u.tz)
        if tz and not person.from_programme:
            tz_now = hold.tz.get(person.id, person.tz)
            if tz != tz_now:
                hold.tz[person.id] = tz
            person.tz = tz  # a new object in no session: this writes nothing
        elif person.id in hold.tz:
            person.tz = hold.tz[person.id]
        route = hold.routes[account] if account in hold.routes else (
            stored if reachable else None)
        dm = _dm_of(event)
        if dm is not None and dm != route:
            hold.route(account, dm)
            route = dm
        return person, roles, route, known

    async def _sender_of(self, conn: AsyncConnection, u: UserRef) -> tuple[
            Person, frozenset[str], dict[str, Any] | None, bool, bool]:
        """Who an account is, for admission and `context_for` alike: a stored account, else
        one this process holds, else the person it belongs to, whose new link is held for
        the flusher (bot/people/held.py), never written here (N21). Returns the person, their
        roles, the stored DM route, whether it is reachable, and whether the account was
        stored or held. people.MustEnrol for someone new who may enrol (`_enrol` first)."""
        found = await people.known_sender(conn, u)
        if found is not None:
            person, roles, stored, reachable = found
            return person, roles, stored, reachable, True
        account = (u.platform, u.workspace, u.user_id)
        hold = held(self)
        linked = hold.links.get(account)
        # Linked here and not flushed yet: the person and roles in one statement, as for a
        # stored account (every request of a new account until the next flush).
        by_id = await people.sender_by_id(conn, linked) if linked is not None else None
        if by_id is not None:
            person, roles = by_id
        else:
            # The session joins the caller's transaction; it writes nothing.
            async with AsyncSession(bind=conn, expire_on_commit=False) as s:
                person = await people.person_to_link(s, u)
                roles = await people.roles_of(s, person.id)
                await s.commit()
        hold.links[account] = person.id
        return person, roles, None, True, by_id is not None

    async def _admit_joined(self, event: Event, key: str) -> tuple[_Pending, _Sender] | None:
        """Admit in a transaction left open for the action's handler; None if that did not
        work at once (a duplicate, a race, a busy database): the usual path then decides."""
        try:
            conn = await self.db.begun()
        except Exception:
            return None
        try:
            found = await self._admit_on(conn, event, key)
        except Exception:
            try:
                await self.db.end(conn, commit=False)
            except Exception:
                pass  # the usual path reports a database that is down
            return None
        return _Pending(self.db, conn), found

    async def _seen(self, key: str) -> bool:
        async with self.db.session() as s:
            return await s.get(ProcessedEvent, key) is not None

    async def not_enrolled_text(self) -> str:
        """What someone outside the programme is told."""
        async with self.db.session() as s:
            contact = await people.enrolment_contact(s)
        return (f"Sorry, you are not part of this programme yet, so I can't help you here. "
                f"If you think you should be, ask {contact}.")

    async def _outsider(self, event: MessageEvent | CommandEvent, port: Port,
                        notice: str) -> bool:
        """Typed text from someone outside the programme that a feature answers (a disclosure:
        the safeguarding routes, N52): in their DM where they wrote in a shared conversation,
        the conversation hearing only that it went privately. True when answered."""
        for outsider in self.router.outsiders:
            try:
                answer = await outsider(self, event.text or "", notice)
            except Exception:
                log.exception("an outsider's text could not be checked")
                continue
            if answer is None:
                continue
            conv = event.conversation
            if conv is None or shared(event):
                # Its DM first; the shared conversation hears that it went privately once it
                # did. Where no DM can be opened or sent to, the routes go where they wrote,
                # never what the words look like (review26).
                try:
                    await port.send(await port.open_dm(event.user), answer(False))
                except PlatformError:
                    pass
                else:
                    await self.say_shared(port, event, PRIVATELY)
                    return True
                if conv is None:
                    return False
            try:
                await port.send(conv, answer(shared(event)))
            except PlatformError:
                log.warning("could not answer an outsider's text", extra={"kind": type(event).__name__})
                return False
            return True
        return False

    async def _tell(self, event: Event, port: Port, text: str) -> None:
        """Say `text` to the sender where the event happened, else in a DM; failures logged."""
        try:
            conv = event.conversation or await port.open_dm(event.user)
            await port.send(conv, text_message(text))
        except Exception:
            log.warning("could not tell the sender", extra={"kind": type(event).__name__})

    async def _tell_sorry(self, event: Event, port: Port) -> None:
        try:
            if event.conversation is not None:
                await port.send(event.conversation, text_message(SORRY))
        except Exception:
            log.warning("could not tell the user about a failure")

    async def _route(self, ctx: Ctx, act: Action | None = None,
                     said: tuple[Command, str] | None = None) -> HandleResult:
        """Run the event's handler; `act` is the action an ActionEvent (the form a
        FormSubmitEvent) was found to name, `said` the command a message's text was found to
        mean."""
        event = ctx.event
        try:
            if isinstance(event, MessageEvent | CommandEvent | InstallEvent):
                for greet in self.router.greeters:
                    await greet(ctx)
            if isinstance(event, MessageEvent | CommandEvent):
                await self._text(ctx, said)
            elif isinstance(event, ActionEvent):
                if act is None:
                    raise UserError("That button is no longer active.")
                if act.roles is not None:
                    ctx.require(*act.roles)
                await act.handler(ctx)
            elif isinstance(event, FormSubmitEvent):
                form = act  # found by `_handle`
                if form is None:
                    raise UserError("That form is no longer active.")
                if form.roles is not None:
                    ctx.require(*form.roles)
                await form.handler(ctx)
            elif isinstance(event, InstallEvent):
                await ctx.reply(
                    text_message(
                        "Hello! I'm staffvoice. I'll send short pulse questions, updates from the "
                        "change team, and you can give anonymous feedback any time. Type “help”."
                    )
                )
            elif isinstance(event, HomeOpenedEvent):
                pass  # adapters ask `home()` themselves
            return HandleResult()
        except UserError as e:
            if isinstance(event, FormSubmitEvent) and event.conversation is None:
                # A modal: show the problem in the form itself, and forget the submission so
                # it can be sent again: a joined form's admission is rolled back first (left
                # open, it would be committed by `settle`, and on SQLite `_forget` would wait
                # on its write lock).
                await ctx.abandon()
                await self._forget(self.event_key(event.event_id))
                return HandleResult(form_errors={"_": str(e)})
            await ctx.reply(text_message(str(e)))
            return HandleResult(error="user")

    async def _text(self, ctx: Ctx, found: tuple[Command, str] | None) -> None:
        # Words after a command everyone may use that takes none ("Help me, my stepdad hits
        # me") were thrown away: they are read as if typed alone first. A role's commands are
        # left alone, and "feedback …" opens the form, whose intro shows the routes (N52).
        if found is None or (found[1] and not found[0].usage and found[0].roles is None
                             and not found[0].traceless):
            typed = getattr(ctx.event, "text", "") or ""
            for fallback in self.router.fallbacks:
                if await fallback(ctx, typed):
                    return
        if found is None:
            await ctx.reply(text_message(UNKNOWN))
            return
        cmd, args = found
        if cmd.roles is not None:
            ctx.require(*cmd.roles)
        if cmd.private and shared(ctx.event):
            await self._privately(ctx, cmd, args)
            return
        await cmd.handler(ctx, args)

    async def _privately(self, ctx: Ctx, cmd: Command, args: str) -> None:
        """A personal command asked in a shared conversation: the answer goes to the person's
        DM, and the conversation hears only that it did."""
        event = ctx.event
        try:
            dm = await ctx.port.open_dm(event.user)
        except PlatformError:
            await ctx.reply(text_message(NO_DM))
            return
        await self.say_shared(ctx.port, event, PRIVATELY)
        ctx.event = replace(event, conversation=dm)
        await cmd.handler(ctx, args)

    async def say_shared(self, port: Port, event: Event, text: str) -> None:
        """A short line where the event happened (a channel thread, a group chat)."""
        if event.conversation is None:
            return
        try:
            await port.send(event.conversation, text_message(text))
        except PlatformError:
            log.info("could not say in the shared conversation that the answer went privately")

    async def home(self, ctx: Ctx) -> list[Any]:
        """Blocks for a person's home surface, from every feature that adds one."""
        blocks: list[Any] = []
        for section in self.router.home:
            blocks.extend(await section(ctx))
        return blocks

    async def context_for(self, event: Event, port: Port) -> Ctx:
        """A context for an account, as admission finds it (`_sender_of`: held links and
        time zones included); an account neither stored nor held is linked by holding the
        link for the flusher, as admission does, never written at once (N21)."""
        hold = held(self)
        try:
            async with self.db.transaction() as conn:
                person, roles, *_ = await self._sender_of(conn, event.user)
        except people.MustEnrol:
            await self._enrol(event.user)
            return await self.context_for(event, port)
        if person.id in hold.tz:
            person.tz = hold.tz[person.id]
        return Ctx(self, event, port, person, roles)

    async def _forget(self, key: str) -> None:
        try:
            async with self.db.transaction() as conn:
                await conn.execute(_UNSEE, {"event_id": key})
        except Exception:
            log.warning("could not release event id after a failure")

    async def prune_events(self, keep: timedelta = EVENT_RETRIES) -> None:
        """Forget event ids once no retry of them can arrive (kept by day: today and yesterday)."""
        async with self.db.session() as s:
            await s.execute(delete(ProcessedEvent).where(
                ProcessedEvent.seen_at < day_of(self.clock.now() - keep)))

    # -- outbound --------------------------------------------------------------------

    async def dm(
        self, person_id: str, message: Message, *, prefer: UserRef | None = None,
        route: dict[str, Any] | None = None, quiet: bool = False, key: str | None = None,
        in_doubt: bool = False,
    ) -> MessageRef | None:
        """DM a person on a platform they are reachable on; None if they are not.

        `route`: `prefer`'s stored DM conversation, already read: tried first, no lookup.
        `quiet`: write nothing about the person (no account found, DM stored or marked
        unreachable), for a DM whose moment would link them to something anonymous: a row of
        theirs changed right after a reply's commit names the author of the item replied to.

        A platform that refuses the app itself (AppNotAuthorised: uninstalled, token revoked)
        says nothing about the person: their other accounts are tried, and it is raised only
        when no account took the message, so the caller knows the app is refused, not the
        person (a safeguarding alert then waits for the reinstall, uncounted).

        `key`: the message's own key, sent with it on a platform that can be asked about it
        later (`send_keyed`/`find_sent`, Slack: message metadata); `in_doubt`, for a message
        tried again after a failure whose outcome is unknown (a timeout: the platform may
        have posted it): the platform is asked first and the copy that landed is returned
        instead of posting it again. Asked only then: Slack allows a distributed app one
        history read a minute. Not for `route`'s fast path.

        The fast path fails as the others do: a 429 is waited out on the same platform
        (`DM_RATE`: Retry-After, bounded), then RateLimited is raised, the person's other
        accounts untried (a rate limit is not the person's); a 5xx or a timeout moves on to
        their other accounts, and is raised when none took the message."""
        since = time.monotonic()  # one budget for the 429 waits of the whole call
        refused: AppNotAuthorised | None = None
        gone: set[tuple[str, str]] = set()  # (platform, workspace) that refused the app
        # A platform failing now (an outage, a timeout): the person's other accounts are tried,
        # and it is raised only when none took the message (a safeguarding alert must not
        # wait for one platform's outage when the lead is on another that works).
        failing: TransientError | None = None
        # An account whose send failed in transit (a 5xx, a timeout): not sent to again in
        # this call (it may have landed); the caller tries again later.
        tried: set[tuple[str, str, str]] = set()
        if route is not None and prefer is not None and prefer.platform in self.ports:
            fast, conv = self.ports[prefer.platform], people.conversation_from_json(route)
            try:
                return await rate_waited(since, fast.send, conv, message)
            except Unreachable as e:
                await self.mark_unreachable(
                    Identity(platform=prefer.platform, workspace=prefer.workspace,
                             user_id=prefer.user_id), str(e))
            except AppNotAuthorised as e:
                refused = e
                gone.add((prefer.platform, prefer.workspace))
            except TransientError as e:  # as the accounts below: the others are tried
                failing = e
                tried.add((prefer.platform, prefer.workspace, prefer.user_id))
        async with self.db.session() as s:
            idents = await self.reachable_identities(s, person_id)
        discovered = False
        if not idents and not quiet:
            idents, asked = await self._discover(person_id)
            discovered, refused = True, refused or asked
        while True:
            if prefer is not None:
                idents.sort(key=lambda i: (i.platform, i.user_id) != (prefer.platform, prefer.user_id))
            for ident in idents:
                if ((ident.platform, ident.workspace) in gone
                        or (ident.platform, ident.workspace, ident.user_id) in tried):
                    continue
                port = self.ports[ident.platform]
                try:
                    if ident.dm:
                        conv = people.conversation_from_json(ident.dm)
                    else:
                        user = UserRef(ident.platform, ident.workspace, ident.user_id)
                        conv = await rate_waited(since, port.open_dm, user,
                                                 remember=not quiet)
                        if not quiet:
                            await self._store_dm(ident, conv)
                    if key is not None and hasattr(port, "send_keyed"):
                        return await _send_keyed(port, conv, message, key, in_doubt, since)
                    return await rate_waited(since, port.send, conv, message)
                except Unreachable as e:
                    if not quiet:
                        await self.mark_unreachable(ident, str(e))
                except AppNotAuthorised as e:
                    refused = e
                    gone.add((ident.platform, ident.workspace))
                except TransientError as e:
                    failing = e
                    tried.add((ident.platform, ident.workspace, ident.user_id))
                # RateLimited (longer than DM_RATE waits) is raised as it is: a rate limit
                # says nothing about the person, so their other accounts are not tried (the
                # DM would go on Teams, then on Slack too when the caller tries again).
            if refused is None or quiet or discovered:
                break
            # Every account stored is on a platform that refuses the app: the person may be
            # found on one that works (a council that moved from Slack to Teams), once.
            idents, _asked = await self._discover(person_id)
            discovered = True
        if refused is not None:
            raise refused
        if failing is not None:
            raise failing
        return None

    async def discover(self, person_id: str) -> list[Identity]:
        """Find a person on the connected platforms by email (first contact) and store the
        accounts found. No transaction is open while the platforms are asked; if a concurrent
        discovery stored the same account first, the stored identities are returned.

        AppNotAuthorised when nobody was found and a platform refused the app (it could not
        be asked): the person is not missing, the app is; the caller waits for the reinstall."""
        idents, refused = await self._discover(person_id)
        if not idents and refused is not None:
            raise refused
        return idents

    async def _discover(self, person_id: str) -> tuple[list[Identity], AppNotAuthorised | None]:
        """`discover`, with the refusal of a platform that could not be asked (if any)."""
        async with self.db.session() as s:
            person = await s.get(Person, person_id)
            if person is None or not person.email:
                return [], None
            email = person.email
            known = {(i.platform, i.workspace, i.user_id) for i in held(self).identities(
                person_id, await people.identities_of(s, person_id))}
        found: list[UserRef] = []
        refused: AppNotAuthorised | None = None
        for port in self.ports.values():
            finder = getattr(port, "find_user", None)
            if finder is None:
                continue
            try:
                user = await finder(email)
            except AppNotAuthorised as e:
                log.warning("user lookup refused: the platform refuses the app",
                            extra={"platform": port.platform})
                refused = e
                continue
            except Exception:
                log.warning("user lookup failed", extra={"platform": port.platform})
                continue
            if user is not None and (user.platform, user.workspace, user.user_id) not in known:
                found.append(user)
        if not found:
            return [], refused
        idents = [Identity(platform=u.platform, workspace=u.workspace, user_id=u.user_id,
                           person_id=person_id) for u in found]
        try:
            async with self.db.session() as s:
                s.add_all(idents)
        except IntegrityError:
            async with self.db.session() as s:
                return await self.reachable_identities(s, person_id), refused
        return idents, refused

    async def reachable_identities(self, s: AsyncSession, person_id: str) -> list[Identity]:
        """A person's accounts that can be messaged now: reachable, on a connected platform.
        This process's held links and routes count (bot/people/held.py); the objects are new,
        in no session."""
        stored = await people.identities_of(s, person_id)
        return [i for i in held(self).identities(person_id, stored)
                if i.reachable and i.platform in self.ports]

    async def send(self, conv: ConversationRef, message: Message) -> MessageRef:
        """Post to a conversation (a channel) on its platform."""
        port = self.ports.get(conv.platform)
        if port is None:
            raise Unreachable(f"the {conv.platform} adapter is not running")
        return await port.send(conv, message)

    async def post_channel(self, ref: str, message: Message) -> MessageRef | None:
        """Post to a channel named in the programme file; None if its platform is off."""
        from bot.channels import parse_channel

        conv = parse_channel(ref)
        if conv.platform not in self.ports:
            # Said once per channel, not on every tick that retries it. Console channels
            # (the example programme's) only exist inside `staffvoice chat`: not a problem.
            if ref not in self._unconnected:
                self._unconnected.add(ref)
                level = logging.INFO if conv.platform == "console" else logging.WARNING
                log.log(level, "channel platform not connected; nothing is posted there",
                        extra={"platform": conv.platform})
            return None
        return await self.send(conv, message)

    async def update(self, ref: MessageRef, message: Message) -> None:
        await self.ports[ref.conversation.platform].update(ref, message)

    async def _store_dm(self, ident: Identity, conv: ConversationRef) -> None:
        hold, account = held(self), (ident.platform, ident.workspace, ident.user_id)
        if account in hold.links or account in hold.routes:
            hold.route(account, people.conversation_to_json(conv))  # written with its link
            return
        async with self.db.session() as s:
            row = await s.get(Identity, (ident.platform, ident.workspace, ident.user_id))
            if row is not None:
                row.dm = people.conversation_to_json(conv)
                row.updated_at = day_of(self.clock.now())

    async def mark_unreachable(self, ident: Identity, reason: str) -> None:
        log.info("identity unreachable", extra={"platform": ident.platform})
        hold, account = held(self), (ident.platform, ident.workspace, ident.user_id)
        if account in hold.links or account in hold.routes:
            hold.unreachable(account, reason)  # written so by the flush
        async with self.db.session() as s:
            row = await s.get(Identity, (ident.platform, ident.workspace, ident.user_id))
            if row is not None:
                row.reachable = False
                row.unreachable_reason = reason[:200] or "unreachable"

    # -- scheduled work --------------------------------------------------------------

    async def tick(self, now: datetime | None = None) -> dict[str, int]:
        """Run every feature's due work once; returns how much each did."""
        if not self.secret:
            await self.start()
        when = now or self.clock.now()
        done: dict[str, int] = {}
        # Accounts this process linked and routes it learnt, stored before a round or a
        # broadcast reads them (bot/people/held.py).
        try:
            await background.turn()
            await flush_held(self)
        except Exception:
            log.exception("held account links not written before the scheduled work")
        for name, fn in self.router.tickers.items():
            # Each job in its own turn, behind the requests that arrived (bot/background.py).
            await background.turn()
            try:
                done[name] = await fn(self, when)
            except Exception:
                log.exception("scheduled job failed", extra={"job": name})
                done[name] = -1
        return done


def feature_modules() -> list[str]:
    """Every `bot.<package>.feature` module, found on disk so features plug in alone."""
    names = []
    for info in pkgutil.iter_modules(bot.__path__):
        if info.ispkg:
            name = f"bot.{info.name}.feature"
            try:
                importlib.import_module(name)
            except ModuleNotFoundError as e:
                if e.name != name:
                    raise
                continue
            names.append(name)
    return sorted(names)


def build_router() -> Router:
    router = Router()
    for name in feature_modules():
        importlib.import_module(name).register(router)
    return router


def clean_text(value: object) -> str:
    """A str the database and platforms accept: non-strings become "", lone surrogates "\ufffd"."""
    if not isinstance(value, str):
        return ""
    value = value.replace("\x00", "\ufffd")  # PostgreSQL text cannot hold NUL
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:  # JSON may carry "\ud800"; UTF-8 (and so every driver) cannot
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def clean_event(event: Event) -> Event:
    """The user-supplied fields of an inbound event as plain, encodable strings."""
    changes: dict[str, Any] = {}
    for name in ("event_id", "text", "value", "metadata", "action_id", "form_id"):
        if hasattr(event, name):
            changes[name] = clean_text(getattr(event, name))
    if isinstance(event, FormSubmitEvent):
        values = event.values if isinstance(event.values, dict) else {}
        changes["values"] = {clean_text(k): clean_text(v) for k, v in values.items()}
    u = event.user
    user = replace(u, user_id=clean_text(u.user_id), workspace=clean_text(u.workspace),
                   email=clean_text(u.email) or None, display_name=clean_text(u.display_name) or None)
    if user != u:
        changes["user"] = user
    changes = {k: v for k, v in changes.items() if v is not getattr(event, k)}
    return replace(event, **changes) if changes else event


_SEEN = insert(ProcessedEvent.__table__)  # type: ignore[arg-type]
_SEEN_RUN = Prepared(_SEEN)  # on the DB-API cursor: every event runs it (storage/prepared.py)
_UNSEE = delete(ProcessedEvent.__table__).where(  # type: ignore[arg-type]
    ProcessedEvent.__table__.c.event_id == bindparam("event_id"))


def _dm_of(event: Event) -> dict[str, Any] | None:
    """The event's conversation as a DM route to remember, if it is a direct one."""
    conv = event.conversation
    if conv is None or not conv.is_direct or conv.thread_id:
        return None
    return people.conversation_to_json(conv)


def day_of(when: datetime) -> datetime:
    """Midnight of `when`'s day: as precise as a time stored next to a person may be."""
    return when.replace(hour=0, minute=0, second=0, microsecond=0)


def shared(event: Event) -> bool:
    """The event happened where others can read (a channel, a group chat), not in a DM."""
    return event.conversation is not None and not event.conversation.is_direct


def new_event_id(prefix: str = "ev") -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


async def _send_keyed(port: Any, conv: ConversationRef, message: Message, key: str,
                      in_doubt: bool, since: float) -> MessageRef:
    """`message` carrying `key`; `in_doubt`, the platform is asked first whether a message
    carrying `key` landed (a send whose answer was lost) and that one is returned. A
    platform that cannot be asked (no history scope) gets the send: a copy too many, never
    none."""
    if in_doubt:
        try:
            found: MessageRef | None = await port.find_sent(conv, key)
        except (Unreachable, RateLimited, TransientError):
            raise
        except PlatformError:
            found = None
        if found is not None:
            return found
    sent: MessageRef = await rate_waited(since, port.send_keyed, conv, message, key)
    return sent


def _waited(e: BaseException, wait: float) -> None:
    log.info("message to a person rate limited; waiting its turn", extra={"delay_s": round(wait, 3)})
