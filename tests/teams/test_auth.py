"""Every request to /api/messages proves it comes from the Bot Framework, or gets 401."""

from __future__ import annotations

import time

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from adapters.teams.config import TeamsConfigError
from adapters.teams.mount import mount
from bot.core import Core
from tests.conformance.drivers.base import replies
from tests.conformance.drivers.teams import TeamsDriver

# What reverse proxies and tunnels add to a request they forwarded (one of them is enough).
PROXY_HEADERS = {"X-Forwarded-For": "203.0.113.9", "Forwarded": "for=203.0.113.9",
                 "X-Real-IP": "203.0.113.9", "Via": "1.1 proxy.example",
                 "X-Forwarded-Proto": "https", "X-Forwarded-Host": "staffvoice.example",
                 "CF-Connecting-IP": "203.0.113.9", "True-Client-IP": "203.0.113.9"}

PRACTITIONER = "practitioner1@northbridge.example"


async def post_as(teams: TeamsDriver, headers: dict[str, str], text: str = "help") -> int:
    uid, cid = teams.dm_id(PRACTITIONER)
    assert teams.http is not None
    activity = teams.activity(uid, cid, "personal", text=text)
    async with teams.http.post(teams.url, json=activity, headers=headers) as r:
        return r.status


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_valid_token_is_accepted_and_answered(teams: TeamsDriver) -> None:
    before = len(replies(teams.seen(PRACTITIONER)))
    assert await post_as(teams, bearer(teams.fake.sign())) == 202
    assert len(replies(teams.seen(PRACTITIONER))) == before + 1
    assert "whoami" in teams.seen(PRACTITIONER)[-1]


@pytest.mark.parametrize("claims", [
    {"iss": "https://evil.example"},
    {"aud": "someone-elses-app"},
    {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200, "nbf": None},
    {"serviceurl": "https://attacker.example/"},
    {"serviceurl": None},
    {"exp": None},
], ids=["wrong-issuer", "wrong-audience", "expired", "serviceurl-mismatch", "no-serviceurl",
        "no-expiry"])
async def test_tokens_with_bad_claims_are_refused(teams: TeamsDriver, claims: dict) -> None:
    before = len(teams.fake.state.posted)
    assert await post_as(teams, bearer(teams.fake.sign(claims))) == 401
    assert len(teams.fake.state.posted) == before  # nothing was handled


async def test_a_token_signed_by_an_unknown_key_is_refused(teams: TeamsDriver) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert await post_as(teams, bearer(teams.fake.sign(key=other, kid="not-published"))) == 401
    # Same key id as the real one but the wrong key: the signature check fails.
    assert await post_as(teams, bearer(teams.fake.sign(key=other))) == 401


async def test_alg_none_and_symmetric_tricks_are_refused(teams: TeamsDriver) -> None:
    assert await post_as(teams, bearer(teams.fake.sign(alg="none"))) == 401
    unsigned = teams.fake.sign(alg="none").rsplit(".", 1)[0] + "."
    assert await post_as(teams, bearer(unsigned)) == 401
    # HS256 keyed with the public key (the classic algorithm confusion attack).
    pem = teams.fake.key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    forged = jwt.encode({"iss": "https://api.botframework.com", "aud": "app-id",
                         "exp": int(time.time()) + 600, "serviceurl": teams.fake.service_url},
                        pem.decode()[:64], algorithm="HS256", headers={"kid": teams.fake.kid})
    assert await post_as(teams, bearer(forged)) == 401


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic abc", "Bearer a b",
                                    "Bearer not.a.jwt", "Bearer " + "x" * 5000])
