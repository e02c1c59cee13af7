-- Tasks and timers: created by steps, claimed with a lease, finished once.

-- name: insert_tasks
-- A createTask whose idempotency key the instance already used yields the existing
-- task: the row is skipped and not returned, so no second job is published for it.
-- run_at is computed from the database clock, the one clock every worker shares.
-- A task inherits its instance's priority. It is held for the admitter (admission.py)
-- when it is below the interactive priority or under a limit (its spec's, or its
-- tenant's for its type or for all its tasks, "*"); timers and manual types never are
-- ($2). A task that is due now, not held and has a lease owner (the pool the engine
-- hands it to: migration 0016) is inserted claimed for it, as claim_tasks would claim
-- it: running, its first attempt, the lease of claim_tasks ($3: the default lease, $4:
-- the margin over its timeout). $1: the rows, one array of composite values (migration
-- 0015).
INSERT INTO tasks
    (tenant_id, id, instance_id, kind, type, name, input, run_at, max_attempts, backoff,
     timeout_ms, policy, idempotency_key, completion_event, failure_event, priority, held,
     limit_key, limit_concurrency, limit_per_second, status, attempts, lease_owner,
     lease_expires_at)
SELECT u.tenant_id, u.id, u.instance_id, u.kind, u.type, u.name, u.input::jsonb,
       coalesce(u.run_at, now() + u.delay_ms * interval '1 millisecond'),
       u.max_attempts, u.backoff::jsonb, u.timeout_ms, u.policy::jsonb, u.idempotency_key,
       u.completion_event, u.failure_event, i.priority, h.held,
       u.limit_key, u.limit_concurrency, u.limit_per_second,
       CASE WHEN c.claimed THEN 'running' ELSE 'pending' END,
       CASE WHEN c.claimed THEN 1 ELSE 0 END,
       CASE WHEN c.claimed THEN u.lease_owner END,
       CASE WHEN c.claimed
            THEN now() + least(u.timeout_ms + $4, $3) * interval '1 millisecond' END
FROM unnest($1::task_insert_row[]) AS u
-- Per-row lookups by key (LATERAL ... LIMIT 1, which the planner cannot flatten), not
-- joins: as a join it hashed the whole instances table for every commit.
CROSS JOIN LATERAL (
    SELECT priority FROM workflow_instances
    WHERE tenant_id = u.tenant_id AND id = u.instance_id
    LIMIT 1
) AS i
LEFT JOIN LATERAL (
    SELECT settings FROM tenants WHERE tenant_id = u.tenant_id LIMIT 1
) AS tn ON true
CROSS JOIN LATERAL (
    SELECT u.kind = 'task' AND u.type <> ALL($2::text[])
           AND (i.priority < 10 OR u.limit_key IS NOT NULL
                OR coalesce(tn.settings -> 'scheduling' -> 'taskLimits' ?| ARRAY[u.type, '*'],
                            false)) AS held
) AS h
CROSS JOIN LATERAL (
    SELECT u.lease_owner IS NOT NULL AND NOT h.held AND u.kind = 'task'
           AND u.type <> ALL($2::text[]) AND u.run_at IS NULL AND u.delay_ms <= 0 AS claimed
) AS c
ON CONFLICT (instance_id, idempotency_key) DO NOTHING
RETURNING tenant_id, id, kind, type, run_at, now() AS db_now, held, status = 'running' AS claimed;

-- name: cancel_tasks
-- cancelTask (by key or name) and cancelTimer (by event type); a task already
-- finished is left alone. Running attempts are cancelled too: their result is
-- then discarded when they finish.
UPDATE tasks AS t
SET status = 'cancelled', lease_owner = NULL, lease_expires_at = NULL, updated_at = now(),
    finished_at = now()
FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[])
     AS c(tenant_id, instance_id, kind, idempotency_key, name)
WHERE t.tenant_id = c.tenant_id AND t.instance_id = c.instance_id AND t.kind = c.kind
  AND t.status IN ('pending', 'running')
  AND (t.idempotency_key = c.idempotency_key OR t.name = c.name)
RETURNING t.id;

-- name: cancel_open_tasks_of_instances
-- A finished instance runs no more tasks. $1/$2: parallel (tenant, instance) arrays.
-- Batch writes find their rows per key, by index, and update them by ctid: a join the
-- planner chooses can turn into a scan of the whole table while its statistics lag
-- behind its growth (the hello benchmark found claims, finishes and these
-- cancellations scanning thousands of rows per batch). A row another transaction
-- changed meanwhile no longer matches its ctid and is skipped, which every caller of
-- these statements tolerates (here: a task claimed at that instant finishes, and its
-- completion event finds the instance stopped).
UPDATE tasks AS t
SET status = 'cancelled', lease_owner = NULL, lease_expires_at = NULL, updated_at = now(),
    finished_at = now()
