"""docs/programme.md keeps up with the validators: every section and field they accept is documented.

Field names come from the code, three ways: the constants the validators use (FIELDS sets,
allowed values), the validators' own "expected one of" lists (found by putting an unknown key
into every mapping of the example file and reading the problem back, which also covers the
sets written inline in `unknown_keys` calls), and every key the example file uses.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.core import build_router
from bot.feedback import safeguarding
from bot.feedback.section import ROUTE_FIELDS
from bot.feedback.service import ANNOUNCE_CHANNELS
from bot.milestones import programme as milestones_section
from bot.milestones.status import CADENCES
from bot.milestones.status import STATUSES as MILESTONE_STATUSES
from bot.programme import loader
from bot.programme.core_sections import DAYS, ProgrammeSection
from bot.programme.schema import Doc, ProgrammeError, Section
from bot.pulse import definition
from bot.pulse import schedule as pulse_schedule
from bot.pulse.tables import KINDS
from bot.roles import ALL_ROLES
from bot.router import Router

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "programme.md"
EXAMPLE = ROOT / "examples" / "programme.yaml"
PROBE = "zz_probe_field"
EXPECTED = re.compile(r"\(expected (?:one of: )?([^)]*)\)")


@pytest.fixture(scope="module")
def router() -> Router:
    return build_router()


@pytest.fixture(scope="module")
def chunks() -> dict[str, str]:
    """The doc split at its `## `section`` headings: section key -> its text."""
    out: dict[str, str] = {}
    key = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^## `([a-z_]+)`\s*$", line)
        if m:
            key = m.group(1)
            out[key] = ""
        elif line.startswith("## "):
            key = None
        elif key is not None:
            out[key] += line + "\n"
    return out


def table_names(text: str) -> set[str]:
    """Names in the first column of every table row: | `name` | ..."""
    return set(re.findall(r"^\|\s*`([^`]+)`\s*\|", text, flags=re.MULTILINE))


def code_words(text: str) -> set[str]:
    """Inline code in the prose and tables (fenced YAML examples left out)."""
    prose = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    return set(re.findall(r"`([^`]+)`", prose))


def sections(router: Router) -> list[Section]:
    return loader.all_sections(router)


def test_every_section_the_loader_knows_has_a_heading(router: Router, chunks: dict[str, str]) -> None:
    keys = {s.key for s in sections(router)}
    assert {"programme", "themes", "organisation", "pulse_surveys", "milestones", "early_wins",
            "safeguarding"} <= keys
    missing = keys - set(chunks)
    assert not missing, f"docs/programme.md has no '## `key`' heading for: {sorted(missing)}"


def test_the_validators_field_constants_are_documented(chunks: dict[str, str]) -> None:
    wanted = {
        "programme": ProgrammeSection.FIELDS,
        "pulse_surveys": definition.FIELDS | definition.QUESTION_FIELDS,
        "milestones": milestones_section.MILESTONE_FIELDS,
        "early_wins": milestones_section.WIN_FIELDS,
        "safeguarding": ROUTE_FIELDS | set(safeguarding.CATEGORIES),
    }
    for key, fields in wanted.items():
        missing = set(fields) - table_names(chunks[key])
        assert not missing, f"{key}: fields missing from the doc's tables: {sorted(missing)}"


def test_allowed_values_are_documented(chunks: dict[str, str]) -> None:
    wanted = {
        "programme": set(DAYS),
        "organisation": set(ALL_ROLES),
        "pulse_surveys": set(KINDS) | set(pulse_schedule.EVERY) | set(pulse_schedule.DAYS)
        | {"anonymous", "attributed", "everyone"},
        "milestones": set(CADENCES) | set(MILESTONE_STATUSES),
        "early_wins": set(milestones_section.WIN_STATUSES),
        "safeguarding": set(safeguarding.CATEGORIES),
    }
    for key, values in wanted.items():
        words = code_words(chunks[key])
        # "`likert5` (1 to 5 agreement)" and "`weekly` (7 days)" count too.
        missing = {v for v in values if v not in words}
        assert not missing, f"{key}: allowed values missing from the doc: {sorted(missing)}"


def test_channel_names_features_read_are_documented(chunks: dict[str, str]) -> None:
    missing = {"roadmap_digest", "leadership_digest", *ANNOUNCE_CHANNELS} - table_names(chunks["programme"])
    assert not missing, f"programme.channels names missing from the doc: {sorted(missing)}"


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every mapping's path in the data, the first of each shape (list indexes as '*')."""
    out = []
    if isinstance(value, dict):
        out.append(path)
        for k, v in value.items():
            out += _paths(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, path + (i,))
    return out


