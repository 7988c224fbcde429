"""Slack: workspace members (`users.list`, paged) and user groups as teams, through slack_sdk.

- `users.list` returns everyone, deactivated accounts included (`deleted: true`: leavers);
  guests (`is_restricted`, `is_ultra_restricted`) and bots never become people.
- It is a Tier 2 method (about 20 calls a minute): pages are paced, and an HTTP 429 is
  waited out for its Retry-After by the SDK's rate-limit retry handler.
- Each configured user group (`usergroups.users.list`) names the team of its members.
https://api.slack.com/methods/users.list · https://api.slack.com/docs/rate-limits
"""

from __future__ import annotations

import asyncio

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from adapters.directory import SyncConfig
from bot.people.directory import Listing, Record, SourceError
from bot.people.service import valid_tz

PAGE = 200  # Slack recommends no more than 200 results a page


async def slack_listing(cfg: SyncConfig) -> Listing:
    if not cfg.slack_token:
        raise SourceError("Slack sync needs SLACK_BOT_TOKEN (with users:read, users:read.email "
                          "and usergroups:read)")
    session = aiohttp.ClientSession()
    client = AsyncWebClient(token=cfg.slack_token, base_url=cfg.slack_api_url, session=session,
                            retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=5)])
    try:
        return await _read(client, cfg)
    except SlackApiError as e:
        method = e.response.api_url.rsplit("/", 1)[-1]
        raise SourceError(f"Slack refused {method}: {e.response.get('error') or e.response.status_code}"
                          ) from None
    except (aiohttp.ClientError, TimeoutError) as e:
        raise SourceError(f"cannot reach Slack at {cfg.slack_api_url} ({type(e).__name__})") from None
    finally:
        await session.close()


async def _read(client: AsyncWebClient, cfg: SyncConfig) -> Listing:
    team_of: dict[str, str] = {}
    for group, team in cfg.slack_groups:
        resp = await client.usergroups_users_list(usergroup=group, include_disabled=False)
        for uid in resp.get("users") or []:
            team_of.setdefault(uid, team)
    out = Listing("slack", [], detail="Slack workspace")
    guests = bots = no_email = 0
    cursor = ""
    while True:
        resp = await client.users_list(limit=PAGE, cursor=cursor or None)
        for m in resp.get("members") or []:
            uid = str(m.get("id", ""))
            if m.get("is_bot") or m.get("is_app_user") or uid == "USLACKBOT":
                bots += 1
                continue
            if m.get("is_restricted") or m.get("is_ultra_restricted"):
                guests += 1  # guests never become people (nor leavers: they were never in)
                continue
            email = str((m.get("profile") or {}).get("email") or "").strip().lower()
            if not email:
                no_email += 1
                continue
            where = f"Slack user {uid}"
            if m.get("deleted"):
                out.gone.append((where, email))
                continue
            profile = m.get("profile") or {}
            name = profile.get("real_name") or m.get("real_name") or profile.get("display_name")
            out.records.append(Record(where, email, name=name or None, team=team_of.get(uid),
                                      tz=valid_tz(m.get("tz")),
                                      columns={"team": "user group", "name": "real_name"}))
        cursor = ((resp.get("response_metadata") or {}).get("next_cursor") or "").strip()
        if not cursor:
            break
        await asyncio.sleep(cfg.pace_s)
    if guests:
        out.notes.append(f"{guests} guest account(s) skipped: guests never take part")
    if no_email:
        out.notes.append(f"{no_email} member(s) without a visible email skipped (does the app "
                         "have the users:read.email scope?)")
    return out
