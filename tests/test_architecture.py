"""Imports run one way (docs/architecture.md), read from every import in every source file.

    staffvoice/ (the application layer: CLI, serve)  ->  adapters/  ->  bot/  ->  storage/

A layer may import the layers to its right and never one to its left, nor the tests, nor the
test fakes (adapters/fake). "Every import" means every `import` and `from ... import` anywhere
in a file (inside functions, under TYPE_CHECKING, relative ones resolved), every
`importlib.import_module(...)` / `__import__(...)` whose name is written in the code, and every
string that names one of our modules ("adapters.slack.mount", "pkg.mod:function"), since a
table of such strings is an import done later.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from storage.base import Base
from tests.conftest import ROOT

SDKS = ("slack_bolt", "slack_sdk", "microsoft_agents", "botbuilder", "aiohttp.web")
OURS = ("bot", "storage", "adapters", "staffvoice", "tests", "bench")
TEST_CODE = ("tests", "bench", "adapters.fake")

# What each layer must never import (by module prefix).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "storage": ("bot", "adapters", "staffvoice", *TEST_CODE),
    "bot": ("adapters", "staffvoice", *TEST_CODE, *SDKS),
    "adapters": ("staffvoice", *TEST_CODE),
    "staffvoice": TEST_CODE,
}
# Our modules named as data: "adapters.slack.mount", "bot.scheduling.cli:cli".
MODULE_STRING = re.compile(rf"^(?:{'|'.join(OURS)})(?:\.[A-Za-z_]\w*)+(?::[A-Za-z_]\w*)?$")


@dataclass(frozen=True)
class Import:
    file: str
    line: int
    module: str
    how: str  # import | from | import_module | string


def _module_of(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str | None, level: int, importer: str, is_package: bool) -> str:
    """`from ..x import y` in `importer` as an absolute module name."""
    if level == 0:
        return module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _exists(root: Path, module: str) -> bool:
    path = root.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _literal_prefix(node: ast.expr) -> str | None:
    """The name passed to import_module: a string, or an f-string's leading constant part."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values:
        first = node.values[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    return None


def imports_of(path: Path, root: Path) -> list[Import]:
    """Every import `path` makes, wherever it sits in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    me = _module_of(path, root)
    is_package = path.name == "__init__.py"
    rel = str(path.relative_to(root))
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(rel, node.lineno, a.name, "import") for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module, node.level, me, is_package)
            found.append(Import(rel, node.lineno, base, "from"))
            # `from adapters import fake` imports adapters.fake
            found += [Import(rel, node.lineno, f"{base}.{a.name}", "from") for a in node.names
                      if a.name != "*"]
        elif isinstance(node, ast.Call) and node.args:
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if name in ("import_module", "__import__"):
                target = _literal_prefix(node.args[0])
                if target:
                    found.append(Import(rel, node.lineno, target, "import_module"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            module = node.value.split(":")[0]
            # Only strings naming a module that exists ("staffvoice.slack" is a logger's name).
            if MODULE_STRING.match(node.value) and _exists(root, module):
                found.append(Import(rel, node.lineno, module, "string"))
    return found


def _names(module: str, prefix: str) -> bool:
    """`module` is `prefix` or inside it; a prefix ending in '.' (an f-string's start) counts."""
    m = module.rstrip(".")
    return m == prefix or m.startswith(prefix + ".")


def violations(root: Path) -> list[str]:
    """Every import in `root`'s layers that goes the wrong way, as 'file:line: ... imports X'."""
    out = []
    for layer, banned in FORBIDDEN.items():
        for path in sorted((root / layer).rglob("*.py")):
            lines = set()
            for imp in imports_of(path, root):
                bad = next((b for b in banned if _names(imp.module, b)), None)
                if bad is not None and imp.line not in lines:  # one report per line
                    lines.add(imp.line)
                    out.append(f"{imp.file}:{imp.line}: {layer}/ {imp.how} {imp.module} "
                               f"(a {layer}/ module must not use {bad})")
    return out


def test_imports_run_one_way_even_inside_functions() -> None:
    assert violations(ROOT) == []


def test_the_reader_sees_function_level_and_indirect_imports(tmp_path: Path) -> None:
    """The checks above would catch what the old top-level-only test missed."""
    (tmp_path / "bot" / "feature").mkdir(parents=True)
    (tmp_path / "storage").mkdir()
    (tmp_path / "adapters").mkdir()
    (tmp_path / "adapters" / "server.py").write_text("")
    (tmp_path / "bot" / "feature" / "cli.py").write_text(
        "import importlib\n"
        "def run():\n"
        "    from adapters.server import attached_ports\n"
        "    from ...tests.fakes import x\n"
        "    importlib.import_module(f'adapters.{name}.mount')\n"
        "TABLE = {'serve': 'adapters.server:cli'}\n")
    (tmp_path / "storage" / "db.py").write_text(
        "def tables():\n"
        "    import bot\n"
        "    importlib.import_module('adapters.teams.tables')\n")
    found = violations(tmp_path)
    assert [v.split(":")[1] for v in found if v.startswith("bot/")] == ["3", "4", "5", "6"]
    assert [v.split(":")[1] for v in found if v.startswith("storage/")] == ["2", "3"]


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


def test_storage_loads_without_any_feature_or_adapter() -> None:
    """Importing storage (and running its migrations' environment module) pulls in no feature."""
    code = (
        "import importlib, pkgutil, sys, storage\n"
        "for m in pkgutil.walk_packages(storage.__path__, 'storage.'):\n"
        "    if '.migrations' not in m.name:\n"
        "        importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in "
        "('bot', 'adapters', 'staffvoice', 'tests'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"storage/ pulled in: {out.stdout.strip()}"


@pytest.mark.parametrize("module", ["retention", "erasure", "access", "personal"])
def test_the_privacy_runs_read_no_other_features_tables(module: str) -> None:
    """DESIGN.md: every feature has its own tables and features talk through the core's
    services, not each other's tables. The retention run, erasure and subject access own the
    rules, the order and the audit; each part's own hook removes or finds its own rows (the
    features' bot/<feature>/retention.py and erasure.py; the Teams adapter's and the web
    dashboard's rows are declared beside their tables)."""
    path = ROOT / "bot" / "privacy" / f"{module}.py"
    strangers = [f"{i.file}:{i.line}: {i.module}" for i in imports_of(path, ROOT)
                 if re.fullmatch(r"bot\.\w+\.tables(\.\w+)?", i.module)
                 and not i.module.startswith("bot.privacy.")]
    assert strangers == []
    assert "metadata.tables" not in path.read_text(encoding="utf-8")  # nor by name


def test_erasure_covers_each_parts_own_tables_only() -> None:
    """Every part's declared rows are in tables that part owns (its own tables module)."""
    from bot.privacy.erasure import parts

    owners = {"teams": "adapters.teams.tables", "web": "staffvoice.web.tables"}
    seen = set()
    for part in parts():
        home = owners.get(part.part, f"bot.{part.part}.tables")
        for rule in part.rules:
            mapped = [m.class_ for m in Base.registry.mappers if m.local_table is rule.table]
            assert [c.__module__ for c in mapped] == [home], (part.part, rule.table.name)
            seen.add(part.part)
    assert {"people", "pulse", "milestones", "broadcasts", "feedback", "audit", "privacy",
            "teams", "web"} <= seen