def _shape(path: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple("*" if isinstance(p, int) else p for p in path)


def _at(data: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        data = data[p]
    return data


def _problems(data: dict[str, Any], router: Router) -> list[str]:
    """What the sections say about already-parsed data (as loader.validate, without re-reading YAML)."""
    doc = Doc(data=data, lines={})
    for section in sections(router):
        if data.get(section.key) is not None:
            section.validate(doc, data[section.key])
    return doc.problems


def _expected_lists(router: Router) -> dict[tuple[Any, ...], set[str]]:
    """For every mapping shape in the example, the field names its validator says it expects."""
    base = EXAMPLE.read_text(encoding="utf-8")
    loader.validate(base, router)  # the example itself is valid
    pristine = yaml.safe_load(base)
    assert _problems(copy.deepcopy(pristine), router) == []
    seen: dict[tuple[Any, ...], set[str]] = {}
    for path in _paths(pristine):
        if _shape(path) in seen:
            continue
        if not path:  # unknown sections are the loader's own check
            with pytest.raises(ProgrammeError) as e:
                loader.validate(base + f"\n{PROBE}: []\n", router)
            problems = e.value.problems
        else:
            data = copy.deepcopy(pristine)
            _at(data, path)[PROBE] = []
            problems = _problems(data, router)
        names: set[str] = set()
        for p in problems:
            m = EXPECTED.search(p)
            if PROBE in p and m:
                names |= {n.strip() for n in m.group(1).split(",")}
        seen[_shape(path)] = names
    return seen


def test_every_field_the_validators_expect_is_documented(router: Router, chunks: dict[str, str]) -> None:
    found = _expected_lists(router)
    top = found.pop((), set())
    assert top >= {s.key for s in sections(router)}
    assert not top - set(chunks), f"sections missing from the doc: {sorted(top - set(chunks))}"
    checked = 0
    for shape, names in found.items():
        if not names:
            continue  # a free-form mapping (programme.channels)
        checked += 1
        missing = names - table_names(chunks[shape[0]])
        assert not missing, f"{'.'.join(map(str, shape))}: fields missing from the doc: {sorted(missing)}"
    # programme, working_hours, anonymity, themes, organisation, teams, people, work_pattern,
    # surveys, schedule, questions, early wins, milestones, safeguarding, routes, patterns, feedback
    assert checked >= 15


def test_every_key_in_the_example_is_documented(chunks: dict[str, str]) -> None:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    missing = []
    for path in _paths(data):
        if not path:
            continue
        names = table_names(chunks[path[0]])
        for key in _at(data, path):
            if key not in names:
                missing.append(".".join(map(str, _shape(path + (key,)))))
    for key in data:
        assert key in chunks, f"section '{key}' has no heading in the doc"
    assert not missing, f"keys of the example missing from the doc: {sorted(set(missing))}"


def test_the_doc_covers_the_commands_and_the_example_points_to_it() -> None:
    doc = DOC.read_text(encoding="utf-8")
    for cmd in ("staffvoice programme check", "staffvoice programme load", "staffvoice programme export"):
        assert cmd in doc
    head = EXAMPLE.read_text(encoding="utf-8").splitlines()[:5]
    assert any("docs/programme.md" in line and line.startswith("#") for line in head)


def test_the_docs_yaml_snippets_parse() -> None:
    doc = DOC.read_text(encoding="utf-8")
    snippets = re.findall(r"```yaml\n(.*?)```", doc, flags=re.DOTALL)
    assert len(snippets) >= 7
    for s in snippets:
        yaml.safe_load(s.replace("...", "etc"))
