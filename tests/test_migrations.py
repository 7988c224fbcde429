"""Migrations create exactly the tables the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from storage.base import Base
from storage.db import Database


async def test_migrated_schema_matches_the_models(db: Database) -> None:
    def diff(conn):  # type: ignore[no-untyped-def]
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        return compare_metadata(ctx, Base.metadata)

    async with db.engine.connect() as conn:
        changes = await conn.run_sync(diff)
    assert changes == [], f"models and migrations differ: {changes}"


async def test_every_migration_head_is_applied(db: Database) -> None:
    applied, expected = await db.current_heads()
    assert applied == expected and expected


async def test_teams_rows_stored_before_are_undated_and_shared_chats_forget_who_wrote(
        db: Database) -> None:
    """`teams_undated` brings rows stored before it to what the flusher writes now (N21): a
    personal chat's reference and a member row lose their day, and a channel's reference
    forgets who last wrote there."""
    import json
    from datetime import UTC, datetime

    from alembic import command
    from sqlalchemy import text

    from storage.db import alembic_config

    def to(conn, target: str, up: bool) -> None:  # type: ignore[no-untyped-def]
        cfg = alembic_config(conn.engine.url.render_as_string(hide_password=False))
        cfg.attributes["connection"] = conn
        (command.upgrade if up else command.downgrade)(cfg, target)

    async with db.engine.begin() as conn:
        await conn.run_sync(to, "teams", False)  # as before the migration
        day = datetime(2026, 12, 1, tzinfo=UTC)
        for cid, user, ref in (
                ("a:personal", "29:one", {"user": {"id": "29:one", "name": "Practitioner One"}}),
                ("19:channel@thread.tacv2", None, {"user": {"id": "29:one", "name": "Practitioner One"}})):
            await conn.execute(text(
                "INSERT INTO teams_conversations (conversation_id, tenant_id, kind, service_url, "
                "user_id, team_id, reference, installed, updated_at) VALUES "
                "(:c, 't1', :k, 'https://smba.example/', :u, NULL, :r, true, :d)"),
                {"c": cid, "k": "personal" if user else "channel", "u": user,
                 "r": json.dumps(ref), "d": day})
        await conn.run_sync(to, "heads", True)
        rows = {c: (json.loads(r) if isinstance(r, str) else r, d) for c, r, d in (await conn.execute(
            text("SELECT conversation_id, reference, updated_at FROM teams_conversations"))).all()}
    assert rows["a:personal"][1] is None
    assert rows["a:personal"][0]["user"]["id"] == "29:one"  # a personal chat's own person
    assert rows["19:channel@thread.tacv2"][0]["user"] == {}
    assert rows["19:channel@thread.tacv2"][1] is not None  # a shared chat keeps its day


async def test_an_urgent_item_stored_before_urgent9_keeps_its_day_for_its_leads_too(
        db: Database) -> None:
    """`urgent9` gives an urgent item stored before it the day it was stored with as the leads'
    day (`lead_day`): it was the day sent, and readers saw it so; an ordinary item has none."""
    from datetime import date

    from alembic import command
    from sqlalchemy import text

    from storage.db import alembic_config

    def to(conn, target: str, up: bool) -> None:  # type: ignore[no-untyped-def]
        cfg = alembic_config(conn.engine.url.render_as_string(hide_password=False))
        cfg.attributes["connection"] = conn
        (command.upgrade if up else command.downgrade)(cfg, target)

    async with db.engine.begin() as conn:
        await conn.run_sync(to, "feedback_release_senders", False)
        for iid, urgent in (("a" * 32, True), ("b" * 32, False)):
            await conn.execute(text(
                "INSERT INTO feedback_items (id, day, text, status, urgent, concerns, source, "
                "released) VALUES (:i, :d, 'x', 'new', :u, '[]', 'staff', false)"),
                {"i": iid, "d": date(2026, 11, 30), "u": urgent})
        await conn.run_sync(to, "heads", True)
        rows = dict((await conn.execute(text(
            "SELECT id, lead_day FROM feedback_items ORDER BY id"))).all())
    assert {k[0]: v for k, v in rows.items()} in (
        {"a": date(2026, 11, 30), "b": None}, {"a": "2026-11-30", "b": None})