FROM (SELECT x.ctid AS row_id
      FROM unnest($1::text[], $2::uuid[]) AS k(tenant_id, instance_id)
      CROSS JOIN LATERAL (
          SELECT ctid FROM tasks
          WHERE tenant_id = k.tenant_id AND instance_id = k.instance_id
            AND status IN ('pending', 'running')
      ) AS x) AS hit
WHERE t.ctid = hit.row_id AND t.status IN ('pending', 'running');

-- name: claim_tasks
-- One attempt of each task named: a pending task that is due, or a running one whose
-- lease expired (its worker died). The lease is the task's timeout plus a margin ($6),
-- at most the default lease ($4), which the runner's heartbeat renews while the
-- handler runs (renew_leases): a dead worker's task is free again within $4 whatever
-- its timeout, and a long handler keeps its claim. Manual task types are never
-- claimed; nor is a task of an instance that is no longer running. Claims are
-- group-committed (engine/runtime/groupcommit.py); a key named twice is claimed once.
-- Rows are found per key and updated by ctid (see cancel_open_tasks_of_instances); a
-- task another worker claimed at the same instant is skipped, as it should be.
UPDATE tasks AS t
SET status = 'running', attempts = t.attempts + 1, lease_owner = $3,
    lease_expires_at = now() + least(t.timeout_ms + $6, $4) * interval '1 millisecond',
    updated_at = now()
FROM (SELECT DISTINCT x.ctid AS row_id
      FROM unnest($1::text[], $2::uuid[]) AS k(tenant_id, id)
      CROSS JOIN LATERAL (
          SELECT ctid FROM tasks WHERE tenant_id = k.tenant_id AND id = k.id LIMIT 1
      ) AS x) AS hit
WHERE t.ctid = hit.row_id
  AND t.type <> ALL($5::text[])
  AND ((t.status = 'pending' AND t.run_at <= now())
       OR (t.status = 'running' AND t.lease_expires_at < now()))
  -- A scalar subquery, not EXISTS: a semi-join may probe by (tenant, status) and filter
  -- thousands of running instances; this reads the one instance by its key.
  AND (SELECT i.status FROM workflow_instances i
       WHERE i.tenant_id = t.tenant_id AND i.id = t.instance_id) = 'running'
RETURNING t.tenant_id, t.id, t.instance_id, t.kind, t.type, t.name, t.input, t.attempts,
          t.max_attempts, t.backoff, t.timeout_ms, t.policy, t.idempotency_key,
          t.completion_event, t.failure_event;

-- name: renew_leases
-- The heartbeat: attempts still running under this worker's lease ($4) get it extended
-- by their own lease length ($3, ms). A lease already lost stays lost. It never waits
-- for a row: one locked by another transaction (its success or failure being committed)
-- is skipped, and renewed at the next beat if it is still running. Waiting was a
-- deadlock: the heartbeat locked its rows in one order while a group commit of
-- successes locked the same rows in another, and the success that Postgres aborted
-- made its attempts run again once their leases expired. Found per key, updated by
-- ctid, the row locked by the lookup itself (as mark_published in outbox.sql).
UPDATE tasks AS t
SET lease_expires_at = now() + hit.lease_ms * interval '1 millisecond'
FROM (SELECT x.ctid AS row_id, k.lease_ms
      FROM unnest($1::text[], $2::uuid[], $3::bigint[]) AS k(tenant_id, id, lease_ms)
      CROSS JOIN LATERAL (
          SELECT ctid FROM tasks
          WHERE tenant_id = k.tenant_id AND id = k.id
            AND status = 'running' AND lease_owner = $4
          LIMIT 1
          FOR UPDATE SKIP LOCKED
      ) AS x) AS hit
WHERE t.ctid = hit.row_id AND t.status = 'running' AND t.lease_owner = $4;

-- name: release_previous_claims
-- A restarted pool gives up the claims of its previous life at once: attempts leased
-- to another life of the same pool ($1 is the pool's identity, lease owners are
-- "<identity>/<life>") expire now, so they are claimed again without waiting out the
-- lease (the sweeper re-sends their jobs too).
UPDATE tasks
SET lease_expires_at = now() - interval '1 millisecond', updated_at = now()
WHERE status = 'running' AND starts_with(lease_owner, $1 || '/') AND lease_owner <> $2
RETURNING tenant_id, id, instance_id, attempts, now() AS db_now;

-- name: pending_not_due
-- Why a claim failed: a pending task that is simply not due yet is re-enqueued with
-- the remaining delay.
SELECT t.attempts, t.run_at, now() AS db_now
FROM tasks t
WHERE t.tenant_id = $1 AND t.id = $2 AND t.status = 'pending' AND t.run_at > now();

