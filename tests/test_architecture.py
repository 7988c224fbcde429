"""The core stays platform-neutral: importing every bot module loads no platform SDK."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

SDKS = ("slack_bolt", "slack_sdk", "microsoft_agents", "botbuilder", "aiohttp.web")


def test_core_imports_no_platform_sdk() -> None:
    code = (
        "import importlib, pkgutil, sys, bot\n"
        "for m in pkgutil.walk_packages(bot.__path__, 'bot.'):\n"
        "    importlib.import_module(m.name)\n"
        f"bad = sorted(n for n in sys.modules if n.startswith({SDKS!r}))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"bot/ pulled in platform SDKs: {out.stdout.strip()}"


def test_no_source_file_in_core_names_a_platform_sdk() -> None:
    offenders = []
    for path in (ROOT / "bot").rglob("*.py"):
        for line in path.read_text().splitlines():
            s = line.strip()
            if s.startswith(("import ", "from ")) and any(sdk in s for sdk in SDKS[:4]):
                offenders.append(f"{path.relative_to(ROOT)}: {s}")
    assert offenders == []
