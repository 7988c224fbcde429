"""bench/load.py's "until seen" figure (the time until the person sees the answer): a request
answered by a post counts from the post the fakes received, and one whose post never came is
not counted as seen when its HTTP answer arrived. Arithmetic on given times only."""

from __future__ import annotations

import json
from pathlib import Path

from bench.load import PEOPLE, until_seen

FAKES = {"slack_users": {e: f"U{n:06d}" for n, e in enumerate(PEOPLE)},
         "teams_users": {e: f"29:teams-{n}" for n, e in enumerate(PEOPLE)}}


def test_a_reply_that_never_came_is_not_seen_at_the_http_answer(tmp_path: Path) -> None:
    receipts = tmp_path / "receipts.jsonl"
    dm = "D" + FAKES["slack_users"][PEOPLE[0]][1:]
    # One post in the person's DM, 50 ms after the tap (request 0); none for "status" (1).
    receipts.write_text(json.dumps([10.050, "chat.update", dm]) + "\n")
    log = [(0, 10.000, 10.010), (1, 10.001, 10.011)]  # (request, sent, HTTP answered)
    seen = until_seen(log, str(receipts), FAKES, {0, 1}, t0=9.0, t1=20.0)
    assert seen["missing"] == 1 and seen["unmatched"] == 0
    assert round(seen["kinds"][0]["seen_p50"]) == 50  # the post, not the 10 ms HTTP answer
    # Not seen by the end of the window (t1): at least that long, not its 10 ms ack.
    assert seen["kinds"][1]["seen_p50"] >= 9_999
    assert round(seen["kinds"][1]["http_p50"]) == 10
