"""Directory sync: people from Slack (Web API) and Microsoft Entra ID (Graph) as a `Listing`.

These are platform calls, so they live with the adapters; `bot.people.directory` plans and
applies what they return, like an HR file. Configured from the environment (see README,
"Bring your people"); the nightly job is registered only when STAFFVOICE_PEOPLE_SYNC names a
source.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from bot.people import directory
from bot.people.directory import Listing, SourceError

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger("staffvoice.people.sync")
SOURCES = ("slack", "teams")


@dataclass(frozen=True)
class SyncConfig:
    """What to read, from where; secrets are kept out of repr."""

    slack_token: str = field(default="", repr=False)
    slack_api_url: str = "https://slack.com/api/"
    # Slack user group id -> team (an id, a name or a path such as "Children's Services/Assessment")
    slack_groups: tuple[tuple[str, str], ...] = ()
    tenant_id: str = ""
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    graph_url: str = "https://graph.microsoft.com/v1.0"
    login_url: str = "https://login.microsoftonline.com"
    graph_groups: tuple[str, ...] = ()
    # "department": a user's department names their team (under graph_team_parent, if given);
    # "manager": teams follow the management chain.
    graph_teams_from: str = "department"
    graph_team_parent: str = ""
    nightly: tuple[str, ...] = ()  # sources the scheduler syncs every night
    nightly_at: str = "02:30"
    pace_s: float = 3.0  # between pages: users.list is Tier 2 (about 20 calls a minute)


def _pairs(text: str) -> tuple[tuple[str, str], ...]:
    out = []
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip() and value.strip():
            out.append((key.strip(), value.strip()))
    return tuple(out)


def from_env(env: Mapping[str, str]) -> SyncConfig:
    prefix = "CONNECTIONS__SERVICE_CONNECTION__SETTINGS__"
    nightly = tuple(s.strip() for s in env.get("STAFFVOICE_PEOPLE_SYNC", "").split(",")
                    if s.strip())
    bad = [s for s in nightly if s not in SOURCES]
    if bad:
        raise SourceError(f"STAFFVOICE_PEOPLE_SYNC: '{bad[0]}' is not slack or teams")
    return SyncConfig(
        slack_token=env.get("SLACK_BOT_TOKEN", "").strip(),
        slack_api_url=(env.get("SLACK_API_URL", "").strip() or "https://slack.com/api/"),
        slack_groups=_pairs(env.get("STAFFVOICE_SLACK_SYNC_GROUPS", "")),
        tenant_id=env.get(prefix + "TENANTID", "").strip(),
        client_id=env.get(prefix + "CLIENTID", "").strip(),
        client_secret=env.get(prefix + "CLIENTSECRET", "").strip(),
        graph_url=(env.get("STAFFVOICE_GRAPH_URL", "").strip()
                   or "https://graph.microsoft.com/v1.0").rstrip("/"),
        login_url=(env.get("STAFFVOICE_GRAPH_LOGIN_URL", "").strip()
                   or "https://login.microsoftonline.com").rstrip("/"),
        graph_groups=tuple(g.strip() for g in env.get("STAFFVOICE_GRAPH_GROUPS", "").split(",")
                           if g.strip()),
        graph_teams_from=env.get("STAFFVOICE_GRAPH_TEAMS_FROM", "department").strip() or "department",
        graph_team_parent=env.get("STAFFVOICE_GRAPH_TEAM_PARENT", "").strip(),
        nightly=nightly,
        nightly_at=env.get("STAFFVOICE_PEOPLE_SYNC_AT", "02:30").strip() or "02:30",
        pace_s=float(env.get("STAFFVOICE_SLACK_SYNC_PACE", "").strip() or "3"),
    )


async def listing(name: str, cfg: SyncConfig) -> Listing:
    """Everyone the directory `name` (slack or teams) lists now; SourceError if it cannot."""
    if name == "slack":
        from adapters.directory.slack import slack_listing

        return await slack_listing(cfg)
    if name == "teams":
        from adapters.directory.graph import graph_listing

        return await graph_listing(cfg)
    raise SourceError(f"'{name}' is not a directory I can sync (slack or teams)")


async def sync(core: Core, name: str, cfg: SyncConfig, *, dry_run: bool = False
               ) -> directory.Plan:
    """Read directory `name` and apply the difference (unless a dry run or it has problems)."""
    found = await listing(name, cfg)
    return await directory.run(core.db, found, core.clock.now(), dry_run=dry_run)


def nightly_job(cfg: SyncConfig) -> Any:
    """The scheduler job syncing every configured directory once a night (local time)."""
    from bot.scheduling.jobs import timed

    hour, _, minute = cfg.nightly_at.partition(":")

    async def people_sync(core: Core, at: Any) -> int:
        """Sync people from the directories (STAFFVOICE_PEOPLE_SYNC), nightly."""
        changed = 0
        for name in cfg.nightly:
            try:
                p = await sync(core, name, cfg)
            except SourceError as e:
                log.warning("directory sync failed", extra={"source": name, "reason": str(e)[:300]})
                async with core.db.session() as s:
                    await directory.record_failure(s, name, str(e), core.clock.now())
                continue
            if not p.ok:
                log.warning("directory sync has problems; nothing changed",
                            extra={"source": name, "problems": len(p.problems),
                                   "first": str(p.problems[0])[:300]})
                async with core.db.session() as s:
                    await directory.record_failure(s, name, str(p.problems[0]), core.clock.now(),
                                                   len(p.problems))
                continue
            log.info("directory synced", extra={"source": name, **p.counts()})
            changed += len(p.joiners) + len(p.movers) + len(p.leavers)
        return changed

    return timed("people-sync", people_sync, grace=timedelta(hours=6),
                 hour=int(hour or 2), minute=int(minute or 30))


def install(core: Core, env: Mapping[str, str]) -> list[str]:
    """Register the nightly sync with the scheduler when STAFFVOICE_PEOPLE_SYNC is set."""
    try:
        cfg = from_env(env)
    except SourceError as e:
        return [f"people sync: off ({e})"]
    if not cfg.nightly:
        return []
    core.router.ticker("people-sync", nightly_job(cfg))
    return [f"people sync: {', '.join(cfg.nightly)} nightly at {cfg.nightly_at}"]
