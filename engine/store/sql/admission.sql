-- The admitter (engine/runtime/admission.py): held work handed on in weighted fair
-- order across tenants, priority then age within a tenant, within task limits.

-- name: tenants_with_held_events
-- The tenants with held event rows: a skip scan of outbox_held_idx (one index probe per
-- tenant however many rows wait).
WITH RECURSIVE t AS (
    (SELECT tenant_id FROM outbox WHERE held AND published_at IS NULL
     ORDER BY tenant_id LIMIT 1)
    UNION ALL
    SELECT (SELECT o.tenant_id FROM outbox o
            WHERE o.held AND o.published_at IS NULL AND o.tenant_id > t.tenant_id
            ORDER BY o.tenant_id LIMIT 1)
    FROM t WHERE t.tenant_id IS NOT NULL
)
SELECT tenant_id FROM t WHERE tenant_id IS NOT NULL;

-- name: take_held_events
-- Up to $2[i] rows of tenant $1[i], priority then age, marked published (taken) in the
-- same statement. SKIP LOCKED: the admitters of several engines share the rows. A row
-- whose delivery fails is released again (release_events); one taken by a process that
-- died is re-sent through the broker by the sweeper (published_unapplied_events).
UPDATE outbox AS o SET published_at = now()
FROM (SELECT x.ctid AS row_id
      FROM unnest($1::text[], $2::int[]) AS q(tenant_id, n)
      CROSS JOIN LATERAL (
          SELECT ctid FROM outbox
          WHERE tenant_id = q.tenant_id AND held AND published_at IS NULL
          ORDER BY priority DESC, created_at
          LIMIT q.n
          FOR UPDATE SKIP LOCKED
      ) AS x) AS hit
WHERE o.ctid = hit.row_id
RETURNING o.tenant_id, o.id, o.instance_id, o.queue, o.job_name, o.data, o.dedupe_key,
          o.priority;

-- name: release_events
-- Taken rows whose delivery failed wait again. $1/$2: parallel (tenant, id) arrays, each
-- found by its key (a LATERAL ... LIMIT 1 the planner cannot turn into a scan of the
-- whole table, as it did with "= ANY" on a new database) and updated by ctid.
UPDATE outbox AS o SET published_at = NULL
FROM (SELECT x.ctid AS row_id
      FROM unnest($1::text[], $2::uuid[]) AS k(tenant_id, id)
      CROSS JOIN LATERAL (
          SELECT ctid FROM outbox WHERE tenant_id = k.tenant_id AND id = k.id LIMIT 1
      ) AS x) AS hit
WHERE o.ctid = hit.row_id AND o.held;

