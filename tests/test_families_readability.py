"""The public pages' reading age: measured, held to what they are written for, and reported to
whoever edits a programme's wording (`staffvoice families reading-age`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import Settings
from staffvoice.cli import main
from staffvoice.web.families import readability
from storage.db import Database
from tests.conftest import EXAMPLE

OFFICIAL = ("Notwithstanding the aforementioned considerations, practitioners are encouraged to "
            "communicate any organisational dissatisfaction through the appropriate institutional "
            "mechanisms established for consultation.")


@pytest.mark.parametrize(("word", "count"), [
    ("cat", 1), ("hoped", 1), ("table", 2), ("making", 2), ("family", 3), ("together", 3),
    ("communication", 5), ("organisational", 6),
])
def test_syllables_by_rule_of_thumb(word: str, count: int) -> None:
    assert readability.syllables(word) == count


def test_plain_words_read_younger_than_official_ones() -> None:
    plain = readability.measure(["The cat sat on the mat.", "We read what you tell us."])
    hard = readability.measure([OFFICIAL])
    assert plain.age < 7 < 16 < hard.age
    assert "organisational" in hard.hard_words and not plain.hard_words
    assert hard.longest.startswith("Notwithstanding the aforementioned")


def test_each_shipped_page_is_within_the_reading_age_it_is_written_for() -> None:
    got = {r.audience: r for r in readability.pages({})}
    assert set(got) == {"families", "young_people"}
    for r in got.values():
        assert r.words > 300  # the whole page was read, not a few labels
        assert 5 <= r.age <= readability.AIM, r
        assert len(r.hardest) >= 8  # the long texts were scored one by one too
        assert not r.above(readability.AIM), r.hardest[:3]


def test_the_command_scores_the_programmes_own_words_and_fails_above_the_aim(
        db: Database, settings: Settings, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["programme", "load", str(EXAMPLE)], settings=settings) == 0
    capsys.readouterr()
    assert main(["families", "reading-age"], settings=settings) == 0
    out = capsys.readouterr().out
    assert "/families (parents and carers): reading age" in out and "(ok)" in out
    assert "above" not in out

    text = EXAMPLE.read_text(encoding="utf-8").replace(
        "      families:\n        intro: >-\n",
        f"      young_people:\n        intro: {OFFICIAL}\n        working_hint: {OFFICIAL}\n"
        "      families:\n        intro: >-\n", 1)
    assert OFFICIAL in text
    hard = tmp_path / "programme.yaml"
    hard.write_text(text, encoding="utf-8")
    assert main(["programme", "load", str(hard)], settings=settings) == 0
    capsys.readouterr()
    assert main(["families", "reading-age"], settings=settings) == 1
    lines = capsys.readouterr().out.splitlines()
    young = next(x for x in lines if x.startswith("/young-people"))
    assert "above 9" in young
    assert any(x.startswith("  text above 9: intro (reading age") for x in lines)
    assert any(x.startswith("  text above 9: working_hint") for x in lines)
    assert next(x for x in lines if x.startswith("/families")).endswith("sentences")
    assert any("Notwithstanding the aforementioned" in x for x in lines)
    assert any(x.strip().startswith("long words:") and "organisational" in x for x in lines)
    # A looser limit passes it; a nonsense one is refused with a clear error.
    assert main(["families", "reading-age", "--max", "40"], settings=settings) == 0
    capsys.readouterr()
    assert main(["families", "reading-age", "--max", "60"], settings=settings) == 2
    assert "--max must be a reading age" in capsys.readouterr().err
