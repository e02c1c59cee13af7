-- 0009: schedules, which start an instance of a definition on a cron expression or every
-- N seconds (docs/schedules.md).
--
--   definition_key      the definition started at each tick
--   definition_version  a pinned version, or NULL for the latest version at each tick
--   cron / every_seconds  exactly one of them: a cron expression (5 fields, or 6 with
--                       seconds first) read in `timezone`, or a fixed period anchored at
--                       `anchor_at` (ticks at anchor_at + k * every_seconds, k >= 1)
--   timezone            IANA name; cron ticks are wall-clock times there (DST-aware)
--   input               the input of every instance it starts
--   overlap             what a tick does while the previous instance still runs: 'skip'
--                       it, 'allow' another instance, or 'bufferOne' (start it when the
--                       previous one finishes; at most one tick waits)
--   catch_up            ticks missed while no engine ran: 'skip' (only the latest runs,
--                       once) or 'all' (each in order, the most recent 100 at most)
--   paused              a paused schedule starts nothing; resume moves next_run_at to the
--                       first tick after the resume
--   next_run_at         the next tick not yet handled; the engine claims a schedule whose
--                       next_run_at has passed (FOR UPDATE SKIP LOCKED), starts its
--                       instance with the start idempotency key schedule:<id>:<tick> and
--                       advances next_run_at in the same transaction
--   buffered_at         the tick a 'bufferOne' schedule holds back until last_instance_id
--                       finishes
--   last_tick_at, last_instance_id  the last tick that started an instance, and that instance
--   skipped_ticks       ticks the overlap policy dropped
CREATE TABLE schedules (
    tenant_id           text        NOT NULL CHECK (tenant_id <> ''),
    id                  uuid        NOT NULL DEFAULT gen_random_uuid(),
    definition_key      text        NOT NULL CHECK (definition_key <> ''),
    definition_version  integer     CHECK (definition_version >= 1),
    cron                text,
    every_seconds       integer     CHECK (every_seconds >= 1),
    timezone            text        NOT NULL DEFAULT 'UTC',
    input               jsonb       NOT NULL DEFAULT '{}'::jsonb,
    overlap             text        NOT NULL DEFAULT 'skip'
                        CHECK (overlap IN ('skip', 'allow', 'bufferOne')),
    catch_up            text        NOT NULL DEFAULT 'skip' CHECK (catch_up IN ('skip', 'all')),
    paused              boolean     NOT NULL DEFAULT false,
    anchor_at           timestamptz NOT NULL,
    next_run_at         timestamptz NOT NULL,
    buffered_at         timestamptz,
    last_tick_at        timestamptz,
    last_instance_id    uuid,
    skipped_ticks       bigint      NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schedules_pkey PRIMARY KEY (tenant_id, id),
    CONSTRAINT schedules_one_rule CHECK ((cron IS NULL) <> (every_seconds IS NULL))
);

-- The listing, newest first, keyset-paginated on (created_at, id).
CREATE INDEX schedules_created_idx ON schedules (tenant_id, created_at, id);
-- The engine's claim across all tenants: active schedules by their next tick.
CREATE INDEX schedules_due_idx ON schedules (next_run_at) WHERE NOT paused;