-- name: succeed_tasks
-- Finished attempts (group-committed, or in the step applying their events): only those
-- whose lease is still their attempt's ($3, per key) are recorded; the ids returned are
-- those. Found per key, updated by ctid. The lease is checked where the row is found,
-- not in the join: a join condition on the owner let the planner scan every running
-- task for it (a hash join on lease_owner). Checking it there is enough: a row changed
-- since (its lease renewed or taken) has a new ctid, and the update skips it.
UPDATE tasks AS t
SET status = 'succeeded', output = hit.output::jsonb, lease_owner = NULL,
    lease_expires_at = NULL, last_error = NULL, updated_at = now(), finished_at = now()
FROM (SELECT x.ctid AS row_id, k.output
      FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[])
          AS k(tenant_id, id, owner, output)
      CROSS JOIN LATERAL (
          SELECT ctid, status, lease_owner FROM tasks
          WHERE tenant_id = k.tenant_id AND id = k.id LIMIT 1
      ) AS x
      WHERE x.status = 'running' AND x.lease_owner = k.owner) AS hit
WHERE t.ctid = hit.row_id AND t.status = 'running'
RETURNING t.id, t.instance_id;

-- name: retry_task
-- A held task's next attempt waits for the admitter again.
UPDATE tasks
SET status = 'pending', run_at = now() + $5 * interval '1 millisecond', last_error = $4,
    lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND status = 'running' AND lease_owner = $3
RETURNING attempts, run_at, now() AS db_now, held;

-- name: fail_task
UPDATE tasks
SET status = 'failed', last_error = $4, lease_owner = NULL, lease_expires_at = NULL,
    updated_at = now(), finished_at = now()
WHERE tenant_id = $1 AND id = $2 AND status = 'running' AND lease_owner = $3
RETURNING instance_id, failure_event, attempts;

-- name: complete_manual_task
-- A HUMAN task finished from outside (the API), with its output.
UPDATE tasks AS t
SET status = 'succeeded', output = $3, updated_at = now(), finished_at = now()
FROM workflow_instances i
WHERE t.tenant_id = $1 AND t.id = $2 AND t.status = 'pending' AND t.type = ANY($4::text[])
  AND i.tenant_id = t.tenant_id AND i.id = t.instance_id AND i.status = 'running'
RETURNING t.instance_id, t.completion_event;

-- name: get_task
SELECT tenant_id, id, instance_id, kind, type, name, input, output, status, run_at, attempts,
       max_attempts, backoff, timeout_ms, policy, idempotency_key, completion_event,
       failure_event, last_error, created_at, updated_at, finished_at
FROM tasks
WHERE tenant_id = $1 AND id = $2;

-- name: list_instance_tasks
SELECT tenant_id, id, instance_id, kind, type, name, input, output, status, run_at, attempts,
       max_attempts, backoff, timeout_ms, policy, idempotency_key, completion_event,
       failure_event, last_error, created_at, updated_at, finished_at
FROM tasks
WHERE tenant_id = $1 AND instance_id = $2
ORDER BY created_at, id;

-- name: due_tasks
-- The sweep's safety net: due pending work and expired leases whose job may have
-- been lost. SKIP LOCKED lets several sweepers share the work.
SELECT t.tenant_id, t.id, t.attempts
FROM tasks t
JOIN workflow_instances i ON i.tenant_id = t.tenant_id AND i.id = t.instance_id
WHERE i.status = 'running'
  AND t.type <> ALL($1::text[])
  AND ((t.status = 'pending' AND t.run_at <= now() - $2 * interval '1 millisecond'
        -- a held task waits for the admitter, which claims it (then a lease covers it)
        AND NOT t.held)
       OR (t.status = 'running' AND t.lease_expires_at < now()))
ORDER BY t.run_at
LIMIT $3
FOR UPDATE OF t SKIP LOCKED;

-- name: cancelled_tasks_of
-- Which of these tasks were cancelled (their attempt's result arrives late), with their
-- instance; per key probes (see cancel_open_tasks_of_instances).
SELECT t.tenant_id, t.id, t.instance_id
FROM unnest($1::text[], $2::uuid[]) AS k(tenant_id, id)
CROSS JOIN LATERAL (
    SELECT tenant_id, id, instance_id FROM tasks w
    WHERE w.tenant_id = k.tenant_id AND w.id = k.id AND w.status = 'cancelled'
    LIMIT 1
) AS t;

-- name: lock_running_instance
-- Takes a running instance's row lock for an audit row written beside the interpreter
-- (a late completion); the version bump makes a step computed concurrently re-read.
UPDATE workflow_instances
SET version = version + 1, updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND status = 'running'
RETURNING snapshot;
