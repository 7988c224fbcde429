"""Subject access: everything held that names a person, as JSON and a readable HTML page.

The rows come from the same rules as erasure: each part's own (bot/privacy/personal.py). Nothing anonymous is
included, and nothing anonymous could be: pulse answers and feedback are stored without a name.
"""

from __future__ import annotations

import html
import io
import json
import zipfile
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.privacy import erasure

ANONYMOUS = (
    "What is held about you that is not in this file, and why. Your pulse answers (unless a "
    "survey told you it was attributed, with your name) are stored without your name or any "
    "key that leads to you: while a round is open they are sealed under that round's own "
    "secret, and when it closes they become counts per group of at least five people, and the "
    "secret is destroyed. Anonymous feedback is stored without its author; if you allowed "
    "replies, the way back to you is sealed under the server's key, cannot be opened by anyone "
    "at the council, and expires. Because nobody, the operators included, can tell which of "
    "these are yours, they cannot be given to you or erased for you, and they are not personal "
    "data about you in the hands of the council (ICO guidance on anonymisation)."
)

SECTIONS = {
    "people": "Your profile",
    "person_roles": "Your roles",
    "identities": "Your chat accounts",
    "teams": "Teams you lead",
    "pulse_participation": "Pulse rounds you are being asked in (open rounds only)",
    "pulse_attributed_answers": "Your answers to attributed (named) surveys",
    "milestone_owners": "Milestones you own",
    "milestone_updates": "Milestone updates you wrote",
    "milestone_checkins": "Check-in prompts sent to you",
    "milestones": "Early-win offers waiting for you",
    "broadcasts": "Broadcasts you authored",
    "broadcast_deliveries": "Broadcasts sent to you",
    "broadcast_celebrations": "Celebrations you sent",
    "feedback_alerts": "Urgent feedback alerts addressed to you (as a safeguarding lead)",
    "feedback_messages": "Replies you wrote to feedback (for the change team)",
    "feedback_responses": "\u201cYou said, we did\u201d you published",
    "teams_conversations": "How the bot reaches you in Microsoft Teams",
    "teams_members": "Your Microsoft Teams membership",
    "privacy_notices_shown": "That you have been shown the privacy notice (not when)",
    "audit_entries": "Audit entries of what you did, or that were about you",
}


async def gather(s: AsyncSession, person: erasure.Named, now: datetime) -> dict[str, Any]:
    """The whole export as plain data."""
    held = await erasure.held_about(s, person)
    return {
        "about": person.email or person.display_name,
        "made_at": now.strftime("%Y-%m-%d %H:%M UTC"),
        "held": held,
        "anonymous_data": ANONYMOUS,
    }


def to_html(data: dict[str, Any]) -> str:
    """A readable page of the same data: one table per kind."""
    e = html.escape
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>What staffvoice holds about {e(str(data['about']))}</title></head><body>",
             f"<h1>What staffvoice holds about {e(str(data['about']))}</h1>",
             f"<p>Made {e(data['made_at'])}.</p>"]
    for table, rows in data["held"].items():
        parts.append(f"<h2>{e(SECTIONS.get(table, table))}</h2>")
        cols = sorted({k for r in rows for k in r})
        parts.append("<table><thead><tr>" + "".join(f'<th scope="col">{e(c)}</th>' for c in cols)
                     + "</tr></thead><tbody>")
        for r in rows:
            cells = "".join(f"<td>{e(_show(r.get(c)))}</td>" for c in cols)
            parts.append(f"<tr>{cells}</tr>")
        parts.append("</tbody></table>")
    parts.append("<h2>Anonymous data</h2>")
    parts.append(f"<p>{e(data['anonymous_data'])}</p></body></html>")
    return "\n".join(parts)


def _show(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, dict | list):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


def to_zip(data: dict[str, Any]) -> bytes:
    """person.json, person.html and README.txt in one zip."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("person.json", json.dumps(data, indent=2, ensure_ascii=False, default=str))
        z.writestr("person.html", to_html(data))
        z.writestr("README.txt", "What staffvoice holds about " + str(data["about"]) +
                   ": person.json (everything, as data) and person.html (the same, to read).\n\n"
                   + data["anonymous_data"] + "\n")
    return buf.getvalue()
