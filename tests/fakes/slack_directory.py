"""A local fake of the Slack Web API methods a directory sync reads: a real aiohttp server.

Rules, each from Slack's documentation:
- The bot token travels as `Authorization: Bearer`; a wrong one is `invalid_auth`
  (https://api.slack.com/authentication/token-types, https://api.slack.com/methods/users.list#errors).
- `users.list` is cursor-paginated: `limit` results at most, `response_metadata.next_cursor`
  names the next page and is "" on the last; an unknown cursor is `invalid_cursor`
  (https://api.slack.com/apis/pagination, https://api.slack.com/methods/users.list).
- `users.list` returns deactivated accounts too (`deleted: true`), guests with `is_restricted`
  / `is_ultra_restricted`, bots with `is_bot`, and Slackbot (`USLACKBOT`), which has
  `is_bot: false` (https://api.slack.com/methods/users.list, https://api.slack.com/types/user).
- It is a Tier 2 method: over the budget, HTTP 429 with `Retry-After` in seconds
  (https://api.slack.com/apis/rate-limits).
- `usergroups.users.list` takes `usergroup` and answers `users` (ids); an unknown group is
  `no_such_subteam` (https://api.slack.com/methods/usergroups.users.list).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.directory_limits import Budget

TOKEN = "xoxb-fake-directory-token"
TEAM = "T0NORTHBR"


@dataclass
class Member:
    id: str
    email: str
    name: str
    tz: str = "Europe/London"
    deleted: bool = False
    guest: bool = False
    bot: bool = False

    def json(self) -> dict[str, Any]:
        # The shape of a user object (https://api.slack.com/types/user), trimmed.
        return {
            "id": self.id, "team_id": TEAM, "name": self.email.split("@")[0],
            "deleted": self.deleted, "real_name": self.name, "tz": self.tz,
            "tz_label": "Greenwich Mean Time", "tz_offset": 0, "is_admin": False,
            "is_owner": False, "is_bot": self.bot, "is_app_user": False,
            "is_restricted": self.guest, "is_ultra_restricted": False, "updated": 1764547200,
            "profile": {"real_name": self.name, "display_name": self.name.split(" ")[0],
                        "email": self.email, "team": TEAM},
        }


@dataclass
class FakeSlackDirectory:
    members: list[Member] = field(default_factory=list)
    groups: dict[str, list[str]] = field(default_factory=dict)
    budget: Budget = field(default_factory=lambda: Budget(20, 60.0))  # Tier 2: 20+ a minute
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    max_limit: int = 1000
    runner: web.AppRunner | None = None
    url: str = ""

    def __post_init__(self) -> None:
        # Every workspace lists Slackbot, which is not flagged as a bot.
        self.members.insert(0, Member("USLACKBOT", "", "Slackbot", tz="America/Los_Angeles"))

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/api/"
        return self.url

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def add(self, email: str, name: str, **kw: Any) -> Member:
        m = Member(f"U{len(self.members) + 1:08d}", email, name, **kw)
        self.members.append(m)
        return m

    def called(self, method: str) -> int:
        return sum(1 for m, _ in self.calls if m == method)

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = dict(request.query)
        if request.method == "POST":
            args.update({k: str(v) for k, v in (await request.post()).items()})
        self.calls.append((method, args))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        wait = self.budget.retry_after(method)
        if wait is not None:
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                     headers={"Retry-After": str(wait)})
        handler = getattr(self, "m_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        return web.json_response(handler(args))

    def m_users_list(self, args: dict[str, str]) -> dict[str, Any]:
        limit = min(int(args.get("limit") or 0) or len(self.members) or 1, self.max_limit)
        start = 0
        if args.get("cursor"):
            try:
                start = int(base64.b64decode(args["cursor"]).decode().removeprefix("user:"))
            except ValueError:
                return {"ok": False, "error": "invalid_cursor"}
        page = self.members[start:start + limit]
        more = start + limit < len(self.members)
        cursor = base64.b64encode(f"user:{start + limit}".encode()).decode() if more else ""
        return {"ok": True, "members": [m.json() for m in page], "cache_ts": 1764547200,
                "response_metadata": {"next_cursor": cursor}}

    def m_usergroups_users_list(self, args: dict[str, str]) -> dict[str, Any]:
        group = args.get("usergroup", "")
        if group not in self.groups:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(self.groups[group])}
