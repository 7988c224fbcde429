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
