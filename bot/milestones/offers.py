"""A milestone done: offer the change team a drafted early-win announcement.

Through broadcasts when that feature is installed (a draft the author previews and sends);
otherwise a DM with the text. DMs wait for each person's working hours (kept in `offer_to`).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.errors import UserError
from bot.milestones import cards, service
from bot.milestones.tables import Milestone
from bot.model import Block, Choice, Choices, Context, Message, Text
from bot.people import service as people
from bot.people.tables import Person
from bot.port import PlatformError, RateLimited, TransientError
from bot.roles import CHANGE_TEAM
from bot.workhours import is_working_moment, pattern_for

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger("staffvoice.milestones")


def broadcasts_service() -> Any:
    """bot.broadcasts.service if it offers `draft`, else None."""
    try:
        from bot.broadcasts import service as broadcasts
    except ImportError:
        return None
    return broadcasts if hasattr(broadcasts, "draft") else None


async def draft_text(core: Core, mid: str) -> tuple[str, str]:
    """A title and text announcing a milestone done and the early wins it delivered."""
    async with core.db.session() as s:
        m = await service.get(s, mid)
        if m is None:  # a stale button: the milestone was removed since the offer was sent
            raise UserError("That milestone no longer exists, so there is nothing to announce.")
        wins = [w for w in await service.early_wins(s) if w.id in (m.early_win_ids or [])]
        owners = await service.owners_of(s, m.id)
    title = f"Done: {m.title}"
    text = f"We've reached a milestone on our roadmap: {m.title}."
    if m.description:
        text += f" {m.description}"
    for w in wins:
        text += f"\n🎉 {w.title}" + (f": {w.description}" if w.description else "")
    if owners:
        text += ("\nThank you to " + ", ".join(p.display_name or p.email or "" for p in owners)
                 + " and everyone who made it happen.")
    return title, text


async def offer(core: Core, mid: str, updater: Person, roles: frozenset[str], now: datetime) -> None:
    """The change team marked it done: a draft for them; anyone else: offer it to the change team."""
    broadcasts = broadcasts_service()
    if broadcasts is not None and CHANGE_TEAM in roles:
        title, text = await draft_text(core, mid)
        try:
            await broadcasts.draft(core, updater.id, title=title, text=text, source=f"milestone:{mid}")
            return
        except Exception:
            log.exception("drafting an early-win broadcast failed; offering it by DM instead")
    async with core.db.session() as s:
        m = await s.get(Milestone, mid)
        if m is not None:
            m.offer_to = [p.id for p in await people.people_with_role(s, CHANGE_TEAM)]
    await send_pending(core, now)


async def send_pending(core: Core, now: datetime) -> int:
    """DM pending offers to change-team members who are at work now (a ticker calls this too).

    An offer leaves `offer_to` once sent, or once the platform refused it for good or the
    person cannot be reached; one the platform refused for now (the app uninstalled or its
    token revoked, AppNotAuthorised; a passing error) stays, and goes once on a later tick.

    Each offer is claimed (struck off, the row locked on PostgreSQL) before it is sent and put
    back if the platform refused it for now: the owner's update in chat sends at once on its
    replica while the scheduler's leader may run this ticker, and each person hears once. A
    process that dies between the claim and the send loses that one offer (the milestone is
    still done, the change team sees it on the roadmap)."""
    sent = 0
    async with core.db.session() as s:
        pending = [m for m in await service.all_milestones(s) if m.offer_to]
        work: list[tuple[str, str]] = []
        for m in pending:
            for pid in m.offer_to:
                person = await s.get(Person, pid)
                if person is None or is_working_moment(await pattern_for(s, person), now):
                    work.append((m.id, pid))
    for mid, pid in work:
        if not await _claim(core, mid, pid):
            continue  # another replica (or the ticker) has it
        try:
            msg = await offer_card(core, mid)
            if await core.dm(pid, msg) is not None:
                sent += 1
        except RateLimited:
            await _unclaim(core, mid, pid)
            break  # the workspace's budget: the rest on a later tick
        except TransientError as e:  # the app awaits a reinstall, or a passing error
            await _unclaim(core, mid, pid)
            # info: the adapter says a refused token once; this repeats every tick
            log.info("early-win offer waits: the platform refused it for now",
                     extra={"error": str(e)[:200]})
            continue
        except PlatformError as e:  # refused for good: tried once, said in the log
            log.warning("early-win offer refused by the platform; not tried again",
                        extra={"error": str(e)[:200]})
        except BaseException:
            await _unclaim(core, mid, pid)
            raise
    return sent


async def _claim(core: Core, mid: str, pid: str) -> bool:
    """Strike `pid` off the milestone's pending offers; False if it was not (or no longer) there."""
    async with core.db.session() as s:
        row = await s.get(Milestone, mid, with_for_update=not core.db.is_sqlite)
        if row is None or pid not in (row.offer_to or []):
            return False
        row.offer_to = [x for x in row.offer_to if x != pid]
        return True


async def _unclaim(core: Core, mid: str, pid: str) -> None:
    """Put a claimed offer back for a later tick (the platform refused it for now)."""
    async with core.db.session() as s:
        row = await s.get(Milestone, mid, with_for_update=not core.db.is_sqlite)
        if row is not None and pid not in (row.offer_to or []):
            row.offer_to = [*(row.offer_to or []), pid]


async def offer_card(core: Core, mid: str) -> Message:
    title, text = await draft_text(core, mid)
    blocks: list[Block] = [
        Text("Milestone done: an early-win announcement to review", heading=True),
        Text(f"{title}\n{text}"),
    ]
    if broadcasts_service() is not None:
        blocks.append(Choices(cards.DRAFT_ACTION, (Choice("Draft it as a broadcast", mid, "primary"),)))
    else:
        blocks.append(Context("Copy it, adjust it and send it to staff when you are ready."))
    return Message(tuple(blocks), fallback=f"Draft early-win announcement:\n{title}\n{text}")
