"""Platform audiences: the members of a Slack user group or channel, or of a Teams team, as people.

The port lists the members (`bot.port.MemberLister`); each is linked to a person the way a
first message would link them (identity, else verified email, else a new person), so the
ledger DMs people, once each, whatever groups they are in.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.errors import UserError
from bot.model import UserRef
from bot.people import service as people
from bot.port import (
    AppNotAuthorised,
    MemberLister,
    PlatformError,
    RateLimited,
    TransientError,
    parse_audience_ref,
)

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger("staffvoice.broadcasts")
KINDS = {"slack": ("usergroup", "channel"), "teams": ("team",)}
HELP = ("Name a group as slack:T0123/usergroup:S0456, slack:T0123/channel:C0789 or "
        "teams:<tenant id>/team:<team id>.")


class GroupsRefused(UserError):
    """A group could not be read for now: the platform refuses the app itself (uninstalled,
    token revoked: AppNotAuthorised) or failed in passing (TransientError, RateLimited). The
    group may be fine, so a scheduled broadcast waits (for the reinstall, or the next tick)
    rather than being cancelled as unreadable."""


def check_ref(ref: str, platforms: set[str]) -> str:
    """A group reference in canonical form, or a UserError saying what is wrong with it."""
    try:
        a = parse_audience_ref(ref)
    except ValueError:
        raise UserError(f"'{ref}' is not a group I know how to read. {HELP}") from None
    if a.kind not in KINDS.get(a.platform, ()):
        raise UserError(f"'{ref}': {a.platform} has no groups of kind '{a.kind}'. {HELP}")
    if a.platform not in platforms:
        raise UserError(f"'{ref}': {a.platform} is not connected, so I can't read its members.")
    return str(a)


async def group_people(core: Core, refs: list[str]) -> list[str]:
    """Person ids of everyone in the groups (asks each platform; UserError if one can't tell)."""
    users: dict[tuple[str, str, str], UserRef] = {}
    for ref in refs:
        a = parse_audience_ref(ref)
        port = core.ports.get(a.platform)
        if not isinstance(port, MemberLister):
            raise UserError(f"'{ref}': {a.platform} is not connected, so I can't read its members.")
        try:
            found = await port.members(ref)
        except AppNotAuthorised as e:
            raise GroupsRefused(f"I can't read the members of '{ref}' now ({e}). It can be "
                                "read again once the app is reinstalled.") from e
        except (TransientError, RateLimited) as e:
            raise GroupsRefused(f"I can't read the members of '{ref}' just now ({e}). Try "
                                "again in a few minutes.") from e
        except PlatformError as e:
            raise UserError(f"I can't read the members of '{ref}' ({e}). Check the id, and that "
                            "the app has been added there.") from e
        for u in found:
            users.setdefault((u.platform, u.workspace, u.user_id), u)
    ids = await _link(core, list(users.values()))
    async with core.db.session() as s:
        return sorted(await people.current_of(s, ids))  # leavers still in a group are not


async def _person_id(s: AsyncSession, user: UserRef) -> str | None:
    """The member's person; None for someone outside the programme (never counted)."""
    try:
        return (await people.person_for(s, user)).id
    except people.NotEnrolled:
        return None


async def _link(core: Core, users: list[UserRef]) -> set[str]:
    """person_for each member; a racing first message that links the same account wins."""
    ids: set[str | None] = set()
    for i in range(0, len(users), 500):
        chunk = users[i : i + 500]
        try:
            async with core.db.session() as s:
                ids |= {await _person_id(s, u) for u in chunk}
        except IntegrityError:
            for u in chunk:  # one at a time, so only the raced account retries
                for _ in range(2):
                    try:
                        async with core.db.session() as s:
                            ids.add(await _person_id(s, u))
                        break
                    except IntegrityError:
                        continue
    return {i for i in ids if i is not None}
