"""Migrations create exactly the tables the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from storage.base import Base
from storage.db import Database


def _schema_changes(conn) -> list[object]:  # type: ignore[no-untyped-def]
    ctx = MigrationContext.configure(conn, opts={"compare_type": False})
    return compare_metadata(ctx, Base.metadata)  # type: ignore[no-any-return]


async def test_migrated_schema_matches_the_models(db: Database) -> None:
    async with db.engine.connect() as conn:
        changes = await conn.run_sync(_schema_changes)
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


def _one_row_each(conn) -> None:  # type: ignore[no-untyped-def]
    """One row in every table that has none, made from the schema as it stands (reflected, so
    any revision's): parents first, each foreign key pointing at its parent's row."""
    from datetime import UTC, date, datetime

    import sqlalchemy as sa

    meta = sa.MetaData()
    meta.reflect(conn)
    made: dict[str, dict[str, object]] = {}
    for table in meta.sorted_tables:
        if table.name == "alembic_version":
            continue
        row = conn.execute(sa.select(table).limit(1)).mappings().first()
        if row is not None:
            made[table.name] = dict(row)
            continue
        values: dict[str, object] = {}
        for col in table.columns:
            fk = next(iter(col.foreign_keys), None)
            if fk is not None:
                parent = fk.column.table.name
                values[col.name] = (None if parent == table.name
                                    else made[parent][fk.column.name])
                continue
            kind = col.type.python_type
            if kind is str:
                length = getattr(col.type, "length", None) or 32
                values[col.name] = ("k" + table.name.replace("_", ""))[:length]
            elif kind is bool:
                values[col.name] = False
            elif kind is int:
                values[col.name] = 1
            elif kind is datetime:
                aware = getattr(col.type, "timezone", False)
                values[col.name] = datetime(2026, 11, 30, 10, tzinfo=UTC if aware else None)
            elif kind is date:
                values[col.name] = date(2026, 11, 30)
            elif kind is bytes:
                values[col.name] = b"\x01"
            else:  # JSON
                values[col.name] = []
        conn.execute(table.insert().values(values))
        made[table.name] = values


# Rows a step drops on purpose: (revision, table).
DELIBERATE = {
    ("feedback_day_keys", "feedback_daily_counts"),  # counters start afresh under day keys
    # Counters and marks start afresh as one sealed row a day (N40), and back as rows per key.
    *((rev, t) for rev in ("sealed_counts", "sealed_counts@-1")
      for t in ("feedback_daily_counts", "feedback_release_senders")),
    ("families_sealed_rate", "family_rate"), ("families_sealed_rate@-1", "family_rate"),
}


def _counts(conn) -> dict[str, int]:  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    names = sa.inspect(conn).get_table_names()
    return {name: conn.execute(sa.text(f'SELECT count(*) FROM "{name}"')).scalar_one()
            for name in names if name != "alembic_version"}


async def test_no_downgrade_or_upgrade_loses_a_row_of_a_table_it_keeps(db: Database) -> None:
    """Through the app's own engine (SQLite with foreign keys on, as it serves), every
    revision is taken down, one revision a step from the heads standing on it, and all come
    up again, with a row in every table: a table both sides of a step keeps every row. On
    SQLite a batch that rebuilds a table (copy, drop, rename) drops the old one, and with
    foreign keys on, ON DELETE CASCADE emptied its children: `feedback_sources` took every
    thread, reply route, alert and families' answer, `feedback_releases` the same on the way
    up and down, `milestones_stale_tell` every owner, check-in and update, and
    `people_sources` could not drop `teams` at all (people point at it)."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from storage.db import alembic_config

    script = ScriptDirectory.from_config(alembic_config(db.url))

    def above(rev: str) -> set[str]:
        """`rev` and every revision standing on it."""
        found, todo = set(), [rev]
        while todo:
            r = todo.pop()
            found.add(r)
            todo += script.get_revision(r).nextrev
        return found

    def step(conn, target: str, up: bool) -> list[str]:  # type: ignore[no-untyped-def]
        cfg = alembic_config(conn.engine.url.render_as_string(hide_password=False))
        cfg.attributes["connection"] = conn
        before = _counts(conn)
        (command.upgrade if up else command.downgrade)(cfg, target)
        after = _counts(conn)
        return [f"{'up to' if up else 'down to'} {target}: {name} {n} -> {after[name]} rows"
                for name, n in before.items() if name in after and after[name] < n
                and (target, name) not in DELIBERATE]

    def down_and_up(conn, rev: str) -> list[str]:  # type: ignore[no-untyped-def]
        lost, going = [], above(rev)
        while heads := sorted(set(MigrationContext.configure(conn).get_current_heads())
                              & going):
            lost += step(conn, f"{heads[0]}@-1", False)
        for back in order:  # parents first
            if back in going:
                lost += step(conn, back, True)
        return lost

    # pulse_sealed refuses to go down (per-answer rows no longer exist), and so what it
    # stands on; core's downgrade drops every table.
    order = [r.revision for r in script.walk_revisions()][::-1]
    revisions = [rev for rev in order
                 if rev != "core" and "pulse_sealed" not in above(rev)]
    assert "feedback_sources" in revisions and "people_sources" in revisions
    lost: list[str] = []
    async with db.engine.connect() as conn:
        tx = await conn.begin()  # rolled back: PostgreSQL's schema is every test's
        if db.is_sqlite:
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
        for rev in revisions:
            await conn.run_sync(_one_row_each)
            lost += await conn.run_sync(down_and_up, rev)
        # Altered in place rather than rebuilt, every table must still be what the models
        # describe (and what a fresh install makes: test_migrated_schema_matches_the_models).
        changes = await conn.run_sync(_schema_changes)
        await tx.rollback()
    assert lost == [], "\n".join(lost)
    assert changes == [], f"models and the migrations taken down and up differ: {changes}"


def test_the_alembic_command_line_migrates_with_foreign_keys_on(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """env.py's own engine (the `alembic` command line, `staffvoice.revision`) turns foreign
    keys on as the app's does, so a migration run there behaves as at the app's start:
    before, it ran with SQLite's default (off), where a table rebuild that empties the
    children at the app's start kept them."""
    from alembic import command
    from sqlalchemy import event

    from storage import db
    from storage.db import alembic_config

    seen: list[int] = []

    def spy(conn, cursor, statement, *_):  # type: ignore[no-untyped-def]
        seen.append(cursor.connection.execute("PRAGMA foreign_keys").fetchone()[0])

    made = db.sync_engine

    def spied(url: str):  # type: ignore[no-untyped-def]
        # On env.py's engine alone: a listener on the Engine class stays counted after its
        # removal (`Engine._has_events`), which sent every later engine of the test run down
        # storage/prepared.py's slow path (tests/test_prepared.py failed after this one).
        engine = made(url)
        event.listen(engine, "before_cursor_execute", spy)
        return engine

    monkeypatch.setattr(db, "sync_engine", spied)
    command.upgrade(alembic_config(f"sqlite:///{tmp_path / 'cli.db'}"), "heads")
    assert seen and set(seen) == {1}


async def test_a_sqlite_older_than_the_migrations_need_is_refused_in_one_line(
        tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The migrations drop columns in place (ALTER TABLE DROP COLUMN) and the app uses
    RETURNING: SQLite 3.35.5 or later. An older library (a distribution's own Python) is
    refused at the start with the versions, before any statement fails as a syntax error."""
    import sqlite3

    import pytest

    from storage.db import DatabaseUnavailable

    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.34.1")
    db = Database(f"sqlite+svinline:///{tmp_path / 'old.db'}")
    try:
        with pytest.raises(DatabaseUnavailable) as refused:
            await db.check()
    finally:
        await db.dispose()
    assert str(refused.value) == (
        "this Python's SQLite is 3.34.1; staffvoice needs 3.35.5 or later (RETURNING, ALTER "
        "TABLE DROP COLUMN): use the container image, or a Python built with a newer SQLite")
    assert not (tmp_path / "old.db").exists()  # refused before anything was created
