"""Bolt wiring: listeners ack first, then hand the neutral event to the core in a background task.

`process_before_response=True` makes Bolt answer as soon as a listener returns, instead of
polling for the ack every 10 ms; the slow part runs in our own task. The exception is
view_submission: its field errors must travel in the ack, so the core runs before it (bounded).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.error import BoltUnhandledRequestError
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings

from adapters.slack import events, render
from adapters.slack.config import BOT_SCOPES, SlackConfig
from adapters.slack.forms import PendingForms
from adapters.slack.installations import DatabaseInstallationStore, DatabaseStateStore, Sealer
from adapters.slack.port import (
    PLATFORM,
    AppNotAuthorised,
    Directory,
    PlatformError,
    Reply,
    SlackPort,
    Unreachable,
    Workspaces,
)
from bot import background
from bot.channels import parse_channel
from bot.core import SORRY, Core, HandleResult
from bot.errors import UserError
from bot.model import Event, Form, Text, UserRef, text_message
from bot.people import reach
from bot.programme.core_sections import get_setting

log = logging.getLogger("staffvoice.slack")

# Events handled at once after their ack; the rest wait their turn (see SlackAdapter.queue).
BACKGROUND_AT_ONCE = 8
# At most this much work queued after acks: past it, the events endpoint defers what would
# queue more (503, and Slack delivers an event again) rather than ack work that would be done
# seconds later and hold memory while it waits (5 ms or more of CPU a piece: 5 s of work).
QUEUE_MAX = 1000
# The Home tab and a member's deactivation queue behind the events acked before them, as
# messages do; before, each started at once and overtook them. False: as before (LOAD_HOOK).
ALL_QUEUED = True

# What a queued piece of work may leave to do once it has given up its place in the queue
# (a Slack call that may wait out a 429: SlackAdapter._publish_home), or None.
Then = Callable[[], Awaitable[None]] | None

ANY = re.compile(r".+")
# view_submission must be answered inside Slack's 3 s; past this the modal closes and the
# core's answer (or its errors) arrives by DM instead.
SUBMIT_BUDGET_S = 2.2
EXPIRED_FORM = "That form has expired. Please ask for it again."
# A submission answered after its ack: the modal says so until the answer replaces it.
WAITING = "One moment, please: this is still being saved. Keep this window open."
DONE = "Done. You can close this window."
LATE_RETRIES_S = (0.25, 0.5, 1.0, 2.0)
LATE_ERRORS = "Nothing was sent: {} Open the form again to try once more."


def _title_of(body: Mapping[str, Any], default: str) -> str:
    """The title of the modal a submission came from."""
    return str(((body.get("view") or {}).get("title") or {}).get("text") or "") or default


def _notice(title: str, text: str) -> Form:
    """A screen that only says something (no inputs, nothing to press but Close)."""
    return Form(form_id="slack.late", title=title[:24], inputs=(), intro=(Text(text),),
                submit_label="", close_label="Close")


class _TokenUnusedFilter(logging.Filter):
    """Drop Bolt's start-up warning that `token` is unused.

    Bolt reads SLACK_BOT_TOKEN from the environment by itself and warns when a `client` is
    given too; ours carries that same token (plus our base URL and back-off), so the warning
    at every start says nothing an operator can act on.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


# Bolt's own logger. Bolt builds a debug line for every global middleware of every request
# ("Applying ...") whenever its logger's *own* level is unset or DEBUG, and logging then drops
# it (bot.logs keeps "slack_bolt" at WARNING): set here, as slack_sdk's is in port.py.
# Bolt also copies this logger's level, handlers and filters, on every request, onto the
# logger named after the app (and "app:listener" ones): the app is therefore named after
# this logger too. Named "staffvoice", it made our own "staffvoice" logger, parent of every
# staffvoice.* one, WARNING after the first Slack request (tests/slack/test_logging.py).
BOLT_LOG = logging.getLogger("slack_bolt.staffvoice")
BOLT_LOG.addFilter(_TokenUnusedFilter())
BOLT_LOG.setLevel(logging.WARNING)


