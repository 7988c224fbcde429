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


async def test_urgent9s_downgrade_keeps_an_urgent_answer_urgent_and_a_leads_reply_a_reply(
        db: Database) -> None:
    """Downgraded from `urgent9`, the code before reads an urgent answer and a lead's reply
    as readable at once and the item urgent at once (its leads' queue lists urgent items).
    What waited for a release at the downgrade is brought to that: before the fix the answer
    kept waiting as an ordinary one, its item not urgent (gone from the leads' queue, never
    urgent for anyone), and the lead's reply waited as an author's answer would."""
    import json
    from datetime import date

    from alembic import command
    from sqlalchemy import text

    from storage.db import alembic_config

    def to(conn, target: str, up: bool) -> None:  # type: ignore[no-untyped-def]
        cfg = alembic_config(conn.engine.url.render_as_string(hide_password=False))
        cfg.attributes["connection"] = conn
        (command.upgrade if up else command.downgrade)(cfg, target)

    mon, tue = date(2026, 11, 30), date(2026, 12, 1)
    item, urgent_item = "a" * 32, "b" * 32
    async with db.engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO feedback_items (id, day, text, status, urgent, concerns, source, "
            "released, lead_concerns, lead_day) VALUES "
            "(:i, :d, 'x', 'in_progress', false, '[]', 'staff', true, :c, NULL), "
            "(:u, :t, 'y', 'new', true, :c, 'staff', false, NULL, :d)"),
            {"i": item, "u": urgent_item, "d": mon, "t": tue, "c": json.dumps(["child_risk"])})
        for mid, seq, sender, released, day, lead_day, concerns in (
                ("1" * 32, 1, "team", True, mon, None, None),
                ("2" * 32, -1, "author", False, tue, mon, json.dumps(["child_risk"])),
                ("3" * 32, -2, "team", False, tue, mon, None),
                ("4" * 32, 2, "team", True, mon, None, None)):
            await conn.execute(text(
                "INSERT INTO feedback_messages (id, item_id, seq, sender, day, text, released, "
                "concerns, lead_day) VALUES (:m, :i, :s, :w, :d, 'z', :r, :c, :l)"),
                {"m": mid, "i": item, "s": seq, "w": sender, "d": day, "r": released,
                 "c": concerns, "l": lead_day})
        await conn.run_sync(to, "feedback_release_senders", False)
        items = {r[0][0]: r[1:] for r in (await conn.execute(text(
            "SELECT id, urgent, status, concerns, day FROM feedback_items"))).all()}
        msgs = [(r[0][0], r[1], r[2], str(r[3])) for r in (await conn.execute(text(
            "SELECT id, seq, released, day FROM feedback_messages ORDER BY seq"))).all()]
        await conn.run_sync(to, "heads", True)
    urgent, status, concerns, _ = items["a"]
    assert bool(urgent) and status == "new", items
    assert (json.loads(concerns) if isinstance(concerns, str) else concerns) == ["child_risk"]
    assert str(items["b"][3]) == str(mon)  # the urgent item's day sent, as before urgent9
    # The team's two replies, then the answer and the lead's reply, readable, dated Monday.
    assert msgs == [("1", 1, True, str(mon)), ("4", 2, True, str(mon)),
                    ("2", 3, True, str(mon)), ("3", 4, True, str(mon))], msgs
