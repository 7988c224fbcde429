"""Microsoft Entra ID through Microsoft Graph: members of configured groups, as plain REST.

Plain aiohttp rather than `msgraph-sdk`: three calls (a client-credentials token, a group's
transitive members, a user's manager) do not justify Kiota and azure-identity, and MSAL's
Python client is synchronous (it would block the event loop for every token request).
- token: POST {login}/{tenant}/oauth2/v2.0/token, grant_type=client_credentials,
  scope https://graph.microsoft.com/.default
  https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow
- members: GET /groups/{id}/transitiveMembers (nested groups flattened), paged with
  `@odata.nextLink` https://learn.microsoft.com/graph/api/group-list-transitivemembers ,
  https://learn.microsoft.com/graph/paging ; users only (`@odata.type`), disabled accounts
  (`accountEnabled: false`) are leavers.
- manager: GET /users/{id}/manager (404 when none) https://learn.microsoft.com/graph/api/user-list-manager
- throttling: 429 (or 503/504) with Retry-After: wait that long and try again
  https://learn.microsoft.com/graph/throttling ; through the one retry policy (storage/retry.py):
  the server's Retry-After when it gives one, else a jittered wait growing from 1 s, at most
  `MAX_WAIT_S`, `RETRIES` tries in all
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp

from adapters.directory import SyncConfig
from bot.people.directory import Listing, Record, SourceError
from storage.retry import Retry

SELECT = "id,displayName,mail,userPrincipalName,accountEnabled,department,userType"
RETRIES = 6
MAX_WAIT_S = 120.0
THROTTLED = (429, 503, 504)


class _Throttled(Exception):
    def __init__(self, wait: float | None) -> None:
        super().__init__(f"throttled (Retry-After {wait})")
        self.wait = wait


def _retry_after(r: aiohttp.ClientResponse) -> float | None:
    try:
        return max(0.0, float(r.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None  # absent, or an HTTP date: the policy's own backoff


THROTTLING = Retry(retry_on=lambda e: isinstance(e, _Throttled), attempts=RETRIES, base=1.0,
                   cap=MAX_WAIT_S, after=lambda e: e.wait if isinstance(e, _Throttled) else None)


class _Graph:
    def __init__(self, cfg: SyncConfig, session: aiohttp.ClientSession) -> None:
        self.cfg, self.http = cfg, session
        self.token = ""

    async def login(self) -> None:
        c = self.cfg
        if not (c.tenant_id and c.client_id and c.client_secret):
            raise SourceError("Microsoft Graph sync needs the bot's app registration: "
                              "CONNECTIONS__SERVICE_CONNECTION__SETTINGS__CLIENTID, __CLIENTSECRET "
                              "and __TENANTID (with GroupMember.Read.All and User.Read.All)")
        url = f"{c.login_url}/{quote(c.tenant_id)}/oauth2/v2.0/token"
        async with self.http.post(url, data={
                "client_id": c.client_id, "client_secret": c.client_secret,
                "grant_type": "client_credentials",
                "scope": "https://graph.microsoft.com/.default"}) as r:
            body = await _json(r)
            if r.status != 200 or "access_token" not in body:
                raise SourceError(f"Microsoft Entra ID refused the app's credentials "
                                  f"({body.get('error') or r.status})")
            self.token = body["access_token"]

    async def get(self, url: str) -> dict[str, Any] | None:
        """One GET, throttling waited out; None for 404."""
        try:
            return await THROTTLING.run(lambda: self._get_once(url))
        except _Throttled:
            raise SourceError("Microsoft Graph kept throttling; try again later") from None

    async def _get_once(self, url: str) -> dict[str, Any] | None:
        async with self.http.get(url, headers={"Authorization": f"Bearer {self.token}"}) as r:
            if r.status in THROTTLED:
                raise _Throttled(_retry_after(r))
            if r.status == 404:
                return None
            body = await _json(r)
            if r.status != 200:
                code = (body.get("error") or {}).get("code") if isinstance(body.get("error"), dict) else None
                raise SourceError(f"Microsoft Graph refused {url.split('?')[0]}: {code or r.status}")
            return body


async def _json(r: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        body = await r.json(content_type=None)
    except (ValueError, aiohttp.ContentTypeError):
        return {}
    return body if isinstance(body, dict) else {}


async def graph_listing(cfg: SyncConfig) -> Listing:
    if not cfg.graph_groups:
        raise SourceError("Microsoft Graph sync needs STAFFVOICE_GRAPH_GROUPS (group ids)")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            g = _Graph(cfg, http)
            await g.login()
            return await _read(g, cfg)
    except (aiohttp.ClientError, TimeoutError) as e:
        raise SourceError(f"cannot reach Microsoft Graph ({type(e).__name__})") from None


async def _read(g: _Graph, cfg: SyncConfig) -> Listing:
    users: dict[str, dict[str, Any]] = {}
    for group in cfg.graph_groups:
        url: str | None = (f"{cfg.graph_url}/groups/{quote(group)}/transitiveMembers"
                           f"?$select={SELECT}&$top=999")
        while url:
            page = await g.get(url)
            if page is None:
                raise SourceError(f"Microsoft Graph has no group {group}")
            for m in page.get("value") or []:
                if m.get("@odata.type") == "#microsoft.graph.user":
                    users.setdefault(str(m.get("id")), m)
            url = page.get("@odata.nextLink")
    out = Listing("teams", [], detail="Microsoft Entra ID")
    guests = no_email = 0
    email_of = {uid: str(u.get("mail") or u.get("userPrincipalName") or "").strip().lower()
                for uid, u in users.items()}
    for uid, u in users.items():
        email = email_of[uid]
        where = f"Entra user {uid}"
        if u.get("userType") == "Guest":
            guests += 1
            continue
        if not email or "#EXT#" in email.upper():
            no_email += 1
            continue
        if u.get("accountEnabled") is False:
            out.gone.append((where, email))
            continue
        rec = Record(where, email, name=u.get("displayName") or None,
                     columns={"team": "department", "manager": "manager", "name": "displayName"})
        if cfg.graph_teams_from == "manager":
            mgr = await g.get(f"{cfg.graph_url}/users/{quote(uid)}/manager"
                              "?$select=id,mail,userPrincipalName")
            if mgr is not None:
                rec.manager = str(mgr.get("mail") or mgr.get("userPrincipalName") or "").lower() or None
        elif u.get("department"):
            dept = str(u["department"]).replace("/", "-").strip()
            rec.team = f"{cfg.graph_team_parent}/{dept}" if cfg.graph_team_parent else dept
        out.records.append(rec)
    # A manager outside the synced groups is not a person here: their reports stay unplaced.
    known = {r.email for r in out.records}
    for r in out.records:
        if r.manager and r.manager not in known:
            out.notes.append(f"{r.where}: manager {r.manager} is not in the synced groups")
            r.manager = None
    if guests:
        out.notes.append(f"{guests} guest account(s) skipped: guests never take part")
    if no_email:
        out.notes.append(f"{no_email} account(s) without a mailbox skipped")
    return out
