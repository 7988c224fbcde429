"""Installation and OAuth-state stores for Bolt, kept in the project database.

Bot tokens are sealed with AES-GCM under a key derived from the server secret, so a database
dump alone does not hand out working Slack tokens.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore
from sqlalchemy import delete, select

from adapters.slack.tables import SlackInstallation, SlackOAuthState
from storage.db import Database

log = logging.getLogger("staffvoice.slack.install")

KeySource = Callable[[], Awaitable[bytes]]


class Sealer:
    """Encrypts tokens at rest with a key derived from the server secret."""

    def __init__(self, key_source: KeySource) -> None:
        self._source = key_source
        self._aead: AESGCM | None = None

    async def _get(self) -> AESGCM:
        if self._aead is None:
            secret = await self._source()
            self._aead = AESGCM(hashlib.sha256(b"staffvoice/slack-token\x00" + secret).digest())
        return self._aead

    async def seal(self, plain: str) -> str:
        nonce = os.urandom(12)
        ct = (await self._get()).encrypt(nonce, plain.encode(), b"slack")
        return "v1:" + base64.urlsafe_b64encode(nonce + ct).decode()

    async def open(self, sealed: str) -> str:
        raw = base64.urlsafe_b64decode(sealed.removeprefix("v1:"))
        return (await self._get()).decrypt(raw[:12], raw[12:], b"slack").decode()


def _when(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value), UTC)


class DatabaseInstallationStore(AsyncInstallationStore):
    """Bot-scope installations, one row per workspace (or org for an org-wide install)."""

    def __init__(self, db: Database, sealer: Sealer) -> None:
        self.db = db
        self.sealer = sealer

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_save(self, installation: Installation) -> None:
        await self.async_save_bot(installation.to_bot())

    async def async_save_bot(self, bot: Bot) -> None:
        key = (bot.enterprise_id or "", "" if bot.is_enterprise_install else bot.team_id or "")
        token = await self.sealer.seal(bot.bot_token)
        refresh = await self.sealer.seal(bot.bot_refresh_token) if bot.bot_refresh_token else None
        async with self.db.session() as s:
            row = await s.get(SlackInstallation, key)
            if row is None:
                row = SlackInstallation(enterprise_id=key[0], team_id=key[1])
                s.add(row)
            row.app_id = bot.app_id
            row.team_name = bot.team_name
            row.bot_id = bot.bot_id
            row.bot_user_id = bot.bot_user_id
            row.bot_scopes = ",".join(bot.bot_scopes or [])
            row.bot_token_sealed = token
            row.bot_refresh_token_sealed = refresh
            row.bot_token_expires_at = _when(bot.bot_token_expires_at)
            row.is_enterprise_install = bool(bot.is_enterprise_install)
            row.installed_at = _when(bot.installed_at) or datetime.now(UTC)
        log.info("slack workspace installed", extra={"team_id": key[1], "enterprise_id": key[0]})

    async def async_find_bot(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        is_enterprise_install: bool | None = False,
    ) -> Bot | None:
        key = (enterprise_id or "", "" if is_enterprise_install else team_id or "")
        async with self.db.session() as s:
            row = await s.get(SlackInstallation, key)
        if row is None:
            return None
        return await self._bot(row)

    async def bot_for_team(self, team_id: str) -> Bot | None:
        """The installation that speaks for workspace `team_id`, whichever Enterprise Grid org
        it belongs to: Slack names the org in a workspace install (oauth.v2.access
        `enterprise`), but the core knows a workspace by its team id alone."""
        async with self.db.session() as s:
            row = (await s.execute(
                select(SlackInstallation).where(SlackInstallation.team_id == team_id)
                .order_by(SlackInstallation.installed_at.desc()).limit(1))).scalar_one_or_none()
        return await self._bot(row) if row is not None else None

    async def _bot(self, row: SlackInstallation) -> Bot:
        return Bot(
            app_id=row.app_id,
            enterprise_id=row.enterprise_id or None,
            team_id=row.team_id or None,
            team_name=row.team_name,
            bot_token=await self.sealer.open(row.bot_token_sealed),
            bot_refresh_token=(
                await self.sealer.open(row.bot_refresh_token_sealed)
                if row.bot_refresh_token_sealed else None
            ),
            bot_token_expires_at=row.bot_token_expires_at,
            bot_id=row.bot_id,
            bot_user_id=row.bot_user_id,
            bot_scopes=row.bot_scopes,
            is_enterprise_install=row.is_enterprise_install,
            installed_at=row.installed_at,
        )

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        bot = await self.async_find_bot(
            enterprise_id=enterprise_id, team_id=team_id, is_enterprise_install=is_enterprise_install
        )
        if bot is None:
            return None
        return Installation(
            app_id=bot.app_id, enterprise_id=bot.enterprise_id, team_id=bot.team_id,
            team_name=bot.team_name, bot_token=bot.bot_token, bot_id=bot.bot_id,
            bot_user_id=bot.bot_user_id, bot_scopes=bot.bot_scopes, user_id=user_id or "",
            is_enterprise_install=bot.is_enterprise_install, installed_at=bot.installed_at,
        )

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        async with self.db.session() as s:
            await s.execute(
                delete(SlackInstallation).where(
                    SlackInstallation.enterprise_id == (enterprise_id or ""),
                    SlackInstallation.team_id == (team_id or ""),
                )
            )
        log.info("slack workspace uninstalled", extra={"team_id": team_id or ""})

    async def async_delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        if user_id is None:
            await self.async_delete_bot(enterprise_id=enterprise_id, team_id=team_id)

    async def async_delete_all(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self.async_delete_bot(enterprise_id=enterprise_id, team_id=team_id)

    async def all_bots(self) -> list[Bot]:
        """Every installed workspace (user lookups by email try each)."""
        async with self.db.session() as s:
            rows = list((await s.execute(select(SlackInstallation))).scalars())
        return [await self._bot(r) for r in rows]


class DatabaseStateStore(AsyncOAuthStateStore):
    """One-time OAuth `state` values that any replica can consume."""

    def __init__(self, db: Database, expiration_seconds: int = 600) -> None:
        self.db = db
        self.expiration = timedelta(seconds=expiration_seconds)

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        state = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        async with self.db.session() as s:
            await s.execute(delete(SlackOAuthState).where(SlackOAuthState.expires_at < now))
            s.add(SlackOAuthState(state=state, expires_at=now + self.expiration))
        return state

    async def async_consume(self, state: str) -> bool:
        async with self.db.session() as s:
            gone = await s.execute(
                delete(SlackOAuthState).where(
                    SlackOAuthState.state == state[:64],
                    SlackOAuthState.expires_at >= datetime.now(UTC),
                )
            )
        return bool(gone.rowcount)  # type: ignore[attr-defined]