class SlackAdapter:
    """One Slack app (Bolt AsyncApp) bound to the core, with its port and background tasks."""

    def __init__(self, core: Core, cfg: SlackConfig) -> None:
        self.core = core
        self.cfg = cfg
        store = None
        if cfg.oauth:
            store = DatabaseInstallationStore(core.db, Sealer(self._secret))
        self.store = store
        self.workspaces = Workspaces(cfg, store)
        self.directory = Directory(self.workspaces)
        forms = PendingForms(core.db, Sealer(self._secret))
        self.port = SlackPort(self.workspaces, self.directory, forms)
        self.tasks: set[asyncio.Task[None]] = set()
        self._working = asyncio.Semaphore(BACKGROUND_AT_ONCE)
        self.queued = 0  # pieces of work queued after their acks and not finished
        self.working = 0  # of those, the pieces that have their slot (started)
        # Each person's latest queued piece: their next waits for it to end (SlackAdapter.queue).
        self._lanes: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._other_commands: set[str] = set()
        # When the core last got an answer from the database for one of our events (see
        # database_answered): the events endpoint need not ping it again so soon after.
        self._db_answered = -math.inf
        self.bolt = self._build()

    async def _secret(self) -> bytes:
        if not self.core.secret:
            await self.core.start()
        return self.core.secret

    # -- Bolt app ---------------------------------------------------------------------

    def _build(self) -> AsyncApp:
        cfg = self.cfg
        kwargs: dict[str, Any] = {}
        if cfg.oauth:
            assert self.store is not None
            kwargs["oauth_flow"] = AsyncOAuthFlow(
                client=self.workspaces.base_client(),
                settings=AsyncOAuthSettings(
                    client_id=cfg.client_id,
                    client_secret=cfg.client_secret,
                    scopes=list(BOT_SCOPES),
                    authorization_url=cfg.authorization_url,
                    installation_store=self.store,
                    installation_store_bot_only=True,
                    state_store=DatabaseStateStore(self.core.db),
                ),
            )
            kwargs["installation_store_bot_only"] = True
        # Bolt's per-request clients copy this one: the configured base URL and retry handlers.
        kwargs["client"] = self.workspaces.base_client(cfg.bot_token or None)
        app = AsyncApp(
            name=BOLT_LOG.name,
            signing_secret=cfg.signing_secret,
            process_before_response=True,
            raise_error_for_unhandled_request=True,
            # /slack/events checks the signature before Bolt sees a request (EventsEndpoint,
            # 401 otherwise), and Socket Mode requests carry none: checking again is waste.
            request_verification_enabled=False,
            logger=BOLT_LOG,
            **kwargs,
        )
        # Bolt tries listeners in the order they were added, and each one it tries costs
        # about half a SQL statement's CPU (it builds every injectable argument for the
        # matcher): the most frequent requests come first, a tap (pulse answers), a DM, a
        # form. Each payload type matches one listener only, so the order changes nothing
        # else. A tap used to be tried against seven listeners before its own, a form nine.
        app.action(ANY)(self.on_action)
        app.event("message")(self.on_message)
        app.view_submission(ANY)(self.on_submit)
        app.event("app_mention")(self.on_mention)
        app.event("app_home_opened")(self.on_home)
        # Any command name: the manifest's and SLACK_COMMAND can drift apart (see on_command).
        app.command(ANY)(self.on_command)
        app.shortcut(ANY)(self.on_shortcut)
        app.view_closed(ANY)(self.on_view_closed)
        app.event("app_uninstalled")(self.on_uninstalled)
        app.event("tokens_revoked")(self.on_uninstalled)
        app.event("user_change")(self.on_user_change)
        app.error(self.on_error)
        return app

    async def start(self) -> None:
        await self.workspaces.start()
        # Bolt's per-request clients copy the app client's session: share ours.
        self.bolt.client.session = self.workspaces.session  # type: ignore[misc]
        self.spawn(self._check_setup())

    async def _check_setup(self) -> None:
        """Say at start, one line each, what will stop Slack from working: a refused bot
        token, and programme channels the bot was not invited to (Slack answers
        `not_in_channel` until someone invites the app)."""
        problem = await self.credentials_problem()
        if problem:
            log.error("slack credentials: %s", problem)
            return
        for problem in await self.channel_problems():
            log.warning("slack channel: %s", problem)

    async def credentials_problem(self) -> str | None:
        """Why Slack refuses the bot token (auth.test), or None; OAuth installs are per workspace."""
        if not self.cfg.bot_token:
            return None
        try:
            await self.workspaces.teams()  # auth.test
        except (Unreachable, AppNotAuthorised) as e:  # invalid_auth, token_revoked, ...
            said = e.code if isinstance(e, AppNotAuthorised) and e.code else str(e)
            return (f"Slack refused SLACK_BOT_TOKEN ({said}). Copy the Bot User OAuth Token "
                    "(xoxb-...) from your app's OAuth & Permissions page into SLACK_BOT_TOKEN; if "
                    "the app was uninstalled or the token revoked, reinstall it first.")
        except PlatformError as e:
            return f"could not reach Slack at {self.cfg.api_url} to check the bot token ({e})."
        return None

    async def channel_problems(self) -> list[str]:
        """One line per programme channel on Slack that staffvoice cannot post in."""
        try:
            async with self.core.db.session() as s:
                prog = await get_setting(s, "programme", {}) or {}
        except Exception:
            return []  # no database yet: `serve` reports that itself
        out = []
        for name, ref in sorted((prog.get("channels") or {}).items()):
            if not isinstance(ref, str) or not ref.startswith(PLATFORM + ":"):
                continue
            try:
                conv = parse_channel(ref)
            except UserError:
                continue
            problem = await self.port.channel_problem(conv)
            if problem:
                out.append(f"programme.channels.{name}: {problem}")
        return out

    async def close(self, within: float | None = None) -> None:
        """Finish the background work (at most `within` seconds: serve's shutdown grace
        left), then close the HTTP session."""
        await self.drain(within)
        await self.workspaces.close()

    # -- background work --------------------------------------------------------------

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("slack background work failed", extra={"error": type(exc).__name__})

    async def drain(self, within: float | None = None) -> None:
        """Wait until every piece of background work has finished (tests, shutdown), or
        for `within` seconds at most: what is left then is cancelled, and counted in the log.

        At shutdown, a piece stuck on Slack (a long Retry-After) or on a hung database kept
        SIGTERM from finishing until the orchestrator's SIGKILL, which lost what the
        flushers write last (docs/invariants.md N4, N21, N25), for everyone."""
        loop = asyncio.get_running_loop()
        by = None if within is None else loop.time() + within
        while self.tasks:
            left = None if by is None else by - loop.time()
            if left is not None and left <= 0:
                await self._drop_unfinished()
                return
            await asyncio.wait(list(self.tasks), timeout=left)

    async def _drop_unfinished(self) -> None:
        # Acked, so Slack will not send them again: the operator is told how many were lost.
        log.warning("slack work acked but not finished at shutdown was dropped",
                    extra={"not_started": self.queued - self.working,
                           "in_progress": self.working,
                           "other": len(self.tasks) - self.queued})
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _user(self, body: Mapping[str, Any]) -> UserRef:
        return await self.directory.user(events.team_of(body), events.user_of(body))

    def database_answered(self, within_s: float) -> bool:
        """The core stored or read an event of ours at most `within_s` seconds ago: as good
        a sign that the database answers as a ping that recent (mount.EventsEndpoint)."""
        return time.monotonic() - self._db_answered < within_s

    def _handled(self, result: HandleResult, started: float) -> HandleResult:
        # Every outcome but these had the database answer (the event admitted, or found a
        # duplicate, or its sender looked up): "internal" may be the database failing, and
        # "invalid" never reached it. It answered at some time after `started`, when the
        # core began; not necessarily near the end: what follows may be a reply that waited
        # seconds on Slack (a 429) while the database went away, so the handling's end would
        # vouch for a database long gone.
        if result.error not in ("internal", "invalid"):
            self._db_answered = max(self._db_answered, started)
        return result

    def queue(self, work: Callable[[], Coroutine[Any, Any, Then]],
              person: tuple[str, str]) -> None:
        """Run `work()` after the ack, in the order queued: at most BACKGROUND_AT_ONCE at
        once, each step behind the requests that arrived (bot/background.py), and each
        only after the same person's (workspace, user id) earlier work has ended: with
        several at once, their second message or Home tab started while their first was
        still being handled, and could be drawn without it. What `work()` returns to do
        next (`Then`) runs after it gives up its place, still before the person's next."""
        self.queued += 1  # counted from the ack: a task not yet started is queued too
        task = self.spawn(self._queued(work, background.now(), self._lanes.get(person)))
        task.add_done_callback(self._dequeued)
        self._lanes[person] = task
        task.add_done_callback(lambda done: self._lane_ended(person, done))

    def _dequeued(self, _task: asyncio.Task[None]) -> None:
        self.queued -= 1

    def _lane_ended(self, person: tuple[str, str], task: asyncio.Task[None]) -> None:
        if self._lanes.get(person) is task:
            del self._lanes[person]

    def backlog_full(self) -> bool:
        """QUEUE_MAX pieces of work wait: the endpoint defers what would queue more."""
        return self.queued >= QUEUE_MAX

    async def _queued(self, work: Callable[[], Coroutine[Any, Any, Then]], since: float,
                      after: asyncio.Task[None] | None) -> None:
        if after is not None and not after.done():
            await asyncio.wait([after])  # the person's earlier work (its failure is its own)
        # A burst (a round opening, a broadcast read) queues here, so the event loop keeps
        # answering Slack's acks, which are due within 3 s, between pieces of this work.
        await self._working.acquire()
        self.working += 1
        try:
            try:
                # Behind the requests that arrived meanwhile (their acks are due now, this
                # is not), unless it has waited long enough already (background.MAX_WAIT_S).
                await background.turn(since)
                then = await work()
            finally:
                self._working.release()
            if then is not None:
                await then()
        finally:
            self.working -= 1

    async def _run(self, body: Mapping[str, Any],
                   build: Callable[[Mapping[str, Any], UserRef], Event]) -> None:
        event = build(body, await self._user(body))
        started = time.monotonic()
        # A form this asks for and cannot open in time is offered through the interaction's
        # response_url, ephemerally (SlackPort.open_form, N20).
        with self.port.answering(event.trigger, Reply.of(body)):
            self._handled(await self.core.handle(event, self.port), started)

    def later(self, body: Mapping[str, Any], build: Callable[[Mapping[str, Any], UserRef], Event]) -> None:
        self.queue(lambda: self._run(body, build), (events.team_of(body), events.user_of(body)))

    def _in_order(self, work: Callable[[], Coroutine[Any, Any, Then]],
                  person: tuple[str, str]) -> None:
        """Work that answers no message, queued with the messages (ALL_QUEUED)."""
        if ALL_QUEUED:
            self.queue(work, person)
        else:
            self.spawn(self._unqueued(work))

    @staticmethod
    async def _unqueued(work: Callable[[], Coroutine[Any, Any, Then]]) -> None:
        then = await work()
        if then is not None:
            await then()

    # -- listeners (each acks at once) -----------------------------------------------

    async def on_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        if events.is_person_message(event):
            self.later(body, events.message_event)

    async def on_mention(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        if event.get("user") and not event.get("bot_id"):
            self.later(body, events.mention_event)

    async def on_home(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        if event.get("tab") == "home":
            self._in_order(lambda: self._publish_home(body),
                           (events.team_of(body), events.user_of(body)))

    async def _publish_home(self, body: Mapping[str, Any]) -> Then:
        """The Home tab's view, drawn in the queue; its views.publish, returned to be called
        once the queue's place is given up: a 429 is waited out inline (up to
        max_inline_wait_s per try), and eight Home tabs waiting so held up everyone's
        messages (tests/slack/test_home_ratelimit.py)."""
        user = await self._user(body)
        event = events.home_event(body, user)
        result = await self.core.handle(event, self.port)
        if result.duplicate or result.error == "invalid":
            return None  # "invalid": ids no platform issues, never linked (nor held for a flush)
        if result.error == "not_enrolled":
            # Someone outside the programme: the home tab says so, with who to ask.
            view = render.notice_home_view(result.notice or "")
        else:
            ctx = await self.core.context_for(event, self.port)
            view = render.home_view(await self.core.home(ctx))
        return functools.partial(self.port.publish_home, user.workspace, user.user_id,
                                 view.to_dict())

    async def on_uninstalled(self, body: dict[str, Any]) -> None:
        team = events.team_of(body)
        self.workspaces.forget(team)
        if self.store is not None and body.get("event", {}).get("type") == "app_uninstalled":
            await self.store.async_delete_all(enterprise_id=body.get("enterprise_id"), team_id=team)

    async def on_user_change(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        """A member's data changed (https://docs.slack.dev/reference/events/user_change, scope
        users:read). `user.deleted: true`: an admin deactivated the account. Slack still takes
        posts in its open DM (python-slack-sdk #1156), so the core is told at once that it is
        unreachable; a reactivated account is reachable again. Every profile change in the
        workspace arrives here: anything else is dropped after the ack."""
        user = event.get("user")
        if not isinstance(user, dict) or not user.get("id") or user.get("is_bot"):
            return
        deleted = user.get("deleted")
        if not isinstance(deleted, bool):
            return  # some payloads leave it out (rickeyski/slack-api #102): says nothing
        team, user_id = events.team_of(body), str(user["id"])
        self._in_order(lambda: self._user_changed(team, user_id, deleted), (team, user_id))

    async def _user_changed(self, team: str, user_id: str, deleted: bool) -> None:
        if deleted:
            await reach.account_deactivated(self.core, PLATFORM, team, user_id)
        else:
            await reach.account_reactivated(self.core, PLATFORM, team, user_id)

    async def on_command(self, ack: Callable[..., Awaitable[None]], body: dict[str, Any]) -> None:
        """A slash command, answered whatever its name: the person typed what the app's
        manifest offers them. A name other than SLACK_COMMAND is logged once for the admin."""
        await ack()
        name = str(body.get("command") or "")
        if name != self.cfg.command and name not in self._other_commands:
            self._other_commands.add(name)
            log.warning("slack command %s is answered, but SLACK_COMMAND is %s: set "
                        "SLACK_COMMAND=%s (or change the manifest) so help texts name it",
                        name[:40], self.cfg.command, name[:40])
        self.later(body, events.command_event)

    async def on_action(self, ack: Callable[..., Awaitable[None]], body: dict[str, Any]) -> None:
        await ack()
        if body.get("type") != "block_actions" or not body.get("actions"):
            return
        action_id = render.neutral_action_id(str(body["actions"][0].get("action_id", "")))
        if action_id == render.LINK_ACTION:
            return  # a link button: Slack opened the URL, nothing for the core to do
        if action_id == render.FORM_ACTION:
            self.spawn(self._open_pending(body))
            return
        self.later(body, events.action_event)

    async def _open_pending(self, body: Mapping[str, Any]) -> None:
        token = events.action_value(body["actions"][0])
        team = events.team_of(body)
        try:
            opened = await self.port.open_pending(team, token, str(body.get("trigger_id", "")))
        except PlatformError:
            opened = False
        if not opened:
            # Said to the person alone and not kept, as the button itself may have been
            # (SlackPort.offer): a message in the DM would date this tap (N20).
            user = await self._user(body)
            await self.port.offer(user, text_message(EXPIRED_FORM), Reply.of(body))

    async def on_shortcut(self, ack: Callable[..., Awaitable[None]], body: dict[str, Any]) -> None:
        await ack()
        self.later(body, events.shortcut_event)

    async def on_submit(self, ack: Callable[..., Awaitable[None]], body: dict[str, Any]) -> None:
        """Run the core before acking so field errors can be shown in the modal."""
        event = events.submit_event(body, await self._user(body))
        self.port.await_ack(event.event_id)
        started = time.monotonic()
        work = asyncio.ensure_future(self.core.handle(event, self.port))
        try:
            result = self._handled(await asyncio.wait_for(asyncio.shield(work), SUBMIT_BUDGET_S),
                                   started)
        except TimeoutError:
            # Too slow for the ack: the modal shows "one moment" and stays open while the core
            # finishes in the background; what it shows next (a "Before you send", the thanks)
            # replaces it by views.update, never by a button or a message in the person's DM,
            # where Slack would keep, by name and time, that they had just sent something
            # (and, for "Before you send", that it looked like a safeguarding concern: N20).
            title = _title_of(body, "Please wait")
            waiting = render.modal(_notice(title, WAITING)).to_dict()
            # Named by us, so the late answer finds it only once Slack shows it (no race).
            waiting["external_id"] = f"sv-late-{secrets.token_urlsafe(16)}"
            self.spawn(self._finish_late(work, event, waiting["external_id"], title))
            await ack(response_action="update", view=waiting)
            return
        except BaseException:
            self.port.ack_view(event.event_id)
            raise
        follow_up = self.port.ack_view(event.event_id)
        if result.form_errors:
            await ack(response_action="errors",
                      errors=render.modal_errors(result.form_errors, body["view"]))
        elif follow_up is not None:
            # The next screen (e.g. "Before you send") replaces this one in the ack.
            await ack(response_action="update", view=render.modal_dict(follow_up))
        elif result.error == "internal":
            # Nothing was saved, and a modal has no conversation for the core to say so in.
            title = _title_of(body, "Sorry")
            await ack(response_action="update", view=render.modal_dict(_notice(title, SORRY)))
        else:
            await ack()

    async def _finish_late(self, work: asyncio.Future[Any], event: Event, external_id: str,
                           title: str) -> None:
        """The late answer to a submission, in its modal (kept open by the ack's "one moment"),
        tried a few times: Slack may not show the ack's view yet, or the person closed it."""
        try:
            result = await work
        except Exception:
            log.exception("slack late submission failed")
            result = HandleResult(handled=False, error="internal")
        finally:
            follow_up = self.port.ack_view(event.event_id)
        if result.form_errors:
            follow_up = _notice(title, LATE_ERRORS.format(" ".join(result.form_errors.values())))
        elif follow_up is None and result.error == "internal":
            follow_up = _notice(title, SORRY)  # nothing was saved: never "Done"
        for wait in (0.0, *LATE_RETRIES_S):
            await asyncio.sleep(wait)
            if await self.port.update_view(event.user.workspace, external_id,
                                           follow_up or _notice(title, DONE)):
                return
        log.info("slack late answer not shown: its modal had closed")

    async def on_view_closed(self, ack: Callable[..., Awaitable[None]]) -> None:
        await ack()

    async def on_error(self, error: Exception, body: Any, response: Any) -> None:
        """Bolt's error hook: log the kind of failure, never the payload (it may hold personal text)."""
        kind = body.get("type") if isinstance(body, dict) else None
        if isinstance(error, BoltUnhandledRequestError):
            log.info("slack request not handled", extra={"payload_type": str(kind)})
            return
        log.error("slack listener failed: %s", type(error).__name__,
                  extra={"payload_type": str(kind), "error": type(error).__name__})
