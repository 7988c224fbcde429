"""Signing in to the dashboard over HTTP (no browser): the OpenID Connect rules the dashboard
enforces, sessions that expire and end, one-time links only on loopback, CSRF and headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest
from sqlalchemy import func, select

from bot.clock import FakeClock
from bot.core import Core
from staffvoice.web.auth import create_login_link
from staffvoice.web.tables import WebSession
from tests.web.server import Server, serve_dashboard

# What reverse proxies and tunnels add to a request they forwarded (one of them is enough).
PROXY_HEADERS = {"X-Forwarded-For": "203.0.113.9", "Forwarded": "for=203.0.113.9",
                 "X-Real-IP": "203.0.113.9", "Via": "1.1 proxy.example",
                 "X-Forwarded-Proto": "https", "X-Forwarded-Host": "staffvoice.example",
                 "CF-Connecting-IP": "203.0.113.9", "True-Client-IP": "203.0.113.9"}

LEADER = "director@northbridge.example"


@pytest.fixture
async def server(loaded: Core) -> AsyncIterator[Server]:
    async with serve_dashboard(loaded) as running:
        yield running


def _client(server: Server) -> aiohttp.ClientSession:
    # The cookies are Secure: the jar sends them to this loopback origin as a browser does.
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[server.url])
    return aiohttp.ClientSession(cookie_jar=jar)


async def _oidc(http: aiohttp.ClientSession, server: Server) -> aiohttp.ClientResponse:
    """Start at the sign-in link and follow each redirect by hand; the last response."""
    url = f"{server.url}/app/auth/slack/start"
    while True:
        resp = await http.get(url, allow_redirects=False)
        if resp.status not in (302, 303) or "/app/auth/" not in resp.headers["Location"] \
                and "/authorize" not in resp.headers["Location"]:
            return resp
        url = resp.headers["Location"]


async def _sessions(core: Core) -> int:
    async with core.db.session() as s:
        return int(await s.scalar(select(func.count()).select_from(WebSession)) or 0)


async def test_signing_in_with_slack_starts_a_session_with_a_sealed_secure_cookie(server: Server) -> None:
    server.oidc.sign_in_as(LEADER)
    async with _client(server) as http:
        resp = await _oidc(http, server)
        assert resp.status == 303 and resp.headers["Location"] == "/app/"
        cookie = resp.cookies["sv_session"]
        assert cookie["httponly"] and cookie["secure"] and cookie["samesite"] == "Lax"
        assert LEADER not in cookie.value and len(cookie.value) > 40
        home = await http.get(f"{server.url}/app/")
        assert home.status == 200 and "Signed in as Director of Children" in await home.text()
    assert await _sessions(server.core) == 1


@pytest.mark.parametrize("tamper, rule", [
    ("audience", "aud must contain our client_id (Core 3.1.3.7 step 3)"),
    ("issuer", "iss must be the issuer (step 2)"),
    ("nonce", "nonce must be the one we sent (step 11)"),
    ("expired", "exp in the future, iat recent (steps 9, 10)"),
    ("signature", "signed by the provider's published key (step 6)"),
    ("alg-none", "an unsigned token is never accepted (step 7)"),
])
async def test_an_id_token_that_breaks_a_rule_signs_nobody_in(server: Server, tamper: str, rule: str) -> None:
    server.oidc.sign_in_as(LEADER)
    server.oidc.tamper = tamper
    async with _client(server) as http:
        resp = await _oidc(http, server)
        assert resp.status == 400, rule
        assert "Sign-in failed: the sign-in could not be verified" in await resp.text()
        assert "sv_session" not in resp.cookies
        home = await http.get(f"{server.url}/app/", allow_redirects=False)
        assert home.status == 303 and home.headers["Location"] == "/app/signin"
    assert await _sessions(server.core) == 0


async def test_an_unverified_or_unknown_email_is_refused(server: Server) -> None:
    server.oidc.sign_in_as(LEADER, verified=False)
    async with _client(server) as http:
        resp = await _oidc(http, server)
        assert resp.status == 400 and "did not confirm that your email address is verified" in await resp.text()
    server.oidc.sign_in_as("someone@elsewhere.example")
    async with _client(server) as http:
        resp = await _oidc(http, server)
        assert resp.status == 403 and "not part of the programme" in await resp.text()
    assert await _sessions(server.core) == 0


async def test_a_callback_with_another_state_or_a_used_code_is_refused(server: Server) -> None:
    async def provider_redirect(http: aiohttp.ClientSession) -> str:
        server.oidc.sign_in_as(LEADER)
        start = await http.get(f"{server.url}/app/auth/slack/start", allow_redirects=False)
        back = await http.get(start.headers["Location"], allow_redirects=False)
        return back.headers["Location"]

    async with _client(server) as http:
        callback = await provider_redirect(http)
        forged = await http.get(callback.replace("state=", "state=x"), allow_redirects=False)
        assert forged.status == 400 and "had expired or was not started here" in await forged.text()
        # A tampered callback ends the attempt: even the genuine one must start again.
        assert (await http.get(callback, allow_redirects=False)).status == 400
        callback = await provider_redirect(http)
        assert (await http.get(callback, allow_redirects=False)).status == 303
    async with _client(server) as other:  # the same callback replayed in another browser
        replay = await other.get(callback, allow_redirects=False)
        assert replay.status == 400
    assert server.oidc.token_requests == 1  # refused callbacks never reached the token endpoint


async def test_a_session_ends_when_idle_and_at_sign_out(server: Server) -> None:
    clock = server.core.clock
    assert isinstance(clock, FakeClock)
    server.oidc.sign_in_as(LEADER)
    async with _client(server) as http:
        await _oidc(http, server)
        clock.advance(timedelta(minutes=31))
        resp = await http.get(f"{server.url}/app/", allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == "/app/signin"
    assert await _sessions(server.core) == 0
    server.oidc.sign_in_as(LEADER)
    async with _client(server) as http:
        await _oidc(http, server)
        cookie = http.cookie_jar.filter_cookies(server.url)["sv_session"].value  # type: ignore[arg-type]
        page = await (await http.get(f"{server.url}/app/")).text()
        token = page.split('name="csrf" value="')[1].split('"')[0]
        out = await http.post(f"{server.url}/app/signout", data={"csrf": token}, allow_redirects=False)
        assert out.status == 303 and out.headers["Location"] == "/app/signedout"
    assert await _sessions(server.core) == 0
    async with aiohttp.ClientSession() as stolen:  # the old cookie is worthless now
        resp = await stolen.get(f"{server.url}/app/", headers={"Cookie": f"sv_session={cookie}"},
                                allow_redirects=False)
        assert resp.status == 303


async def test_signing_in_again_ends_the_session_the_browser_had(server: Server) -> None:
    """Someone signs in on a browser that is still signed in (a shared office computer): the
    new session replaces the old one on the server too, so a copy of the old cookie is dead."""
    async with _client(server) as http:
        for email in (LEADER, "changelead@northbridge.example"):
            link = await create_login_link(server.core, email, server.url)
            page = await (await http.get(link)).text()
            token = page.split('name="csrf" value="')[1].split('"')[0]
            used = await http.post(f"{server.url}/app/auth/link", allow_redirects=False,
                                   data={"csrf": token, "token": link.split("token=")[1]})
            assert used.status == 303
            if email == LEADER:
                first = http.cookie_jar.filter_cookies(server.url)["sv_session"].value  # type: ignore[arg-type]
        home = await (await http.get(f"{server.url}/app/")).text()
        assert "Signed in as Change Programme Lead" in home
    assert await _sessions(server.core) == 1
    async with aiohttp.ClientSession() as copy:
        resp = await copy.get(f"{server.url}/app/", headers={"Cookie": f"sv_session={first}"},
                              allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == "/app/signin"


async def test_a_form_needs_its_csrf_token_and_our_origin(server: Server) -> None:
    link = await create_login_link(server.core, "safeguarding.lead@northbridge.example", server.url)
    async with _client(server) as http:
        page = await (await http.get(link)).text()
        token = page.split('name="csrf" value="')[1].split('"')[0]
        used = await http.post(f"{server.url}/app/auth/link", allow_redirects=False,
                               data={"csrf": token, "token": link.split("token=")[1]})
        assert used.status == 303
        home = await (await http.get(f"{server.url}/app/")).text()
        token = home.split('name="csrf" value="')[1].split('"')[0]
        url = f"{server.url}/app/safeguarding/acknowledge"
        no_token = await http.post(url, data={"item": "x"})
        assert no_token.status == 403 and "This form has expired" in await no_token.text()
        cross = await http.post(url, data={"item": "x", "csrf": token},
                                headers={"Sec-Fetch-Site": "cross-site"})
        assert cross.status == 403
        other_origin = await http.post(url, data={"item": "x", "csrf": token},
                                       headers={"Origin": "https://attacker.example"})
        assert other_origin.status == 403
        ours = await http.post(url, data={"item": "x", "csrf": token}, allow_redirects=False)
        assert ours.status == 404  # past CSRF: the item does not exist
        # A charset Python has no codec for: a clear page, never "something went wrong" (500).
        odd = await http.post(url, data=f"item=x&csrf={token}".encode(), headers={
            "Content-Type": "application/x-www-form-urlencoded; charset=nonesuch"})
        assert odd.status == 400 and "Something in that request was not right" in await odd.text()


async def test_every_page_carries_the_security_headers(server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/app/signin", "/app/nowhere", "/static/site.css"):
            resp = await http.get(server.url + path)
            h = resp.headers
            assert "default-src 'none'" in h["Content-Security-Policy"], path
            assert "unsafe-inline" not in h["Content-Security-Policy"]
            assert h["X-Content-Type-Options"] == "nosniff" and h["Referrer-Policy"] == "no-referrer"
        assert (await http.get(server.url + "/app/nowhere")).status == 404


async def test_a_sign_in_link_works_once_and_only_on_loopback(loaded: Core) -> None:
    async with serve_dashboard(loaded) as server, _client(server) as http:
        link = await create_login_link(loaded, LEADER, server.url)
        page = await (await http.get(link)).text()
        token = page.split('name="csrf" value="')[1].split('"')[0]
        form = {"csrf": token, "token": link.split("token=")[1]}
        first = await http.post(f"{server.url}/app/auth/link", data=form, allow_redirects=False)
        assert first.status == 303
    async with serve_dashboard(loaded) as server2, _client(server2) as other:
        page = await (await other.get(link.replace(server.url, server2.url))).text()
        form["csrf"] = page.split('name="csrf" value="')[1].split('"')[0]
        again = await other.post(f"{server2.url}/app/auth/link", data=form, allow_redirects=False)
        assert again.status == 400 and "has been used or has expired" in await again.text()
    async with serve_dashboard(loaded, bound="0.0.0.0") as server, _client(server) as http:
        link = await create_login_link(loaded, LEADER, server.url)
        assert (await http.get(link)).status == 404


async def test_a_sign_in_link_is_refused_through_a_reverse_proxy_on_the_same_machine(loaded: Core) -> None:
    """A proxy on the server's machine (nginx in front of 127.0.0.1) makes the server look
    loopback-only: a request it forwards is refused all the same, so a link never signs in
    from the internet, past the sign-in provider and its second factor."""
    async with serve_dashboard(loaded) as server, _client(server) as http:
        link = await create_login_link(loaded, LEADER, server.url)
        for header, value in PROXY_HEADERS.items():
            forwarded = {header: value}
            assert (await http.get(link, headers=forwarded)).status == 404, header
        page = await (await http.get(link)).text()  # the same link, from this machine: fine
        token = page.split('name="csrf" value="')[1].split('"')[0]
        used = await http.post(f"{server.url}/app/auth/link", allow_redirects=False,
                               headers={"X-Forwarded-For": "203.0.113.9"},
                               data={"csrf": token, "token": link.split("token=")[1]})
        assert used.status == 404 and "sv_session" not in used.cookies
    assert await _sessions(loaded) == 0


def test_the_cli_refuses_a_sign_in_link_unless_the_server_is_on_loopback(capsys: pytest.CaptureFixture[str]) -> None:
    from bot.config import Settings
    from staffvoice.cli import main

    status = main(["web", "login-link", "--as", LEADER],
                  settings=Settings(host="0.0.0.0", secret_key="k" * 40))
    assert status == 2
    assert capsys.readouterr().err.startswith("error: sign-in links are for local demos only")


@pytest.fixture
async def entra(loaded: Core) -> AsyncIterator[Server]:
    """The dashboard with the fake provider registered as Microsoft Entra ID (tenant t-north)."""
    from aiohttp import web

    from staffvoice.serve.app import build_app
    from staffvoice.serve.health import Health
    from tests.fakes.oidc import FakeOIDC

    fake = FakeOIDC()
    issuer = await fake.start()
    env = {"STAFFVOICE_BOUND_HOSTS": "127.0.0.1", "STAFFVOICE_WEB_ENTRA_TENANT": "t-north",
           "STAFFVOICE_WEB_ENTRA_CLIENT_ID": fake.client_id,
           "STAFFVOICE_WEB_ENTRA_CLIENT_SECRET": fake.client_secret,
           "STAFFVOICE_WEB_ENTRA_ISSUER": issuer}
    app, _ = build_app(loaded, env, Health(loaded))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    fake.redirect_uris.add(f"{url}/app/auth/entra/callback")
    try:
        yield Server(url, loaded, fake, runner)
    finally:
        await runner.cleanup()
        await fake.stop()


async def _entra(http: aiohttp.ClientSession, server: Server) -> aiohttp.ClientResponse:
    url = f"{server.url}/app/auth/entra/start"
    while True:
        resp = await http.get(url, allow_redirects=False)
        loc = resp.headers.get("Location", "")
        if resp.status not in (302, 303) or ("/app/auth/" not in loc and "/authorize" not in loc):
            return resp
        url = loc


async def test_microsoft_sign_in_needs_the_tenant_and_a_domain_verified_email(entra: Server) -> None:
    cases = [({"tid": "t-north", "xms_edov": True}, 303),   # ours, domain-verified: in
             ({"tid": "t-north"}, 400),                    # email not verified by the domain owner
             ({"tid": "t-elsewhere", "xms_edov": True}, 400)]  # another organisation's tenant
    for claims, status in cases:
        # Entra sends no email_verified claim: only xms_edov says the email is the person's.
        entra.oidc.sign_in_as(LEADER, verified=False, **claims)
        async with _client(entra) as http:
            resp = await _entra(http, entra)
            assert resp.status == status, claims
    assert await _sessions(entra.core) == 1
