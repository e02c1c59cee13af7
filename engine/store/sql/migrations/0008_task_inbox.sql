-- 0008: the inbox, one tenant's pending tasks of one type (GET /v1/tasks?status=pending&type=HUMAN).
--
-- The console and `statefleet tasks inbox` page through it oldest first, keyset-paginated
-- on (created_at, id). Only pending rows are indexed: a task leaves the index when it
-- finishes, so the index stays as small as the open work, not the whole history.
CREATE INDEX tasks_pending_by_type_idx ON tasks (tenant_id, type, created_at, id)
    WHERE status = 'pending';
