"""The privacy notice: the programme's `programme.privacy` text (or the default), in chat."""

from __future__ import annotations

import weakref

from sqlalchemy import Engine, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot.model import Context, Message, Text
from bot.privacy.rules import Retention
from bot.privacy.tables import NoticeShown
from bot.programme.core_sections import DEFAULT_PRIVACY, get_setting
from storage.db import connection_of, upsert

MORE = ("Type “privacy” any time to read this again. To ask for a copy of what is held "
        "about you, or for it to be erased, contact the council's data protection officer.")


async def text_of(s: AsyncSession) -> str:
    """The programme's notice (or the default), then how long each kind is kept, from the
    programme's `retention:` periods, so the notice can never disagree with what is done."""
    from bot.privacy.rules import current

    prog = await get_setting(s, "programme", {}) or {}
    own = str(prog.get("privacy") or DEFAULT_PRIVACY).strip()
    return own + "\n\n" + how_long(await current(s))


def how_long(r: Retention) -> str:
    """The retention periods in plain words."""
    return (
        f"How long we keep things: your details until {r.leavers_erase_days} days after you "
        f"leave, when they are erased; feedback that has been dealt with, {r.feedback_months} "
        f"months after its last message; the way to reply to your anonymous feedback, at most "
        f"{r.reply_routes_days} days; pulse comments, {r.pulse_comments_months} months after "
        f"the round closed (the counts per group are kept for trends); named answers to "
        f"attributed surveys, {r.attributed_answers_months} months. Who viewed results and "
        f"feedback is recorded in an audit trail that leaders and the change team can read."
    )


def message(text: str, *, first: bool) -> Message:
    title = "Before we start: how staffvoice uses your information" if first else "Privacy notice"
    paras = [p.strip() for p in text.split("\n\n") if p.strip()]
    return Message((Text(title, heading=True), *(Text(" ".join(p.split())) for p in paras),
                    Context(MORE)),
                   fallback=f"{title}\n\n" + "\n\n".join(paras) + f"\n\n{MORE}")


class Told:
    """Accounts this process has seen told (the row exists), per database. A row goes only
    with the account (erasure deletes both), and a re-linked account skips this (the
    caller checks `Ctx.sender_known`), so a remembered account needs no read."""

    LIMIT = 100_000

    def __init__(self) -> None:
        self.accounts: set[tuple[str, str, str]] = set()

    def __contains__(self, account: tuple[str, str, str]) -> bool:
        return account in self.accounts

    def add(self, account: tuple[str, str, str]) -> None:
        if len(self.accounts) >= self.LIMIT:
            self.accounts.clear()
        self.accounts.add(account)


_TOLD: weakref.WeakKeyDictionary[Engine, Told] = weakref.WeakKeyDictionary()


def told(engine: Engine) -> Told:
    """The accounts known told on `engine` (a sync engine: `Database.engine.sync_engine`)."""
    found = _TOLD.get(engine)
    if found is None:
        found = _TOLD[engine] = Told()
    return found


_SHOWN = select(NoticeShown.day).where(NoticeShown.platform == bindparam("platform"),
                                        NoticeShown.workspace == bindparam("workspace"),
                                        NoticeShown.user_id == bindparam("user_id"))


async def first_time(s: AsyncSession | AsyncConnection, platform: str, workspace: str,
                     user_id: str, day: object) -> bool:
    """Mark this account as told; True only the first time (race-safe: two first messages at
    once insert one row, and only the one that inserted it shows the notice)."""
    conn = await connection_of(s)
    account = {"platform": platform, "workspace": workspace, "user_id": user_id}
    if (await conn.execute(_SHOWN, account)).first() is not None:
        return False  # the usual case: a read, no write on every message
    res = await conn.execute(upsert(conn.dialect.name, NoticeShown).values(**account, day=day)
                             .on_conflict_do_nothing())
    return bool(res.rowcount)