async def test_missing_or_malformed_authorization_is_401_never_500(
    teams: TeamsDriver, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    assert await post_as(teams, headers) == 401


async def test_garbage_bodies_are_refused_without_a_500(teams: TeamsDriver) -> None:
    assert teams.http is not None
    for body, headers in [
        (b"not json", bearer(teams.fake.sign())),
        (b"[]", bearer(teams.fake.sign())),
        (b'{"type": 5, "conversation": "x"}', bearer(teams.fake.sign())),
        (b"not json", {}),
    ]:
        async with teams.http.post(teams.url, data=body, headers=headers) as r:
            assert r.status in (400, 401), (body, r.status)


def test_without_credentials_the_endpoint_is_off(core: Core) -> None:
    app = web.Application()
    assert mount(app, core, {}) is None
    assert not [r for r in app.router.routes() if r.resource and r.resource.canonical == "/api/messages"]


def test_anonymous_mode_needs_an_explicit_opt_in_and_a_loopback_address(
    core: Core, capsys: pytest.CaptureFixture[str]
) -> None:
    app = web.Application()
    status = mount(app, core, {"STAFFVOICE_TEAMS_ANONYMOUS": "true", "STAFFVOICE_HOST": "127.0.0.1"})
    assert status is not None and "ANONYMOUS" in status
    assert "WITHOUT authentication" in capsys.readouterr().err  # announced loudly
    for host in ("0.0.0.0", "10.1.2.3", "::", "teams.northbridge.example"):
        with pytest.raises(TeamsConfigError, match="loopback"):
            mount(web.Application(), core, {"STAFFVOICE_TEAMS_ANONYMOUS": "true",
                                            "STAFFVOICE_HOST": host})


def test_credentials_always_win_over_the_anonymous_switch(core: Core) -> None:
    status = mount(web.Application(), core, {
        "CONNECTIONS__SERVICE_CONNECTION__SETTINGS__CLIENTID": "app-id",
        "CONNECTIONS__SERVICE_CONNECTION__SETTINGS__CLIENTSECRET": "s3cret-value",
        "STAFFVOICE_TEAMS_ANONYMOUS": "true", "STAFFVOICE_HOST": "0.0.0.0",
    })
    assert status is not None and "JWT" in status and "s3cret" not in status


async def test_anonymous_mode_serves_local_tools_without_tokens(loaded: Core) -> None:
    """As with the Agents Playground: no token in, no token out, loopback only."""
    import aiohttp

    from tests.fakes.teams_connector import FakeConnector

    fake = await FakeConnector().start()
    fake.state.require_auth = False
    user = fake.add_user(PRACTITIONER)
    user.installed = True
    app = web.Application()
    assert mount(app, loaded, {"STAFFVOICE_TEAMS_ANONYMOUS": "true"})
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/api/messages"  # type: ignore[union-attr]
    try:
        activity = {"type": "message", "id": "p-1", "text": "help", "channelId": "msteams",
                    "serviceUrl": fake.service_url, "from": {"id": user.id, "name": user.name},
                    "recipient": {"id": "28:local-bot"},
                    "conversation": {"id": fake.personal_id(user.id), "conversationType": "personal",
                                     "tenantId": fake.state.tenant_id}}
        async with aiohttp.ClientSession() as http, http.post(url, json=activity) as r:
            assert r.status == 202
        posted = fake.in_conversation(fake.personal_id(user.id))
        assert posted and "whoami" in str(posted[-1].current)
        # A reverse proxy on this machine makes the internet look local: what it forwards is
        # refused, and nobody is answered (anonymous mode is for local tools only).
        for header, value in PROXY_HEADERS.items():
            async with aiohttp.ClientSession() as http, http.post(
                    url, json={**activity, "id": f"p-{header}"}, headers={header: value}) as r:
                assert r.status == 401, header
        assert len(fake.in_conversation(fake.personal_id(user.id))) == len(posted)
    finally:
        await runner.cleanup()
        await fake.close()


async def test_a_reused_token_is_verified_once_and_still_checked_each_time(
    teams: TeamsDriver, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Bot Connector sends one token many times: its signature is checked and its header
    parsed once (PyJWT's parse walks every character of the token in Python: bench/README,
    cpu11), while its expiry, its key and its serviceurl are checked on every request."""
    from adapters.teams import auth
    from adapters.teams.config import BOT_FRAMEWORK_ISSUER

    now = [time.time()]
    validator = auth.TokenValidator(teams.fake.state.app_id, (teams.fake.metadata_url,),
                                    (BOT_FRAMEWORK_ISSUER,), clock=lambda: now[0])
    decoded: list[str] = []
    real_decode = jwt.decode

    def counting(token: str, *a: object, **kw: object) -> dict:
        decoded.append(token)
        return real_decode(token, *a, **kw)  # type: ignore[arg-type]

    headers: list[str] = []
    real_header = jwt.get_unverified_header

    def parsing(token: str) -> dict:
        headers.append(token)
        return real_header(token)

    monkeypatch.setattr(auth.jwt, "decode", counting)
    monkeypatch.setattr(auth.jwt, "get_unverified_header", parsing)
    token = teams.fake.sign({"exp": int(now[0]) + 600})
    try:
        for _ in range(3):
            claims = await validator.validate(f"Bearer {token}", teams.fake.service_url, "msteams")
            assert claims.claims["aud"] == teams.fake.state.app_id
        assert decoded == [token]
        assert headers == [token]  # before: parsed on every request
        with pytest.raises(auth.AuthError):  # a cached token still names its service
            await validator.validate(f"Bearer {token}", "https://attacker.example/", "msteams")
        with pytest.raises(auth.AuthError):  # ... and its channel must be endorsed
            await validator.validate(f"Bearer {token}", teams.fake.service_url, "slack")
        # The key was withdrawn, another published in its place (a refetch is not due yet).
        key = validator._keys.pop(teams.fake.kid)
        validator._keys["fake-key-2"] = key
        with pytest.raises(auth.AuthError):
            await validator.validate(f"Bearer {token}", teams.fake.service_url, "msteams")
        validator._keys[teams.fake.kid] = key
        await validator.validate(f"Bearer {token}", teams.fake.service_url, "msteams")
        now[0] += 600 + auth.LEEWAY_S + 1  # past expiry and its leeway: refused, cached or not
        for _ in range(2):
            with pytest.raises(auth.AuthError):
                await validator.validate(f"Bearer {token}", teams.fake.service_url, "msteams")
        assert decoded == [token, token]  # dropped from the cache once found expired
        assert headers == [token, token]
    finally:
        await validator.close()
