-- Instances and the group commit of their steps. Batch statements take parallel
-- arrays (unnest), so one round trip writes the steps of many instances. JSON columns
-- travel as text[] and are cast per row: asyncpg's text-format jsonb codec does not
-- quote array elements, so a jsonb[] parameter of objects would not parse.

-- name: insert_instances
-- A start idempotency key already used in the tenant makes that row a no-op; the
-- caller then looks the existing instance up. $2 is the batch every row belongs to
-- (NULL outside a batch): one value, not an array, as a call is one batch or none; so
-- is $3, the priority of every row. $1: the rows, one array of composite values
-- (migration 0015 says why).
INSERT INTO workflow_instances
    (tenant_id, id, definition_id, status, snapshot, input, output, error,
     start_idempotency_key, finished_at, batch_id, priority)
SELECT u.tenant_id, u.id, u.definition_id, u.status, u.snapshot::jsonb, u.input::jsonb,
       u.output::jsonb, u.error, u.start_key,
       CASE WHEN u.status = 'running' THEN NULL ELSE now() END, $2::uuid, $3::smallint
FROM unnest($1::instance_insert_row[]) AS u
ON CONFLICT (tenant_id, start_idempotency_key) DO NOTHING
RETURNING id;

-- name: find_instances_by_start_key
SELECT start_idempotency_key, id
FROM workflow_instances
WHERE tenant_id = $1 AND start_idempotency_key = ANY($2::text[]);

-- name: get_instance
SELECT i.tenant_id, i.id, i.definition_id, d.key AS definition_key, d.version AS definition_version,
       i.status, i.snapshot, i.input, i.output, i.error, i.version, i.start_idempotency_key,
       i.created_at, i.updated_at, i.finished_at, i.batch_id, i.priority
FROM workflow_instances i
JOIN workflow_definitions d ON d.tenant_id = i.tenant_id AND d.id = i.definition_id
WHERE i.tenant_id = $1 AND i.id = $2;

-- name: load_instances
-- The checkpoints a batch of events starts from, with each instance's last audit
-- sequence number. Batch reads are LATERAL ... LIMIT 1 lookups so that each key is
-- one index probe whatever the statistics say: a hash join over a seq scan looks
-- cheap on a young table and costs O(table) per batch once it has grown (found by the
-- transitions benchmark). The last seq is read backwards along (instance_id, seq);
-- events can only reference their own tenant's instance, so instance_id is exact.
SELECT i.tenant_id, i.id, i.definition_id, i.status, i.snapshot, i.version,
       (SELECT e.seq FROM workflow_events e
        WHERE e.instance_id = i.id ORDER BY e.seq DESC LIMIT 1) AS last_seq
FROM unnest($1::text[], $2::uuid[]) AS k(tenant_id, id)
CROSS JOIN LATERAL (
    SELECT * FROM workflow_instances w WHERE w.tenant_id = k.tenant_id AND w.id = k.id LIMIT 1
) AS i;

-- name: applied_event_ids
-- One probe of (instance_id, event_id) per key (see load_instances for why LATERAL).
SELECT k.instance_id, k.event_id
FROM unnest($1::text[], $2::uuid[], $3::text[]) AS k(tenant_id, instance_id, event_id)
CROSS JOIN LATERAL (
    SELECT FROM workflow_events e
    WHERE e.instance_id = k.instance_id AND e.event_id = k.event_id
      AND e.tenant_id = k.tenant_id
    LIMIT 1
) AS hit;

-- name: update_instances
-- Optimistic concurrency: a row is written only if its version is still the one the
-- step was computed from; the ids returned are the instances whose step won. Rows are
-- found per key and updated by ctid (see cancel_open_tasks_of_instances in tasks.sql);
-- a row another writer changed meanwhile is skipped, which is a lost version check.
-- definition_id: the version a step moves the instance to (an upgrade), NULL for none.
UPDATE workflow_instances AS i
SET snapshot = u.snapshot::jsonb,
    status = u.status,
    output = u.output::jsonb,
    error = u.error,
    version = i.version + 1,
    updated_at = now(),
    finished_at = CASE WHEN u.status = 'running' THEN NULL ELSE coalesce(i.finished_at, now()) END,
    definition_id = coalesce(u.definition_id, i.definition_id)
FROM (SELECT x.ctid AS row_id, k.*
      FROM unnest($1::instance_step_row[]) AS k
      CROSS JOIN LATERAL (
          SELECT ctid FROM workflow_instances w
          WHERE w.tenant_id = k.tenant_id AND w.id = k.id LIMIT 1
      ) AS x) AS u
WHERE i.ctid = u.row_id AND i.version = u.version
RETURNING i.id;

-- name: touch_instances
-- Late events recorded on finished instances (see FINISHED_FOR_GOOD in instances.py):
-- the checkpoint, status and output stay; only the version moves, with the same check
-- as update_instances, so that two writers recording at once do not both win.
UPDATE workflow_instances AS i
SET version = i.version + 1
FROM (SELECT x.ctid AS row_id, k.*
      FROM unnest($1::text[], $2::uuid[], $3::bigint[]) AS k(tenant_id, id, version)
      CROSS JOIN LATERAL (
          SELECT ctid FROM workflow_instances w
          WHERE w.tenant_id = k.tenant_id AND w.id = k.id LIMIT 1
      ) AS x) AS u
WHERE i.ctid = u.row_id AND i.version = u.version
RETURNING i.id;

-- name: insert_events
-- $1: the audit rows, one array of composite values (migration 0015).
INSERT INTO workflow_events
    (tenant_id, instance_id, seq, event_id, type, payload, state_before, state_after,
     effects, handled, error)
SELECT u.tenant_id, u.instance_id, u.seq, u.event_id, u.type, u.payload::jsonb,
       u.state_before::jsonb, u.state_after::jsonb, u.effects::jsonb, u.handled, u.error
FROM unnest($1::event_batch_row[]) AS u;

-- name: list_events
SELECT seq, event_id, type, payload, state_before, state_after, effects, handled, error,
       created_at
FROM workflow_events
WHERE tenant_id = $1 AND instance_id = $2 AND seq > $3
ORDER BY seq
LIMIT $4;

-- name: fail_instance
-- A task failed for good and named no failureEvent: the instance stops, with the reason.
-- The version bump makes a concurrent step lose its version check and re-read.
UPDATE workflow_instances
SET status = 'failed', error = $3, version = version + 1, updated_at = now(),
    finished_at = now()
WHERE tenant_id = $1 AND id = $2 AND status = 'running'
RETURNING snapshot;

-- name: last_event_seq
-- Run after taking the instance's row lock (UPDATE above): a statement started then
-- sees every step committed before the lock was granted, so the next seq is free.
SELECT max(seq) AS last_seq FROM workflow_events WHERE tenant_id = $1 AND instance_id = $2;

