"""The audit trail: who viewed or changed what, append-only and hash-chained (bot.audit.trail)."""
