"""An account the platform closed (a deactivated Slack user) and how many safeguarding leads
can still be reached.

Slack keeps taking posts in a deactivated account's DM that was already open (python-slack-sdk
#1156): a message there counts as sent and is never read. When the platform says an account was
deactivated (Slack's `user_change` with `user.deleted`), the account is marked unreachable at
once, with DEACTIVATED as its reason, so nothing is sent there any more (`Core.dm` skips it) and
an urgent alert counts only the leads who can read it. It is one write to that account's row
(no date, nothing else): the event is about a deactivation, not about anything a person wrote
(docs/invariants.md, N15/N21). Reactivated, the account is reachable again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.people.held import held
from bot.people.service import people_with_role
from bot.people.tables import Identity
from bot.roles import SAFEGUARDING_LEAD

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger("staffvoice.people")

DEACTIVATED = "deactivated on the platform"


@dataclass(frozen=True)
class LeadsReach:
    """How many current safeguarding leads have an account that takes messages."""

    reachable: int
    total: int

    @property
    def short(self) -> bool:
        # No lead at all is the shortest: urgent alerts reach nobody (it said nothing).
        return self.reachable < self.total or self.total == 0

    def warning(self) -> str | None:
        """What the change team and operators are told when a lead cannot be reached."""
        if not self.short:
            return None
        if self.total == 0:
            return ("No safeguarding lead is set up: urgent feedback alerts reach nobody, and "
                    "senders are told to use the routes instead. Name one now "
                    "(“role grant EMAIL safeguarding_lead”, or the programme file).")
        if self.reachable == 0:
            return (f"No safeguarding lead can be reached in chat (0 of {self.total}): urgent "
                    "feedback alerts reach nobody. Add a reachable safeguarding lead now "
                    "(“role grant EMAIL safeguarding_lead”, or the programme file).")
        return (f"Only {self.reachable} of {self.total} safeguarding leads can be reached in chat "
                "(an account was deactivated or refuses messages): urgent alerts go to the "
                "others. Check the safeguarding leads in the programme file.")


async def leads_reach(s: AsyncSession) -> LeadsReach:
    """Current safeguarding leads, and those of them not known unreachable everywhere: a lead
    with no account yet counts as reachable (found by email at the first alert); one whose
    every known account is unreachable (deactivated, blocked the app) does not."""
    leads = [p.id for p in await people_with_role(s, SAFEGUARDING_LEAD)]
    if not leads:
        return LeadsReach(0, 0)
    rows = (await s.execute(select(Identity.person_id, Identity.reachable).where(
        Identity.person_id.in_(leads)))).all()
    known: dict[str, bool] = {}
    for pid, ok in rows:
        known[pid] = known.get(pid, False) or bool(ok)
    return LeadsReach(sum(known.get(pid, True) for pid in leads), len(leads))


async def account_deactivated(core: Core, platform: str, workspace: str, user_id: str) -> bool:
    """The platform closed this account: nothing more is sent to it. True when it belonged to
    someone in the programme (then, if they are a safeguarding lead, the log says how many leads
    remain reachable)."""
    account = (platform, workspace, user_id)
    async with core.db.session() as s:
        row = await s.get(Identity, account)
        pid = row.person_id if row is not None else held(core).links.get(account)
        if pid is None:
            return False
        if row is not None and not row.reachable and row.unreachable_reason == DEACTIVATED:
            return True  # told again (a redelivery, another profile change): nothing to write
    await core.mark_unreachable(Identity(platform=platform, workspace=workspace, user_id=user_id,
                                         person_id=pid), DEACTIVATED)
    async with core.db.session() as s:
        is_lead = pid in {p.id for p in await people_with_role(s, SAFEGUARDING_LEAD)}
        reach = await leads_reach(s) if is_lead else None
    if reach is not None:
        level = logging.ERROR if reach.reachable == 0 else logging.WARNING
        log.log(level, "a safeguarding lead's %s account was deactivated: %d of %d leads "
                "reachable", platform, reach.reachable, reach.total,
                extra={"platform": platform})
    return True


async def account_reactivated(core: Core, platform: str, workspace: str, user_id: str) -> bool:
    """The platform opened this account again: reachable, if it was closed for that alone (an
    account that blocked the app stays as it is). True when something changed."""
    async with core.db.session() as s:
        done = await s.execute(update(Identity).where(
            Identity.platform == platform, Identity.workspace == workspace,
            Identity.user_id == user_id, Identity.reachable.is_(False),
            Identity.unreachable_reason == DEACTIVATED).values(
            reachable=True, unreachable_reason=None))
    return bool(getattr(done, "rowcount", 0))
