-- Queries of statefleet.engine.store.migrate: the bookkeeping around versioned migrations.
-- Each query follows a "-- name: <name>" line; see statefleet.engine.store.queries.

-- name: lock
-- Held until the transaction ends, so concurrent migrate() calls (two processes starting at
-- once) run one after the other; the second then finds nothing pending.
SELECT pg_advisory_xact_lock($1::bigint);

-- name: create_schema_migrations
-- Created here rather than by a migration because it records the migrations themselves.
-- It holds no tenant data, so it has no tenant_id.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer     PRIMARY KEY,
    name        text        NOT NULL,
    checksum    text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- name: applied
SELECT version, name, checksum FROM schema_migrations ORDER BY version;

-- name: record
INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3);
