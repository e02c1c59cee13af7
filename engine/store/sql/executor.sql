-- Queries of the executor pools (engine/runtime/executor.py).

-- name: task_types
-- The type of each task of a batch of jobs, read before claiming so a job waits for
-- its type's concurrency slot without holding a lease. Timers have kind 'timer'.
SELECT t.tenant_id, t.id, t.kind, t.type
FROM tasks t
JOIN unnest($1::text[], $2::uuid[]) AS k(tenant_id, id)
  ON t.tenant_id = k.tenant_id AND t.id = k.id;
