"""Migrations against a real Postgres: applied once, safe to race, refuse edited history.

The schema tests pin the rules the runtime relies on (tenant on every row, the audit
log is append-only, idempotency keys are unique where the contract says so) by
provoking the database into enforcing them, not by reading the DDL back.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from statefleet.engine.ports.queue import QueueJob, parse_event_job
from statefleet.engine.store import (
    LOCK_KEY,
    Migration,
    MigrationError,
    load_migrations,
    migrate,
)
from statefleet.engine.store.db import init_connection

pytestmark = pytest.mark.asyncio

Connection = asyncpg.Connection  # asyncpg's class is generic only in its stubs

TABLES = {
    "api_keys",
    "batches",
    "dead_letters",
    "engine_tallies",
    "outbox",
    "rate_limits",
    "schedules",
    "schema_migrations",
    "tasks",
    "tenants",
    "upgrade_items",
    "upgrades",
    "workflow_definitions",
    "workflow_events",
    "workflow_instances",
}

# Keys that lead with instance_id (globally unique, tied to one tenant by a foreign key)
# and cross-tenant sweep indexes; every other index must lead with tenant_id.
NOT_TENANT_LED = {
    "api_keys_key_id_key",
    "dead_letters_pkey",
    "engine_tallies_pkey",
    "schema_migrations_pkey",
    "schedules_due_idx",
    "tasks_due_idx",
    "tasks_idempotency_key",
    "tasks_lease_idx",
    "outbox_unpublished_idx",
    "outbox_published_events_idx",
    "workflow_events_event_id_key",
    "workflow_events_pkey",
}


def names(migrations: list[Migration]) -> list[str]:
    return [migration.name for migration in migrations]


async def recorded(connection: Connection[Any]) -> list[tuple[int, str, str]]:
    rows = await connection.fetch(
        "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
    )
    return [(row["version"], row["name"], row["checksum"]) for row in rows]


async def new_instance(connection: Connection[Any], tenant: str) -> uuid.UUID:
    definition = await connection.fetchval(
        "INSERT INTO workflow_definitions (tenant_id, key, version, spec, checksum)"
        " VALUES ($1, 'order', 1, '{}', 'c1') RETURNING id",
        tenant,
    )
    instance: uuid.UUID = await connection.fetchval(
        "INSERT INTO workflow_instances (tenant_id, definition_id, snapshot)"
        " VALUES ($1, $2, '{}') RETURNING id",
        tenant,
        definition,
    )
    return instance


async def append_event(
    connection: Connection[Any], tenant: str, instance: uuid.UUID, seq: int, event_id: str
) -> None:
    await connection.execute(
        "INSERT INTO workflow_events (tenant_id, instance_id, seq, event_id, type, state_after)"
        " VALUES ($1, $2, $3, $4, 'go', '\"b\"')",
        tenant,
        instance,
        seq,
        event_id,
    )


# -- migrate() ---------------------------------------------------------------------------


async def test_migrate_applies_everything_once_and_a_rerun_is_a_noop(
    empty_database_dsn: str,
) -> None:
    shipped = load_migrations()
    assert names(shipped)[0] == "0001_initial"

    assert await migrate(empty_database_dsn) == names(shipped)
    assert await migrate(empty_database_dsn) == []

    connection = await asyncpg.connect(empty_database_dsn)
    try:
        assert await migrate(connection) == []
        assert await recorded(connection) == [(m.version, m.name, m.checksum) for m in shipped]
    finally:
        await connection.close()


async def test_concurrent_migrations_serialise_on_the_lock(empty_database_dsn: str) -> None:
    holder, first, second = [await asyncpg.connect(empty_database_dsn) for _ in range(3)]
    try:
        # Hold the lock so both migrations are provably waiting at once before either runs.
        async with holder.transaction():
            await holder.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
            racing = asyncio.gather(migrate(first), migrate(second))
            for _ in range(500):
                waiting = await holder.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND database = (SELECT oid FROM pg_database"
                    " WHERE datname = current_database())"
                )
                if waiting == 2:
                    break
                await asyncio.sleep(0.01)
            assert waiting == 2
        results = await racing
        assert sorted(results) == [[], names(load_migrations())]
        assert len(await recorded(holder)) == len(load_migrations())
    finally:
        for connection in (holder, first, second):
            await connection.close()


async def test_an_edited_applied_migration_is_refused(empty_database_dsn: str) -> None:
    (initial,) = load_migrations()[:1]
    await migrate(empty_database_dsn, migrations=[initial])
    edited = Migration.from_text("0001_initial.sql", initial.sql + "\n-- an afterthought\n")
    extra = Migration.from_text("0002_more.sql", "CREATE TABLE more (tenant_id text);")

    with pytest.raises(MigrationError, match=r"0001 was applied .* must not change"):
        await migrate(empty_database_dsn, migrations=[edited, extra])

    connection = await asyncpg.connect(empty_database_dsn)
    try:
        # The refusal rolled everything back: 0002 was not applied alongside.
        assert [row[1] for row in await recorded(connection)] == ["0001_initial"]
        assert await connection.fetchval("SELECT to_regclass('more')") is None
    finally:
        await connection.close()


async def test_a_renamed_applied_migration_is_refused(empty_database_dsn: str) -> None:
    (initial,) = load_migrations()[:1]
    await migrate(empty_database_dsn, migrations=[initial])
    renamed = Migration.from_text("0001_first.sql", initial.sql)
    with pytest.raises(MigrationError, match="0001_first"):
        await migrate(empty_database_dsn, migrations=[renamed])


async def test_new_migrations_apply_after_the_applied_ones(empty_database_dsn: str) -> None:
    shipped = load_migrations()
    await migrate(empty_database_dsn, migrations=shipped)
    version = shipped[-1].version + 1
    extra = Migration.from_text(f"{version:04d}_extra.sql", "CREATE TABLE extra (x int);")

    assert await migrate(empty_database_dsn, migrations=[*shipped, extra]) == [extra.name]
    # An older release that does not know `extra` still starts against the newer schema.
    assert await migrate(empty_database_dsn, migrations=shipped) == []


async def test_a_pending_migration_numbered_below_an_applied_one_is_refused(
    empty_database_dsn: str,
) -> None:
    late = Migration.from_text("0005_late.sql", "SELECT 1;")
    later = Migration.from_text("0009_later.sql", "SELECT 1;")
    await migrate(empty_database_dsn, migrations=[later])
    with pytest.raises(MigrationError, match="0005_late"):
        await migrate(empty_database_dsn, migrations=[late, later])


async def test_migration_files_must_be_numbered_and_unique() -> None:
    with pytest.raises(MigrationError, match="NNNN_slug"):
        Migration.from_text("1_initial.sql", "")
    one = Migration.from_text("0001_a.sql", "")
    other = Migration.from_text("0001_b.sql", "")
    # Refused before any connection is attempted.
    with pytest.raises(MigrationError, match="share version 1"):
        await migrate("postgresql://unused.invalid/none", migrations=[one, other])


async def test_checksum_ignores_line_endings() -> None:
    unix = Migration.from_text("0001_a.sql", "SELECT 1;\nSELECT 2;\n")
    windows = Migration.from_text("0001_a.sql", "SELECT 1;\r\nSELECT 2;\r\n")
    assert unix.checksum == windows.checksum


# -- the schema ----------------------------------------------------------------------------


async def test_each_test_database_is_a_migrated_copy(db_connection: Connection[Any]) -> None:
    shipped = load_migrations()
    assert [row[1] for row in await recorded(db_connection)] == names(shipped)
    tables = await db_connection.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    assert {row["table_name"] for row in tables} == TABLES
    assert await db_connection.fetchval("SELECT count(*) FROM workflow_instances") == 0


async def test_every_table_carries_the_tenant(db_connection: Connection[Any]) -> None:
    rows = await db_connection.fetch(
        "SELECT table_name, is_nullable, data_type FROM information_schema.columns"
        " WHERE table_schema = 'public' AND column_name = 'tenant_id'"
    )
    columns = {row["table_name"]: (row["is_nullable"], row["data_type"]) for row in rows}
    # Dead letters may arrive with no readable tenant; schema_migrations and the engines'
    # tallies (figures across tenants) are not tenant data.
    assert columns == {
        table: ("YES" if table == "dead_letters" else "NO", "text")
        for table in TABLES - {"schema_migrations", "engine_tallies"}
    }


async def test_tenant_leads_every_index_but_the_documented_ones(
    db_connection: Connection[Any],
) -> None:
    rows = await db_connection.fetch(
        """
        SELECT index_class.relname AS index_name, attribute.attname AS leading
        FROM pg_index AS idx
        JOIN pg_class AS index_class ON index_class.oid = idx.indexrelid
        JOIN pg_namespace AS ns ON ns.oid = index_class.relnamespace
        JOIN pg_attribute AS attribute
          ON attribute.attrelid = idx.indrelid AND attribute.attnum = idx.indkey[0]
        WHERE ns.nspname = 'public'
        """
    )
    leading = {row["index_name"]: row["leading"] for row in rows}
    assert {name for name, column in leading.items() if column != "tenant_id"} == NOT_TENANT_LED


async def test_status_columns_are_checked(db_connection: Connection[Any]) -> None:
    instance = await new_instance(db_connection, "acme")
    with pytest.raises(asyncpg.CheckViolationError):
        await db_connection.execute(
            "UPDATE workflow_instances SET status = 'paused' WHERE id = $1", instance
        )
    with pytest.raises(asyncpg.CheckViolationError):
        await db_connection.execute(
            "INSERT INTO tasks (tenant_id, instance_id, type, name, status)"
            " VALUES ('acme', $1, 'email', 'send', 'lost')",
            instance,
        )
    with pytest.raises(asyncpg.CheckViolationError):
        await db_connection.execute(
            "INSERT INTO tasks (tenant_id, instance_id, kind, type, name)"
            " VALUES ('acme', $1, 'cron', 'email', 'send')",
            instance,
        )
    with pytest.raises(asyncpg.CheckViolationError, match="tasks_lease_check"):
        await db_connection.execute(
            "INSERT INTO tasks (tenant_id, instance_id, type, name, status)"
            " VALUES ('acme', $1, 'email', 'send', 'running')",
            instance,
        )


async def test_an_event_id_is_recorded_once_per_instance(db_connection: Connection[Any]) -> None:
    instance = await new_instance(db_connection, "acme")
    await append_event(db_connection, "acme", instance, 1, "evt-1")
    with pytest.raises(asyncpg.UniqueViolationError, match="workflow_events_event_id_key"):
        await append_event(db_connection, "acme", instance, 2, "evt-1")
    with pytest.raises(asyncpg.UniqueViolationError, match="workflow_events_pkey"):
        await append_event(db_connection, "acme", instance, 1, "evt-2")
    # The same event id on another instance is a different event.
    other = await db_connection.fetchval(
        "INSERT INTO workflow_instances (tenant_id, definition_id, snapshot)"
        " SELECT tenant_id, definition_id, '{}' FROM workflow_instances WHERE id = $1"
        " RETURNING id",
        instance,
    )
    await append_event(db_connection, "acme", other, 1, "evt-1")


async def test_the_audit_log_is_append_only(db_connection: Connection[Any]) -> None:
    instance = await new_instance(db_connection, "acme")
    await append_event(db_connection, "acme", instance, 1, "evt-1")
    for statement in (
        "UPDATE workflow_events SET type = 'forged'",
        "DELETE FROM workflow_events",
        "TRUNCATE workflow_events",
    ):
        with pytest.raises(asyncpg.RestrictViolationError, match="immutable history"):
            await db_connection.execute(statement)
    assert await db_connection.fetchval("SELECT type FROM workflow_events") == "go"


async def test_definition_versions_are_immutable(db_connection: Connection[Any]) -> None:
    await new_instance(db_connection, "acme")
    with pytest.raises(asyncpg.RestrictViolationError):
        await db_connection.execute("UPDATE workflow_definitions SET spec = '{\"x\": 1}'")
    # Same spec (checksum) again under the same key: the existing version is the answer.
    with pytest.raises(asyncpg.UniqueViolationError, match="workflow_definitions_checksum_key"):
        await db_connection.execute(
            "INSERT INTO workflow_definitions (tenant_id, key, version, spec, checksum)"
            " VALUES ('acme', 'order', 2, '{}', 'c1')"
        )
    with pytest.raises(asyncpg.UniqueViolationError, match="workflow_definitions_version_key"):
        await db_connection.execute(
            "INSERT INTO workflow_definitions (tenant_id, key, version, spec, checksum)"
            " VALUES ('acme', 'order', 1, '{}', 'c2')"
        )


async def test_task_idempotency_keys_are_unique_per_instance(
    db_connection: Connection[Any],
) -> None:
    instance = await new_instance(db_connection, "acme")
    insert = (
        "INSERT INTO tasks (tenant_id, instance_id, type, name, idempotency_key)"
        " VALUES ('acme', $1, 'email', 'send', $2)"
    )
    await db_connection.execute(insert, instance, "k1")
    with pytest.raises(asyncpg.UniqueViolationError, match="tasks_idempotency_key"):
        await db_connection.execute(insert, instance, "k1")
    # Tasks without a key never collide.
    await db_connection.execute(insert, instance, None)
    await db_connection.execute(insert, instance, None)
    # The runtime's createTask: a second insert with the key finds the existing task.
    existing = await db_connection.fetchval(
        insert + " ON CONFLICT (instance_id, idempotency_key) DO NOTHING RETURNING id",
        instance,
        "k1",
    )
    assert existing is None


async def test_rows_cannot_point_at_another_tenants_instance(
    db_connection: Connection[Any],
) -> None:
    instance = await new_instance(db_connection, "acme")
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await append_event(db_connection, "globex", instance, 1, "evt-1")
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await db_connection.execute(
            "INSERT INTO tasks (tenant_id, instance_id, kind, type, name)"
            " VALUES ('globex', $1, 'timer', 'xstate.after.1000', 'xstate.after.1000')",
            instance,
        )
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await db_connection.execute(
            "INSERT INTO outbox (tenant_id, instance_id, queue, job_name, data, dedupe_key)"
            " VALUES ('globex', $1, 'workflow-orchestrator', 'event', '{}', 'evt-1')",
            instance,
        )


async def test_start_idempotency_keys_are_unique_per_tenant(
    db_connection: Connection[Any],
) -> None:
    acme = await new_instance(db_connection, "acme")
    globex = await new_instance(db_connection, "globex")
    set_key = "UPDATE workflow_instances SET start_idempotency_key = 'order-42' WHERE id = $1"
    await db_connection.execute(set_key, acme)
    await db_connection.execute(set_key, globex)
    with pytest.raises(asyncpg.UniqueViolationError):
        await db_connection.execute(
            "INSERT INTO workflow_instances"
            " (tenant_id, definition_id, snapshot, start_idempotency_key)"
            " SELECT tenant_id, definition_id, '{}', 'order-42' FROM workflow_instances"
            " WHERE id = $1",
            acme,
        )


async def test_a_start_left_waiting_in_its_row_moves_to_the_outbox(
    empty_database_dsn: str,
) -> None:
    # 0017: an instance an earlier version created and never started (its start recorded
    # in start_event) gets the outbox row of that start, the job the engine parses.
    shipped = load_migrations()
    before = [m for m in shipped if m.version < 17]
    await migrate(empty_database_dsn, migrations=before)
    connection = await asyncpg.connect(empty_database_dsn)
    try:
        await init_connection(connection)  # jsonb as Python data
        waiting = await new_instance(connection, "acme")
        await new_instance(connection, "globex")  # started: no start recorded, so no row
        await connection.execute(
            "UPDATE workflow_instances SET start_event = 'WORKFLOW_START' WHERE id = $1", waiting
        )
        assert await migrate(connection) == [m.name for m in shipped if m.version >= 17]
        rows = await connection.fetch("SELECT * FROM outbox")
        columns = await connection.fetchval(
            "SELECT count(*) FROM information_schema.columns"
            " WHERE table_name = 'workflow_instances' AND column_name = 'start_event'"
        )
    finally:
        await connection.close()
    (row,) = rows
    job = parse_event_job(QueueJob(row["queue"], row["job_name"], row["data"]))
    assert (row["tenant_id"], row["instance_id"], row["dedupe_key"]) == (
        "acme",
        waiting,
        f"start-{waiting}",
    )
    assert (job.tenant_id, job.instance_id, job.event_id, job.event_type, job.payload) == (
        "acme",
        str(waiting),
        f"start-{waiting}",
        "WORKFLOW_START",
        {},
    )
    assert row["published_at"] is None
    assert not row["held"]
    assert columns == 0
