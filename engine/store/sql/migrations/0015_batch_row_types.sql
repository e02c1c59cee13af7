-- 0015: the engine's batched writes send one array of rows instead of one array per column.
--
-- A step's audit rows, its instances' new checkpoints, new instances, new tasks and
-- outbox rows were each written by one statement over parallel arrays, one per column
-- (unnest($1::text[], $2::uuid[], ...)). asyncpg checks every element of an array
-- parameter for being a nested array (two abstract-class checks for each string), about
-- 160 such checks per hello instance, a twentieth of the engine's Python time; an array
-- of composite values is checked once per row and encodes each field directly. Measured
-- on 500 audit rows a statement: 3.0 -> 1.3 us of client CPU per row, and less server
-- time too (docs/performance.md, "The seventh pass").
--
-- One type per statement, its fields in the statement's order. JSON travels as text and
-- is cast to jsonb by the statement, as before: a composite with a text-format field
-- (the connections' jsonb codec) would be sent in text format whole.
CREATE TYPE event_batch_row AS (
    tenant_id    text,
    instance_id  uuid,
    seq          bigint,
    event_id     text,
    type         text,
    payload      text,
    state_before text,
    state_after  text,
    effects      text,
    handled      boolean,
    error        text
);

CREATE TYPE instance_step_row AS (
    tenant_id     text,
    id            uuid,
    version       bigint,
    snapshot      text,
    status        text,
    output        text,
    error         text,
    definition_id uuid
);

CREATE TYPE instance_insert_row AS (
    tenant_id     text,
    id            uuid,
    definition_id uuid,
    status        text,
    snapshot      text,
    input         text,
    output        text,
    error         text,
    start_key     text
);

CREATE TYPE task_insert_row AS (
    tenant_id         text,
    id                uuid,
    instance_id       uuid,
    kind              text,
    type              text,
    name              text,
    input             text,
    run_at            timestamptz,
    delay_ms          bigint,
    max_attempts      int,
    backoff           text,
    timeout_ms        int,
    policy            text,
    idempotency_key   text,
    completion_event  text,
    failure_event     text,
    limit_key         text,
    limit_concurrency int,
    limit_per_second  float8
);

CREATE TYPE outbox_insert_row AS (
    tenant_id    text,
    id           uuid,
    instance_id  uuid,
    queue        text,
    job_name     text,
    data         text,
    dedupe_key   text,
    available_at timestamptz,
    held         boolean,
    priority     smallint
);
