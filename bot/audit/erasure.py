"""The audit trail's rows that name a person, for erasure (bot/privacy/personal.py). The
entries cannot change: only the link from the person to their actor key goes, and a subject
access export reads their entries through the trail, not this internal key."""

from __future__ import annotations

from bot.audit.tables import AuditActor
from bot.privacy.personal import PersonalRows, Rule, register, table_of

ROWS = register(PersonalRows("audit", (
    Rule(table_of(AuditActor), "person_id", "person", "delete",
         "their name on audit entries (the entries stay, by \u201can erased person\u201d)",
         exported=False),
)))
