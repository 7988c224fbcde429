"""The Teams app package: a manifest the official schema accepts, icons of the right sizes."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import jsonschema
import pytest
from PIL import Image

from staffvoice.cli import main
from tests.teams.schemas import teams_manifest_schema

APP_ID = "6f1c2a8e-3b4d-4e5f-9a0b-1c2d3e4f5a6b"


def build(tmp_path: Path, *extra: str) -> zipfile.ZipFile:
    out = tmp_path / "staffvoice-teams.zip"
    assert main(["manifest", "teams", "--app-id", APP_ID, *extra, "--out", str(out)]) == 0
    return zipfile.ZipFile(out)


def test_the_package_validates_against_the_official_teams_schema(tmp_path: Path) -> None:
    z = build(tmp_path, "--host", "staffvoice.northbridge.example")
    assert sorted(z.namelist()) == ["color.png", "manifest.json", "outline.png"]  # flat, at root
    m = json.loads(z.read("manifest.json"))
    schema = teams_manifest_schema(m["manifestVersion"])
    assert m["$schema"].endswith(f"/v{m['manifestVersion']}/MicrosoftTeams.schema.json")
    jsonschema.validators.validator_for(schema)(schema).validate(m)
    assert m["id"] == APP_ID and m["bots"][0]["botId"] == APP_ID
    assert set(m["bots"][0]["scopes"]) == {"personal", "team", "groupChat"}
    assert m["validDomains"] == ["staffvoice.northbridge.example"]
    assert m["icons"] == {"color": "color.png", "outline": "outline.png"}
    assert float(m["manifestVersion"]) >= 1.22  # a current schema version


def test_icons_have_the_sizes_teams_requires(tmp_path: Path) -> None:
    z = build(tmp_path)
    color = Image.open(io.BytesIO(z.read("color.png")))
    outline = Image.open(io.BytesIO(z.read("outline.png"))).convert("RGBA")
    assert color.format == "PNG" and color.size == (192, 192)
    assert outline.size == (32, 32)
    pixels = list(outline.getdata())
    assert pixels[0][3] == 0  # transparent background
    assert {p[:3] for p in pixels if p[3] > 0} == {(255, 255, 255)}  # white only


def test_without_host_the_package_is_still_valid(tmp_path: Path) -> None:
    m = json.loads(build(tmp_path).read("manifest.json"))
    schema = teams_manifest_schema(m["manifestVersion"])
    jsonschema.validators.validator_for(schema)(schema).validate(m)


@pytest.mark.parametrize("args, message", [
    (["--app-id", "not-a-guid"], "GUID"),
    (["--app-id", APP_ID, "--host", "https://x.example/path"], "domain name"),
])
def test_bad_arguments_are_explained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["manifest", "teams", *args, "--out", str(tmp_path / "x.zip")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.zip").exists()


def test_every_command_in_the_menu_is_one_the_bot_understands(tmp_path: Path) -> None:
    """Issue 17 item 14: the menu offers status and "what's at risk?", and each entry works."""
    from bot.core import build_router

    m = json.loads(build(tmp_path).read("manifest.json"))
    router = build_router()
    for menu in m["bots"][0]["commandLists"]:
        titles = [c["title"] for c in menu["commands"]]
        assert {"help", "status", "what's at risk?"} <= set(titles), menu["scopes"]
        for title in titles:
            assert router.match(title) is not None, title


async def test_the_privacy_and_terms_links_of_the_package_are_served(
    tmp_path: Path, loaded: object
) -> None:
    """Issue 17 item 14: the manifest's privacyUrl and termsOfUseUrl answered 404. They are
    plain pages from the programme's privacy text: a heading, the language, no script."""
    from urllib.parse import urlparse

    from aiohttp.test_utils import TestClient, TestServer

    from bot.core import Core
    from bot.programme.core_sections import DEFAULT_PRIVACY, get_setting, set_setting

    assert isinstance(loaded, Core)
    m = json.loads(build(tmp_path, "--host", "staffvoice.northbridge.example").read("manifest.json"))
    from staffvoice.serve.app import build_app
    from staffvoice.serve.health import Health

    app, lines = build_app(loaded, {"STAFFVOICE_TEAMS_ANONYMOUS": "true"}, Health(loaded))
    assert any(line.startswith("teams:") for line in lines)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        pages = {}
        for key in ("privacyUrl", "termsOfUseUrl"):
            r = await client.get(urlparse(m["developer"][key]).path)
            assert r.status == 200 and r.content_type == "text/html", key
            pages[key] = await r.text()
        for text in pages.values():
            assert '<html lang="en-GB">' in text and "<h1>" in text and "<main>" in text
            assert "<script" not in text and "Northbridge Together" in text
        assert "Pulse answers are stored without your name" in pages["privacyUrl"]
        assert 'href="/privacy"' in pages["termsOfUseUrl"]
        assert DEFAULT_PRIVACY.split("\n")[0] in pages["privacyUrl"]

        # The council's own text, from the programme file, replaces the default.
        async with loaded.db.session() as s:
            p = dict(await get_setting(s, "programme"))
            p["privacy"] = "Northbridge Council is the controller.\n\nAsk dpo@northbridge.example <any time>."
            await set_setting(s, "programme", p)
        text = await (await client.get("/privacy")).text()
        assert "<p>Northbridge Council is the controller.</p>" in text
        assert "<p>Ask dpo@northbridge.example &lt;any time&gt;.</p>" in text
        assert "Pulse answers are stored" not in text
    finally:
        await client.close()


def test_the_programme_file_takes_a_privacy_text() -> None:
    from bot.core import build_router
    from bot.programme import loader
    from bot.programme.schema import ProgrammeError

    router = build_router()
    doc = EXAMPLE_TEXT.replace("programme:\n", "programme:\n  privacy: Our own notice.\n", 1)
    loader.validate(doc, router)
    bad = EXAMPLE_TEXT.replace("programme:\n", "programme:\n  privacy: [1, 2]\n", 1)
    with pytest.raises(ProgrammeError, match="privacy"):
        loader.validate(bad, router)


EXAMPLE_TEXT = (Path(__file__).resolve().parents[2] / "examples" / "programme.yaml").read_text()
