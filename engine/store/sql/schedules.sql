-- Schedules (docs/schedules.md): created, read and changed through the API; fired by the
-- engine's scheduler, which claims due rows FOR UPDATE SKIP LOCKED so that any number of
-- engines share them and each tick is handled by one.

-- name: insert_schedule
INSERT INTO schedules
    (tenant_id, id, definition_key, definition_version, cron, every_seconds, timezone, input,
     overlap, catch_up, anchor_at, next_run_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11, $12)
RETURNING *;

-- name: get_schedule
SELECT * FROM schedules WHERE tenant_id = $1 AND id = $2;

-- name: list_schedules
-- Newest first; $2/$3 is the (created_at, id) of the last row of the previous page.
SELECT * FROM schedules
WHERE tenant_id = $1
  AND ($2::timestamptz IS NULL OR (created_at, id) < ($2::timestamptz, $3::uuid))
ORDER BY created_at DESC, id DESC
LIMIT $4;

-- name: pause_schedule
UPDATE schedules SET paused = true, buffered_at = NULL, updated_at = now()
WHERE tenant_id = $1 AND id = $2
RETURNING *;

-- name: resume_schedule
-- $3: the first tick after the resume; ticks missed while paused are not caught up.
UPDATE schedules
SET paused = false, next_run_at = CASE WHEN paused THEN $3 ELSE next_run_at END,
    updated_at = now()
WHERE tenant_id = $1 AND id = $2
RETURNING *;

-- name: delete_schedule
DELETE FROM schedules WHERE tenant_id = $1 AND id = $2 RETURNING id;

-- name: claim_due_schedules
-- Active schedules whose next tick has passed ($1 is now), or whose buffered tick may
-- start because their previous instance finished; locked until the caller commits, and
-- rows another engine holds are skipped. last_running says whether the instance of the
-- last tick still runs (the overlap policy's question).
SELECT s.*, coalesce(i.status = 'running', false) AS last_running
FROM schedules s
LEFT JOIN workflow_instances i ON i.tenant_id = s.tenant_id AND i.id = s.last_instance_id
WHERE NOT s.paused
  AND (s.next_run_at <= $1
       OR (s.buffered_at IS NOT NULL AND coalesce(i.status, 'done') <> 'running'))
ORDER BY s.next_run_at
LIMIT $2
FOR UPDATE OF s SKIP LOCKED;

-- name: record_schedule_ticks
-- What the scheduler did with a claimed row, in the claiming transaction.
UPDATE schedules
SET next_run_at = $3, buffered_at = $4, last_tick_at = $5, last_instance_id = $6,
    skipped_ticks = skipped_ticks + $7, updated_at = now()
WHERE tenant_id = $1 AND id = $2;

-- name: next_schedule_tick
-- The earliest tick of any active schedule: the scheduler sleeps until then at most.
SELECT min(next_run_at) FROM schedules WHERE NOT paused;
