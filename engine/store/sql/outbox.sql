-- The outbox: jobs written with the step that produced them, published after commit.

-- name: insert_outbox
-- $1: the rows, one array of composite values (migration 0015).
INSERT INTO outbox
    (tenant_id, id, instance_id, queue, job_name, data, dedupe_key, available_at, held,
     priority)
SELECT u.tenant_id, u.id, u.instance_id, u.queue, u.job_name, u.data::jsonb, u.dedupe_key,
       coalesce(u.available_at, now()), u.held, u.priority
FROM unnest($1::outbox_insert_row[]) AS u
ON CONFLICT (tenant_id, queue, dedupe_key) DO NOTHING
RETURNING id;

-- name: mark_published
-- $1/$2: parallel (tenant, id) arrays. Found per key, updated by ctid (see
-- cancel_open_tasks_of_instances in tasks.sql). It never waits: a row another
-- transaction holds (a concurrent mark, a sweeper) is skipped and stays unpublished,
-- and the worst that does is one harmless re-send (dedupe keys). Waiting was the
-- stall of issue 14: publishers, and the API requests behind them, queued for
-- minutes behind one blocked mark.
UPDATE outbox AS o SET published_at = now()
FROM (SELECT x.ctid AS row_id
      FROM unnest($1::text[], $2::uuid[]) AS k(tenant_id, id)
      CROSS JOIN LATERAL (
          SELECT ctid FROM outbox
          WHERE tenant_id = k.tenant_id AND id = k.id AND published_at IS NULL
          LIMIT 1
          FOR UPDATE SKIP LOCKED
      ) AS x) AS hit
WHERE o.ctid = hit.row_id AND o.published_at IS NULL;

-- name: delete_delivered
-- Rows whose event its shard applied (the engine's direct path): the audit log holds
-- the event now and nothing is left to send, so the row goes. A delete writes no new
-- row version and no index entries, where marking it published wrote both, for the
-- most frequent rows of all (every task's completion). Never waits, as mark_published:
-- a row held elsewhere (a sweeper sending it) stays, and is at worst applied as a
-- duplicate.
DELETE FROM outbox AS o
USING (SELECT x.ctid AS row_id
       FROM unnest($1::text[], $2::uuid[]) AS k(tenant_id, id)
       CROSS JOIN LATERAL (
           SELECT ctid FROM outbox
           WHERE tenant_id = k.tenant_id AND id = k.id AND published_at IS NULL
           LIMIT 1
           FOR UPDATE SKIP LOCKED
       ) AS x) AS hit
WHERE o.ctid = hit.row_id AND o.published_at IS NULL;

-- name: unpublished
-- Rows whose publisher died between commit and publish (or whose publish failed).
-- Read without locks: the sweeper publishes them and marks them with mark_published,
-- so it holds no row lock while it talks to the broker; two sweepers that send the
-- same row send one job (its dedupe key).
SELECT tenant_id, id, queue, job_name, data, dedupe_key, available_at, now() AS db_now
FROM outbox
WHERE published_at IS NULL AND NOT held
  AND created_at < now() - $1 * interval '1 millisecond'
ORDER BY available_at
LIMIT $2;

-- name: insert_dead_letter
INSERT INTO dead_letters (tenant_id, queue, body, reason) VALUES ($1, $2, $3, $4);

-- name: published_unapplied_events
-- Event jobs published more than $1 ms ago (and less than $2 ms ago: older ones are past
-- redelivery) whose event never reached the running instance's audit log: the broker
-- lost them. Re-sent with their original dedupe key, so a job that was merely slow is
-- applied once anyway.
SELECT o.tenant_id, o.id, o.queue, o.job_name, o.data, o.dedupe_key
FROM outbox o
JOIN workflow_instances i ON i.tenant_id = o.tenant_id AND i.id = o.instance_id
WHERE o.queue = 'workflow-orchestrator'
  AND o.published_at IS NOT NULL
  AND o.published_at < now() - $1 * interval '1 millisecond'
  AND o.published_at > now() - $2 * interval '1 millisecond'
  AND i.status = 'running'
  AND NOT EXISTS (
      SELECT 1 FROM workflow_events e
      WHERE e.tenant_id = o.tenant_id AND e.instance_id = o.instance_id
        AND e.event_id = o.data -> 'event' ->> 'id')
ORDER BY o.published_at
LIMIT $3;

-- name: touch_published
-- Never waits either: a row held elsewhere keeps its time (and is re-sent again later).
UPDATE outbox AS o SET published_at = now(), attempts = o.attempts + 1
FROM (SELECT ctid AS row_id FROM outbox
      WHERE tenant_id = ANY($1::text[]) AND id = ANY($2::uuid[])
      FOR UPDATE SKIP LOCKED) AS hit
WHERE o.ctid = hit.row_id;

-- name: list_dead_letters
-- Newest first, for operators (the admin API): what arrived and why it was refused.
SELECT id, tenant_id, queue, body, reason, created_at
FROM dead_letters
ORDER BY created_at DESC, id
LIMIT $1;
