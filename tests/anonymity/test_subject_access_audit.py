"""A motivated intruder in the change team asks for their own subject access export and sets
it beside the audit trail they read in chat, to count the looks at the urgent queue that the
trail leaves out for them (N37), and so date an urgent item they cannot read before its
release (docs/invariants.md N38).

`audit` in chat leaves the leads' looks out for everyone but the leads, with the entries'
numbers, so that no gap says where one was (review13). A subject access export lists the
asker's own entries of the trail; with the trail's own numbers, the gap between two of them,
less the lines `audit` shows between them, counted the hidden looks between the two.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.core import Core
from bot.feedback import counts
from staffvoice.cli import main
from tests.conformance.drivers.fake import FakeDriver
from tests.test_feedback_helpers import CHANGE, LEADS, OTHER, PRACTITIONER, give, ref_for

FIRST = "Supervision keeps being cancelled in my team."
SECOND = "The new case recording form takes twice as long."
CONCERN = "I saw a child being slapped by her mother in the waiting room."
LINE = re.compile(r"^(?:#\d+ )?(\d{4}-\d{2}-\d{2} \d{2}:\d{2}) UTC (\S+) via \S+: (\S+)",
                  re.MULTILINE)


async def _export(settings: Any, tmp_path: Path, email: str) -> dict[str, Any]:
    out = tmp_path / "mine.zip"
    assert await asyncio.to_thread(main, ["people", "export-data", email, "--out", str(out)],
                                   settings=settings) == 0
    return dict(json.loads(zipfile.ZipFile(io.BytesIO(out.read_bytes())).read("person.json")))


async def test_a_subject_access_export_does_not_count_the_looks_the_trail_leaves_out(
        loaded: Core, settings: Any, tmp_path: Path, capsys: Any) -> None:
    """Attack: two ideas at 9:00; the change team's `feedback list` at 13:00 and `audit` at
    13:20; a disclosure at 13:15 that the leads read at 13:16 (`feedback list urgent`,
    `feedback show`). The chat trail shows nothing between 13:00 and 13:20, as it should.
    Then the change lead asks for their own subject access export: before the fix each of
    their audit entries came with its number in the trail, and between their 13:00 look and
    their 13:20 `audit` the numbers skipped two, which `audit` had not shown: two hidden
    looks at the urgent queue between 13:00 and 13:20, so the urgent item released at 17:00
    with the day's others was sent then."""
    d = FakeDriver(loaded)
    clock = loaded.clock
    day = clock.now().replace(hour=9, minute=0, second=0, microsecond=0)
    clock.set(day)  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, FIRST) is None
    assert await give(d, OTHER, SECOND) is None
    await counts.flush(loaded)

    clock.set(day.replace(hour=13, minute=0))  # type: ignore[attr-defined]
    await d.say(CHANGE, "feedback list all")
    assert FIRST in d.seen(CHANGE)[-1]  # the noon release
    clock.set(day.replace(hour=13, minute=15))  # type: ignore[attr-defined]
    assert await give(d, PRACTITIONER, CONCERN) is None
    clock.set(day.replace(hour=13, minute=16))  # type: ignore[attr-defined]
    await d.say(LEADS[0], "feedback list urgent")
    assert CONCERN in d.seen(LEADS[0])[-1]
    await d.say(LEADS[1], f"feedback show #{ref_for(d.seen(LEADS[0])[-1], CONCERN)}")
    assert CONCERN in d.seen(LEADS[1])[-1]
    clock.set(day.replace(hour=13, minute=20))  # type: ignore[attr-defined]
    await d.say(CHANGE, "audit")
    shown = d.seen(CHANGE)[-1]
    # What the chat trail shows the change lead: their own look at 13:00, then their `audit`.
    lines = [(datetime.strptime(at, "%Y-%m-%d %H:%M"), who, what)
             for at, who, what in LINE.findall(shown)]
    between = [x for x in lines if day.replace(hour=13, minute=0, tzinfo=None) < x[0]
               < day.replace(hour=13, minute=20, tzinfo=None)]
    assert not between and "13:16" not in shown, shown

    data = await _export(settings, tmp_path, CHANGE)
    capsys.readouterr()
    mine = data["held"]["audit_entries"]
    looked = [e for e in mine if e["action"] == "view.feedback" and e["at"].endswith("13:00 UTC")]
    audited = [e for e in mine if e["action"] == "view.audit" and e["at"].endswith("13:20 UTC")]
    assert looked and audited, mine  # their own entries are in it, to the minute
    assert mine.index(looked[-1]) < mine.index(audited[0])  # in the trail's order
    # The attack: entries the trail holds between the two, less those `audit` showed.
    numbers = [e.get("seq") for e in (looked[-1], audited[0])]
    if None not in numbers:
        hidden = numbers[1] - numbers[0] - 1 - len(between)
        assert hidden == 0, f"the export counts {hidden} entries the trail left out"
    # Nor does any other figure of an entry (a hash, a link) come from the trail's others.
    for e in mine:
        assert set(e) <= {"at", "surface", "action", "target", "detail", "them"}, e
