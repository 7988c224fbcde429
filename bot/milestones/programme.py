"""The `milestones:` and `early_wins:` sections of the programme file.

Loading is a three-way merge: a field is taken from the file only when the file changed it
since the last load (or the milestone is new), so reloading an old file never undoes what
owners reported in chat. Export writes the current state in the file's own shape.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from bot.milestones import service
from bot.milestones.status import CADENCES, DEFAULT_CADENCE, DEFAULT_GRACE_DAYS, STATUSES
from bot.milestones.tables import (
    EarlyWin,
    Milestone,
    MilestoneCheckin,
    MilestoneOwner,
    MilestoneUpdate,
)
from bot.people import service as people
from bot.people.tables import Person
from bot.programme.schema import Doc

MILESTONE_FIELDS = {
    "id", "title", "description", "owners", "team", "due", "checkin", "grace_days", "status",
    "progress", "theme", "early_wins",
}
WIN_FIELDS = {"id", "title", "description", "theme", "status", "delivered"}
WIN_STATUSES = ("planned", "delivered")


def _changed(key: str, new: dict[str, Any], before: dict[str, Any] | None) -> bool:
    return before is None or new.get(key) != before.get(key)


def _iso(d: Any) -> str | None:
    return d.isoformat() if isinstance(d, date) else (str(d) if d else None)


class EarlyWinsSection:
    """`early_wins:` visible improvements, planned or delivered."""

    key = "early_wins"
    order = 20

    def validate(self, doc: Doc, value: Any) -> None:
        if not isinstance(value, list):
            doc.problem((self.key,), "should be a list of early wins")
            return
        seen: set[str] = set()
        for path, w in doc.items({self.key: value}, (), self.key):
            doc.unknown_keys(w, path, WIN_FIELDS)
            wid = doc.slug(w, path)
            if wid:
                if wid in seen:
                    doc.problem(path + ("id",), f"early win '{wid}' appears twice")
                seen.add(wid)
            doc.get(w, path, "title", str, required=True)
            doc.get(w, path, "description", str)
            if w.get("theme") is not None:
                doc.theme_ref(w["theme"], path + ("theme",))
            st = doc.get(w, path, "status", str, default="planned")
            if st is not None and st not in WIN_STATUSES:
                doc.problem(path + ("status",), f"should be one of: {', '.join(WIN_STATUSES)}")
            if w.get("delivered") is not None:
                doc.date(w["delivered"], path + ("delivered",))

    async def sync(self, s: AsyncSession, doc: Doc, value: Any) -> None:
        keep = []
        for i, w in enumerate(value):
            new = {
                "title": w["title"], "description": w.get("description", ""),
                "theme": w.get("theme"), "status": w.get("status", "planned"),
                "delivered": _iso(w.get("delivered")),
            }
            row = await s.get(EarlyWin, w["id"])
            before = None if row is None else row.file_values
            if row is None:
                row = EarlyWin(id=w["id"], title=new["title"])
                s.add(row)
            if _changed("title", new, before):
                row.title = new["title"]
            if _changed("description", new, before):
                row.description = new["description"]
            if _changed("theme", new, before):
                row.theme_id = new["theme"]
            if _changed("status", new, before) or _changed("delivered", new, before):
                row.status = new["status"]
                row.delivered_on = date.fromisoformat(new["delivered"]) if new["delivered"] else None
            row.position = i
            row.file_values = new
            keep.append(w["id"])
        await s.execute(delete(EarlyWin).where(EarlyWin.id.not_in(keep)))

    async def export(self, s: AsyncSession) -> Any:
        out = []
        for w in await service.early_wins(s):
            item: dict[str, Any] = {"id": w.id, "title": w.title}
            if w.description:
                item["description"] = w.description
            if w.theme_id:
                item["theme"] = w.theme_id
            item["status"] = w.status
            if w.delivered_on:
                item["delivered"] = w.delivered_on
            out.append(item)
        return out


class MilestonesSection:
    """`milestones:` the roadmap: owners, team, due date, check-in cadence, status."""

    key = "milestones"
    order = 21

    def validate(self, doc: Doc, value: Any) -> None:
        if not isinstance(value, list):
            doc.problem((self.key,), "should be a list of milestones")
            return
        wins = {w.get("id") for w in doc.data.get("early_wins") or [] if isinstance(w, dict)}
        seen: set[str] = set()
        for path, m in doc.items({self.key: value}, (), self.key):
            doc.unknown_keys(m, path, MILESTONE_FIELDS)
            mid = doc.slug(m, path)
            if mid:
                if mid in seen:
                    doc.problem(path + ("id",), f"milestone '{mid}' appears twice")
                seen.add(mid)
            doc.get(m, path, "title", str, required=True)
            doc.get(m, path, "description", str)
            owners = m.get("owners")
            if not isinstance(owners, list) or not owners:
                doc.problem(path + ("owners",), "should be a list of one or more people's emails")
            else:
                for i, e in enumerate(owners):
                    doc.person_ref(e, path + ("owners", i))
            if m.get("team") is not None:
                doc.team_ref(m["team"], path + ("team",))
            if m.get("due") is None:
                doc.problem(path, "'due' is required")
            else:
                doc.date(m["due"], path + ("due",))
            cad = doc.get(m, path, "checkin", str)
            if cad is not None and cad not in CADENCES:
                doc.problem(path + ("checkin",), f"should be one of: {', '.join(CADENCES)}")
            grace = doc.get(m, path, "grace_days", int)
            if grace is not None and not 1 <= grace <= 14:
                doc.problem(path + ("grace_days",), "should be from 1 to 14 days")
            st = doc.get(m, path, "status", str)
            if st is not None and st not in STATUSES:
                doc.problem(path + ("status",), f"should be one of: {', '.join(STATUSES)}")
            pr = doc.get(m, path, "progress", int)
            if pr is not None and not 0 <= pr <= 100:
                doc.problem(path + ("progress",), "should be from 0 to 100")
            if m.get("theme") is not None:
                doc.theme_ref(m["theme"], path + ("theme",))
            links = m.get("early_wins")
            if links is not None:
                if not isinstance(links, list):
                    doc.problem(path + ("early_wins",), "should be a list of early win ids")
                else:
                    for i, w in enumerate(links):
                        if w not in wins:
                            doc.problem(path + ("early_wins", i), f"{w!r:.60} is not an early win in early_wins")

    async def sync(self, s: AsyncSession, doc: Doc, value: Any) -> None:
        now = _now()
        keep = []
        for i, item in enumerate(value):
            await self._one(s, i, item, now)
            keep.append(item["id"])
        gone = [
            m.id for m in await service.all_milestones(s) if m.from_file and m.id not in keep
        ]
        for table in (MilestoneOwner, MilestoneUpdate, MilestoneCheckin):
            await s.execute(delete(table).where(table.milestone_id.in_(gone)))
        await s.execute(delete(Milestone).where(Milestone.id.in_(gone)))

    async def _one(self, s: AsyncSession, position: int, item: dict[str, Any], now: Any) -> None:
        new = {
            "title": item["title"], "description": item.get("description", ""),
            "owners": [e.strip().lower() for e in item["owners"]], "team": item.get("team"),
            "due": _iso(item["due"]), "checkin": item.get("checkin", DEFAULT_CADENCE),
            "grace_days": item.get("grace_days", DEFAULT_GRACE_DAYS),
            "status": item.get("status", "not_started"), "progress": item.get("progress", 0),
            "theme": item.get("theme"), "early_wins": list(item.get("early_wins") or []),
        }
        row = await s.get(Milestone, item["id"])
        before = None if row is None else row.file_values
        if row is None:
            row = Milestone(id=item["id"], title=new["title"], due=date.fromisoformat(new["due"]),
                            status=new["status"], progress=new["progress"], created_at=now)
            s.add(row)
            await s.flush()
        simple = {"title": "title", "description": "description", "team": "team_id",
                  "checkin": "cadence", "grace_days": "grace_days", "theme": "theme_id",
                  "early_wins": "early_win_ids"}
        for key, attr in simple.items():
            if _changed(key, new, before):
                setattr(row, attr, new[key])
        if _changed("due", new, before):
            row.due = date.fromisoformat(new["due"])
        if before is None:
            row.status, row.progress = new["status"], new["progress"]
        elif _changed("status", new, before) or _changed("progress", new, before):
            if (new["status"], new["progress"]) != (row.status, row.progress):
                await service.record_update(s, row, None, status=new["status"], progress=new["progress"],
                                            note="changed in the programme file", at=now, source="file")
        if _changed("owners", new, before):
            ids = []
            for e in new["owners"]:
                p = await people.person_by_email(s, e)
                if p is not None:
                    ids.append(p.id)
            await service.set_owners(s, row.id, ids)
        row.position = position
        row.from_file = True
        row.file_values = new

    async def export(self, s: AsyncSession) -> Any:
        out = []
        for m in await service.all_milestones(s):
            emails = []
            for pid in await service.owner_ids(s, m.id):
                p = await s.get(Person, pid)
                if p is not None and p.email:
                    emails.append(p.email)
            item: dict[str, Any] = {"id": m.id, "title": m.title}
            if m.description:
                item["description"] = m.description
            item["owners"] = emails
            if m.team_id:
                item["team"] = m.team_id
            item["due"] = m.due
            item["checkin"] = m.cadence
            if m.grace_days != DEFAULT_GRACE_DAYS:
                item["grace_days"] = m.grace_days
            item["status"] = m.status
            item["progress"] = m.progress
            if m.theme_id:
                item["theme"] = m.theme_id
            if m.early_win_ids:
                item["early_wins"] = list(m.early_win_ids)
            out.append(item)
        return out


def _now() -> Any:
    """Load time; the programme loader has no clock, so this is the wall clock."""
    from bot.clock import SystemClock

    return SystemClock().now()