-- name: lock_task_admission
-- Task admission passes run one at a time across the cluster, so a limit counted at the
-- start of a pass is still true when the pass admits (a transaction-level lock: a
-- dead admitter's lock goes with its connection).
SELECT pg_try_advisory_xact_lock(hashtext('statefleet.task_admission'));

-- name: tenants_with_held_tasks
-- The tenants with held tasks waiting: a skip scan of tasks_held_idx.
WITH RECURSIVE t AS (
    (SELECT tenant_id FROM tasks WHERE held AND status = 'pending'
     ORDER BY tenant_id LIMIT 1)
    UNION ALL
    SELECT (SELECT k.tenant_id FROM tasks k
            WHERE k.held AND k.status = 'pending' AND k.tenant_id > t.tenant_id
            ORDER BY k.tenant_id LIMIT 1)
    FROM t WHERE t.tenant_id IS NOT NULL
)
SELECT tenant_id FROM t WHERE tenant_id IS NOT NULL;

-- name: task_usage
-- What limits count, for tenants $1: the attempts running (the admitter's claims among
-- them), by tenant, type and spec limit key; read from the small partial index
-- tasks_running_idx, whatever the size of the tenants' task history.
SELECT tenant_id, type, limit_key, count(*) AS n, max(limit_concurrency) AS cap
FROM tasks
WHERE tenant_id = ANY($1::text[]) AND status = 'running'
GROUP BY tenant_id, type, limit_key;

-- name: held_due_tasks
-- Candidates: up to $2[i] due held tasks of tenant $1[i], priority then due time,
-- leaving out those of a (tenant, type) in $3/$4 or a (tenant, limit key) in $5/$6 (at
-- their limit already). Locked until the pass commits; the pass admits some of them.
SELECT x.row_id, x.tenant_id, x.id, x.instance_id, x.type, x.attempts, x.limit_key,
       x.limit_concurrency, x.limit_per_second, now() AS db_now
FROM unnest($1::text[], $2::int[]) AS q(tenant_id, n)
CROSS JOIN LATERAL (
    SELECT t.ctid AS row_id, t.tenant_id, t.id, t.instance_id, t.type, t.attempts, t.limit_key,
           t.limit_concurrency, t.limit_per_second
    FROM tasks t
    WHERE t.tenant_id = q.tenant_id AND t.held AND t.status = 'pending'
      AND t.run_at <= now()
      AND NOT EXISTS (SELECT 1 FROM unnest($3::text[], $4::text[]) AS e(tenant_id, type)
                      WHERE e.tenant_id = t.tenant_id AND e.type = t.type)
      AND NOT EXISTS (SELECT 1 FROM unnest($5::text[], $6::text[]) AS e(tenant_id, key)
                      WHERE e.tenant_id = t.tenant_id AND e.key = t.limit_key)
    ORDER BY t.priority DESC, t.run_at
    LIMIT q.n
    FOR UPDATE SKIP LOCKED
) AS x;

-- name: claim_admitted
-- The tasks a pass admits, claimed in its transaction for the pool it hands them to ($2:
-- that pool's lease owner), as claim_tasks (tasks.sql) claims a pending task: running,
-- one more attempt, a lease the pool's heartbeat renews from the moment it receives
-- them. A task of an instance that is no longer running is not claimed (its open tasks
-- are being cancelled). $1: the rows' ctids as held_due_tasks read them; the pass holds
-- their locks since, so none moved. A TID scan whatever the statistics say: found by
-- key in a self-join (as admit_tasks did), a plan made while the table looked empty
-- scanned every pending task for every key, five seconds a pass on a fresh database.
UPDATE tasks AS t
SET status = 'running', attempts = t.attempts + 1, lease_owner = $2,
    lease_expires_at = now() + least(t.timeout_ms + $4, $3) * interval '1 millisecond',
    updated_at = now()
WHERE t.ctid = ANY($1::tid[]) AND t.status = 'pending'
  AND (SELECT i.status FROM workflow_instances i
       WHERE i.tenant_id = t.tenant_id AND i.id = t.instance_id) = 'running'
RETURNING t.tenant_id, t.id, t.instance_id, t.kind, t.type, t.name, t.input, t.attempts,
          t.max_attempts, t.backoff, t.timeout_ms, t.policy, t.idempotency_key,
          t.completion_event, t.failure_event;

-- name: expire_claims
-- Claims whose hand-over failed (the pool call raised, or the pool could not run the
-- job): their leases expire now, as a dead pool's do, so the sweeper re-sends them and
-- any pool claims them again (one attempt counted, since a handler may have run). A
-- claim that has moved on (finished, or renewed by another owner) is left alone.
UPDATE tasks AS t
SET lease_expires_at = now() - interval '1 millisecond', updated_at = now()
FROM (SELECT x.ctid AS row_id
      FROM unnest($1::text[], $2::uuid[]) AS k(tenant_id, id)
      CROSS JOIN LATERAL (
          SELECT ctid FROM tasks WHERE tenant_id = k.tenant_id AND id = k.id LIMIT 1
      ) AS x) AS hit
WHERE t.ctid = hit.row_id AND t.status = 'running' AND t.lease_owner = $3;

-- name: rate_states
SELECT tenant_id, key, tat FROM rate_limits
WHERE tenant_id = ANY($1::text[]) AND key = ANY($2::text[]);

-- name: save_rate_states
INSERT INTO rate_limits (tenant_id, key, tat)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[])
ON CONFLICT (tenant_id, key) DO UPDATE SET tat = excluded.tat;
