-- Upgrades between definition versions: the request, its per-instance verdicts, and
-- the reads the dry run and the move make in bulk (docs/upgrades.md).

-- name: insert_upgrade
INSERT INTO upgrades
    (tenant_id, id, definition_key, from_definition_id, to_definition_id, from_version,
     to_version, state_map, context_defaults, dry_run, force, status)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'planning');

-- name: finish_planning
-- $4: planning (after each page), then done (a dry run, or nothing chosen) or applying.
UPDATE upgrades
SET status = $4, total = $3, counts = $5, updated_at = now(),
    finished_at = CASE WHEN $4 = 'done' THEN now() ELSE NULL END
WHERE tenant_id = $1 AND id = $2;

-- name: fail_upgrade
UPDATE upgrades
SET status = 'failed', error = $3, updated_at = now(), finished_at = now()
WHERE tenant_id = $1 AND id = $2;

-- name: finish_upgrade
-- An apply whose chosen instances were all moved or skipped.
UPDATE upgrades
SET status = 'done', updated_at = now(), finished_at = now()
WHERE tenant_id = $1 AND id = $2 AND status = 'applying';

-- name: get_upgrade
SELECT tenant_id, id, definition_key, from_definition_id, to_definition_id, from_version,
       to_version, state_map, context_defaults, dry_run, force, status, total, counts, error,
       created_at, updated_at, finished_at
FROM upgrades
WHERE tenant_id = $1 AND id = $2;

-- name: plan_page
-- One page of the running instances of version A, in id order (keyset on the primary
-- key: each page reads its own rows, never the ones before it). $5: only these ids
-- (NULL: all of them).
SELECT id, snapshot, version
FROM workflow_instances
WHERE tenant_id = $1 AND id > $3 AND definition_id = $2 AND status = 'running'
  AND ($5::uuid[] IS NULL OR id = ANY($5::uuid[]))
ORDER BY tenant_id, id
LIMIT $4;

-- name: histories
-- The audit logs of a page of instances, in one statement (one index range per instance).
SELECT instance_id, seq, type, payload, state_after, effects
FROM workflow_events
WHERE instance_id = ANY($2::uuid[]) AND tenant_id = $1
ORDER BY instance_id, seq;

-- name: open_work
-- The open tasks and timers of a page of instances.
SELECT instance_id, id, kind, name, idempotency_key, created_at
FROM tasks
WHERE tenant_id = $1 AND instance_id = ANY($2::uuid[]) AND status IN ('pending', 'running')
ORDER BY instance_id, created_at, id;

-- name: insert_items
INSERT INTO upgrade_items (tenant_id, upgrade_id, instance_id, verdict, detail, chosen)
SELECT $1, $2, u.instance_id, u.verdict, u.detail::jsonb, u.chosen
FROM unnest($3::uuid[], $4::text[], $5::text[], $6::boolean[])
     AS u(instance_id, verdict, detail, chosen);

-- name: list_items
SELECT instance_id, verdict, detail, chosen, outcome, applied_verdict
FROM upgrade_items
WHERE tenant_id = $1 AND upgrade_id = $2 AND instance_id > $3
ORDER BY instance_id
LIMIT $4;

-- name: item_progress
-- An apply's progress: its chosen items by outcome (one range of the primary key).
SELECT count(*) FILTER (WHERE outcome = 'moved') AS moved,
       count(*) FILTER (WHERE outcome = 'skipped') AS skipped,
       count(*) FILTER (WHERE outcome = 'planned') AS planned
FROM upgrade_items
WHERE tenant_id = $1 AND upgrade_id = $2 AND chosen;

-- name: planned_not_running
-- Of the items still planned, those whose instance stopped (it finished before its move
-- was handled): they will never move, so they count as skipped. Per key probes.
SELECT count(*) AS stopped
FROM upgrade_items u
CROSS JOIN LATERAL (
    SELECT status FROM workflow_instances w
    WHERE w.tenant_id = u.tenant_id AND w.id = u.instance_id LIMIT 1
) AS i
WHERE u.tenant_id = $1 AND u.upgrade_id = $2 AND u.chosen AND u.outcome = 'planned'
  AND i.status <> 'running';

-- name: load_moves
-- What the shard needs to make the moves a batch of xstate.upgrade events ask for.
-- Per key LATERAL probes, as in instances.sql: a hash join the planner picks on young
-- statistics would read whole tables once per batch.
SELECT u.id AS upgrade_id, k.instance_id, u.from_definition_id, u.to_definition_id,
       u.from_version, u.to_version, u.state_map, u.context_defaults, u.force, u.dry_run,
       x.verdict, x.chosen, x.outcome
FROM unnest($1::text[], $2::uuid[], $3::uuid[]) AS k(tenant_id, upgrade_id, instance_id)
CROSS JOIN LATERAL (
    SELECT * FROM upgrades w WHERE w.tenant_id = k.tenant_id AND w.id = k.upgrade_id LIMIT 1
) AS u
CROSS JOIN LATERAL (
    SELECT verdict, chosen, outcome FROM upgrade_items i
    WHERE i.tenant_id = k.tenant_id AND i.upgrade_id = k.upgrade_id
      AND i.instance_id = k.instance_id
    LIMIT 1
) AS x;

-- name: histories_of
-- The audit logs of the instances a batch moves (see histories), tenant per key.
SELECT k.instance_id, e.seq, e.type, e.payload, e.state_after, e.effects
FROM unnest($1::text[], $2::uuid[]) AS k(tenant_id, instance_id)
CROSS JOIN LATERAL (
    SELECT seq, type, payload, state_after, effects FROM workflow_events w
    WHERE w.instance_id = k.instance_id AND w.tenant_id = k.tenant_id
    ORDER BY w.seq
) AS e
ORDER BY k.instance_id, e.seq;

-- name: open_work_of
SELECT k.instance_id, t.id, t.kind, t.name, t.idempotency_key, t.created_at
FROM unnest($1::text[], $2::uuid[]) AS k(tenant_id, instance_id)
CROSS JOIN LATERAL (
    SELECT id, kind, name, idempotency_key, created_at FROM tasks w
    WHERE w.tenant_id = k.tenant_id AND w.instance_id = k.instance_id
      AND w.status IN ('pending', 'running')
) AS t
ORDER BY k.instance_id, t.created_at, t.id;

-- name: mark_items
-- Written by the step that handled each move, in its transaction; rows found per key
-- and updated by ctid (see update_instances in instances.sql).
UPDATE upgrade_items AS x
SET outcome = u.outcome, applied_verdict = u.applied_verdict
FROM (SELECT hit.ctid AS row_id, k.outcome, k.applied_verdict
      FROM unnest($1::text[], $2::uuid[], $3::uuid[], $4::text[], $5::text[])
           AS k(tenant_id, upgrade_id, instance_id, outcome, applied_verdict)
      CROSS JOIN LATERAL (
          SELECT ctid FROM upgrade_items i
          WHERE i.tenant_id = k.tenant_id AND i.upgrade_id = k.upgrade_id
            AND i.instance_id = k.instance_id
          LIMIT 1
      ) AS hit) AS u
WHERE x.ctid = u.row_id AND x.outcome = 'planned';
