"""Feedback: themes and statuses, each item and its thread, reply, change status, and publish
"you said, we did" (bot/feedback/service.py, as in chat).

Readers are those chat lets read feedback (the change team and safeguarding leads); only the
change team publishes. A reply's page says the same whether or not the author could be reached:
reachability would narrow who they are.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.errors import UserError
from bot.feedback import release
from bot.feedback import service as fb
from bot.roles import CHANGE_TEAM, SAFEGUARDING_LEAD
from staffvoice.web.dashboard import action, may, page
from staffvoice.web.site import CORE, SESSION, render

READERS = frozenset({CHANGE_TEAM, SAFEGUARDING_LEAD})
PUBLISHERS = frozenset({CHANGE_TEAM})
MAX_REPLY = 3000
MAX_TITLE = 150
NOTICES = {
    "replied": "Reply saved. The author is told there is an answer when the app can reach them.",
    "status": "Status changed.",
    "published": "Published to staff and to the authors who allowed replies; the items are marked done.",
}
STATUS_LABELS = {"new": "New", "read": "Read", "in_progress": "In progress", "done": "Done",
                 "closed": "Closed", "spam": "Spam"}
# Whose feedback a page shows: staff (in chat: `feedback list`), or the public pages' (in chat:
# `feedback list families`), each with its own counts.
SOURCES: dict[str, tuple[str, ...]] = {"staff": (fb.STAFF,), "families": fb.PUBLIC_SOURCES}
SOURCE_LABELS = {"staff": "Staff", "families": "Children and families"}


async def _page(request: web.Request, *, status: int = 200, errors: dict[str, str] | None = None,
                entered: dict[str, str] | None = None) -> web.Response:
    core = request.app[CORE]
    theme_id = request.query.get("theme", "")
    wanted = request.query.get("status", "open")
    source = request.query.get("source", "staff")
    if source not in SOURCES:
        raise web.HTTPNotFound()
    statuses = fb.OPEN if wanted == "open" else fb.STATUSES if wanted == "all" else (wanted,)
    if wanted not in ("open", "all") and wanted not in fb.STATUSES:
        raise web.HTTPNotFound()
    await release.release_due(core)  # items are readable from their release (N22)
    async with core.db.session() as s:
        themes = await fb.themes(s)
        when = release.describe((await fb.config(s)).release_times)
        if theme_id and theme_id not in {t.id for t in themes}:
            raise web.HTTPNotFound()
        counts = await fb.theme_counts(s, SOURCES[source])
        items = await fb.list_items(s, theme_id=theme_id or None, statuses=statuses, limit=50,
                                   sources=SOURCES[source])
        threads = await fb.threads_of(s, [i.id for i in items])
        replyable = await fb.with_handles(s, [i.id for i in items])
    names = {t.id: t.name for t in themes}
    table = [{"id": t.id, "name": t.name, "counts": [counts.get((t.id, st), 0) for st in fb.STATUSES]}
             for t in themes]
    other = [counts.get((None, st), 0) for st in fb.STATUSES]
    if any(other):
        table.append({"id": "", "name": "No theme", "counts": other})
    return render(request, "feedback.html", status=status, title="Feedback", themes=themes,
                  names=names, table=table, statuses=fb.STATUSES, labels=STATUS_LABELS,
                  items=items, threads=threads, replyable=replyable, theme_id=theme_id,
                  wanted=wanted, source=source, sources=SOURCE_LABELS,
                  source_of=fb.SOURCE_LABELS, ref=fb.ref_of, may_publish=may(request, *PUBLISHERS),
                  notice=NOTICES.get(request.query.get("done", ""), ""),
                  errors=errors or {}, entered=entered or {}, release_times=when)


@page("feedback", "/feedback", "Feedback", READERS)
async def feedback(request: web.Request) -> web.StreamResponse:
    return await _page(request)


def _back(request: web.Request, done: str, form: Any) -> web.HTTPSeeOther:
    """Post/redirect/get, keeping the list's filter (theme and status ids only)."""
    from urllib.parse import urlencode

    q = {k: str(form.get(k)) for k in ("theme", "status") if form.get(k)}
    return web.HTTPSeeOther("/app/feedback?" + urlencode({**q, "done": done}))


@action("feedback reply", "/feedback/reply", READERS)
async def reply(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    item_id, text = str(form.get("item", "")), str(form.get("text", "")).strip()
    error = ("Write a reply. Nothing was sent." if not text else
             f"That is {len(text):,} characters; the limit is {MAX_REPLY:,}." if len(text) > MAX_REPLY else "")
    if not error:
        session = request[SESSION]
        assert session is not None
        try:
            # A lead's reply to an item whose author's urgent answer waits waits with it (N37).
            await fb.reply(request.app[CORE], item_id, session.person_id, text,
                           lead=SAFEGUARDING_LEAD in session.roles)
        except UserError as e:
            error = str(e)
    if error:
        return await _page(request, status=400, errors={f"reply-{item_id}": error},
                           entered={f"reply-{item_id}": text})
    raise _back(request, "replied", form)


@action("feedback status", "/feedback/status", READERS)
async def set_status(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    item_id, status = str(form.get("item", "")), str(form.get("new_status", ""))
    async with request.app[CORE].db.session() as s:
        from bot.feedback.tables import FeedbackItem

        item = await s.get(FeedbackItem, item_id)
        if item is None or not item.released:
            raise web.HTTPNotFound()
        try:
            session = request[SESSION]
            await fb.set_status(s, item, status,
                                lead=session is not None and SAFEGUARDING_LEAD in session.roles)
        except UserError as e:
            return await _page(request, status=400, errors={f"status-{item_id}": str(e)})
        await s.commit()
    raise _back(request, "status", form)


@action("feedback publish", "/feedback/publish", PUBLISHERS)
async def publish(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    theme = str(form.get("publish_theme", ""))
    title, text = str(form.get("title", "")).strip(), str(form.get("text", "")).strip()
    errors = {}
    if not title:
        errors[f"title-{theme}"] = "Give a headline."
    elif len(title) > MAX_TITLE:
        errors[f"title-{theme}"] = f"The headline can be up to {MAX_TITLE} characters."
    if not text:
        errors[f"text-{theme}"] = "Say what was done."
    elif len(text) > MAX_REPLY:
        errors[f"text-{theme}"] = f"What was done can be up to {MAX_REPLY:,} characters."
    if not errors:
        session = request[SESSION]
        assert session is not None
        try:
            await fb.publish(request.app[CORE], session.person_id, theme_id=theme, title=title, text=text)
        except UserError as e:
            errors[f"title-{theme}"] = str(e)
    if errors:
        return await _page(request, status=400, errors=errors,
                           entered={f"title-{theme}": title, f"text-{theme}": text})
    raise _back(request, "published", form)
