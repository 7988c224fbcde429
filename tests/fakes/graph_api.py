"""A local fake of Microsoft Entra ID's token endpoint and the Microsoft Graph calls a sync makes.

Rules, each from Microsoft's documentation:
- Client credentials: POST {tenant}/oauth2/v2.0/token with grant_type=client_credentials,
  client_id, client_secret and scope https://graph.microsoft.com/.default; a wrong secret is
  401 `invalid_client` (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow).
- Graph wants `Authorization: Bearer`; without a valid token, 401 InvalidAuthenticationToken
  (https://learn.microsoft.com/graph/errors).
- GET /groups/{id}/transitiveMembers flattens nested groups: the users of a nested group are
  listed, and so is the nested group itself (`@odata.type` #microsoft.graph.group); an unknown
  group is 404 Request_ResourceNotFound
  (https://learn.microsoft.com/graph/api/group-list-transitivemembers).
- Results come in pages; a page may hold fewer than `$top`, and `@odata.nextLink` (an absolute
  URL with a `$skiptoken`) names the next, absent on the last (https://learn.microsoft.com/graph/paging).
- `$select` returns only those properties (plus `@odata.type` in a directoryObject collection)
  (https://learn.microsoft.com/graph/query-parameters#select-parameter).
- GET /users/{id}/manager is the manager, or 404 when there is none
  (https://learn.microsoft.com/graph/api/user-list-manager).
- Throttled requests get 429 with Retry-After in seconds
  (https://learn.microsoft.com/graph/throttling).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.directory_limits import Budget

TENANT = "00000000-0000-4000-8000-00000000beef"
CLIENT_ID = "11111111-1111-4111-8111-111111111111"
CLIENT_SECRET = "fake-client-secret"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


@dataclass
class User:
    id: str
    mail: str
    displayName: str
    department: str | None = None
    accountEnabled: bool = True
    userType: str = "Member"
    manager: str | None = None  # user id

    def json(self, select: list[str] | None) -> dict[str, Any]:
        full = {"id": self.id, "displayName": self.displayName, "mail": self.mail,
                "userPrincipalName": self.mail, "accountEnabled": self.accountEnabled,
                "department": self.department, "userType": self.userType,
                "jobTitle": "Practitioner"}
        body = {k: v for k, v in full.items() if select is None or k in select or k == "id"}
        return {"@odata.type": "#microsoft.graph.user", **body}


@dataclass
class FakeGraph:
    users: dict[str, User] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)  # group -> user or group ids
    page_size: int = 100
    budget: Budget = field(default_factory=lambda: Budget(1000, 10.0))
    requests: list[str] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)
    runner: web.AppRunner | None = None
    base: str = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/login/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_get("/v1.0/groups/{gid}/transitiveMembers", self._members)
        app.router.add_get("/v1.0/users/{uid}/manager", self._manager)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{port}"
        return self.base

    @property
    def graph_url(self) -> str:
        return f"{self.base}/v1.0"

    @property
    def login_url(self) -> str:
        return f"{self.base}/login"

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def add(self, email: str, name: str, *, groups: tuple[str, ...] = (), **kw: Any) -> User:
        u = User(f"{len(self.users) + 1:08d}-0000-4000-8000-000000000000", email, name, **kw)
        self.users[u.id] = u
        for g in groups:
            self.groups.setdefault(g, []).append(u.id)
        return u

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if request.match_info["tenant"] != TENANT:
            return web.json_response({"error": "invalid_request",
                                      "error_description": "AADSTS90002: Tenant not found."},
                                     status=400)
        if (form.get("grant_type") != "client_credentials" or form.get("scope") != GRAPH_SCOPE
                or form.get("client_id") != CLIENT_ID):
            return web.json_response({"error": "invalid_request"}, status=400)
        if form.get("client_secret") != CLIENT_SECRET:
            return web.json_response({"error": "invalid_client", "error_description":
                                      "AADSTS7000215: Invalid client secret provided."}, status=401)
        token = secrets.token_urlsafe(16)
        self.tokens.add(token)
        return web.json_response({"token_type": "Bearer", "expires_in": 3599,
                                  "ext_expires_in": 3599, "access_token": token})

    def _gate(self, request: web.Request) -> web.Response | None:
        self.requests.append(str(request.rel_url))
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return _error(401, "InvalidAuthenticationToken", "Access token is empty.")
        wait = self.budget.retry_after("app")
        if wait is not None:
            return web.json_response(
                {"error": {"code": "TooManyRequests",
                           "message": "Too many requests. Please try again later."}},
                status=429, headers={"Retry-After": str(wait)})
        return None

    def _flatten(self, gid: str, seen: set[str]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for mid in self.groups.get(gid, []):
            if mid in self.groups:
                if mid not in seen:
                    seen.add(mid)
                    out.append(("group", mid))
                    out += self._flatten(mid, seen)
            elif ("user", mid) not in out:
                out.append(("user", mid))
        return out

    async def _members(self, request: web.Request) -> web.Response:
        refused = self._gate(request)
        if refused is not None:
            return refused
        gid = request.match_info["gid"]
        if gid not in self.groups:
            return _error(404, "Request_ResourceNotFound",
                          f"Resource '{gid}' does not exist or one of its queried reference-property "
                          "objects are not present.")
        q = request.query
        top = min(int(q.get("$top", "100")), 999)
        select = q["$select"].split(",") if "$select" in q else None
        start = int(q.get("$skiptoken", "0"))
        everyone = self._flatten(gid, {gid})
        size = min(top, self.page_size)
        page = everyone[start:start + size]
        value = [self.users[i].json(select) if kind == "user" else
                 {"@odata.type": "#microsoft.graph.group", "id": i, "displayName": f"group {i}"}
                 for kind, i in page]
        body: dict[str, Any] = {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#directoryObjects",
            "value": value}
        if start + size < len(everyone):
            nxt = request.url.update_query({"$skiptoken": str(start + size)})
            body["@odata.nextLink"] = str(nxt)
        return web.json_response(body)

    async def _manager(self, request: web.Request) -> web.Response:
        refused = self._gate(request)
        if refused is not None:
            return refused
        u = self.users.get(request.match_info["uid"])
        if u is None or u.manager is None:
            return _error(404, "Request_ResourceNotFound", "Resource 'manager' does not exist.")
        select = request.query["$select"].split(",") if "$select" in request.query else None
        return web.json_response(self.users[u.manager].json(select))


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message,
                                        "innerError": {"request-id": secrets.token_hex(8)}}},
                             status=status)
