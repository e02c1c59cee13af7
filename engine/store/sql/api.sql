-- Queries behind the HTTP API's use cases that the runtime itself does not need:
-- listing, cancelling, batches, and manual task failure and retry. Every query filters
-- by tenant_id ($1), so another tenant's ids find nothing.

-- name: list_instances
-- Newest first, keyset-paginated on (created_at, id): a page never skips or repeats a
-- row when new instances arrive meanwhile, and the cost does not grow with the page
-- number. NULL filters are off; $9 is an id prefix (lower-case hex and dashes only, so
-- it holds no LIKE wildcard). The caller asks for one row more than the page to
-- learn whether there is a next page.
SELECT i.tenant_id, i.id, i.definition_id, d.key AS definition_key,
       d.version AS definition_version, i.status, i.snapshot, i.output, i.error,
       i.created_at, i.updated_at, i.batch_id, i.priority
FROM workflow_instances i
JOIN workflow_definitions d ON d.tenant_id = i.tenant_id AND d.id = i.definition_id
WHERE i.tenant_id = $1
  AND ($2::text IS NULL OR d.key = $2)
  AND ($3::text IS NULL OR i.status = $3)
  AND ($4::timestamptz IS NULL OR i.created_at >= $4)
  AND ($5::timestamptz IS NULL OR i.created_at < $5)
  AND ($6::timestamptz IS NULL OR (i.created_at, i.id) < ($6, $7::uuid))
  AND ($9::text IS NULL OR i.id::text LIKE $9 || '%')
ORDER BY i.created_at DESC, i.id DESC
LIMIT $8;

-- name: cancel_instance
-- Takes the instance's row lock and bumps its version, so a concurrent step loses its
-- version check and re-reads a cancelled instance. Returns nothing if it is not running.
UPDATE workflow_instances
SET status = 'cancelled', version = version + 1, updated_at = now(), finished_at = now()
WHERE tenant_id = $1 AND id = $2 AND status = 'running'
RETURNING snapshot;

-- name: reopen_instance
-- Retrying the task that failed an instance: the instance runs again from its checkpoint.
UPDATE workflow_instances
SET status = 'running', error = NULL, version = version + 1, updated_at = now(),
    finished_at = NULL
WHERE tenant_id = $1 AND id = $2 AND status = 'failed'
RETURNING snapshot;

-- name: last_event
-- The instance's latest audit row: did this task's failure stop it?
SELECT seq, event_id, type
FROM workflow_events
WHERE tenant_id = $1 AND instance_id = $2
ORDER BY seq DESC
LIMIT 1;

-- name: insert_batch
-- Returns the id, or nothing when the idempotency key $5 was used before (NULL: no key).
INSERT INTO batches (tenant_id, id, definition_id, total, idempotency_key, priority)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id;

-- name: get_batch_by_key
SELECT b.id, b.definition_id, d.key AS definition_key, b.total, b.priority
FROM batches b
JOIN workflow_definitions d ON d.tenant_id = b.tenant_id AND d.id = b.definition_id
WHERE b.tenant_id = $1 AND b.idempotency_key = $2;

-- name: get_batch
SELECT tenant_id, id, definition_id, total, created_at, priority
FROM batches
WHERE tenant_id = $1 AND id = $2;

-- name: batch_counts
SELECT status, count(*) AS n
FROM workflow_instances
WHERE tenant_id = $1 AND batch_id = $2
GROUP BY status;

-- name: fail_manual_task
-- A HUMAN task failed from outside (the API), with the reason.
UPDATE tasks AS t
SET status = 'failed', last_error = $3, updated_at = now(), finished_at = now()
FROM workflow_instances i
WHERE t.tenant_id = $1 AND t.id = $2 AND t.status = 'pending' AND t.type = ANY($4::text[])
  AND i.tenant_id = t.tenant_id AND i.id = t.instance_id AND i.status = 'running'
RETURNING t.instance_id, t.name, t.type, t.failure_event, t.attempts;

-- name: retry_failed_task
-- A failed task gets one more attempt: pending again, due now. max_attempts grows so the
-- runner counts the new attempt as the last one allowed, not as one too many. A held
-- task waits for the admitter again.
UPDATE tasks
SET status = 'pending', run_at = now(), max_attempts = greatest(max_attempts, attempts + 1),
    lease_owner = NULL, lease_expires_at = NULL, finished_at = NULL, updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND status = 'failed'
RETURNING instance_id, kind, type, name, attempts, run_at, now() AS db_now, held;

-- name: insert_tenant
INSERT INTO tenants (tenant_id, name) VALUES ($1, $2)
RETURNING tenant_id, name, created_at;

-- name: get_tenant
SELECT tenant_id, name, created_at FROM tenants WHERE tenant_id = $1;

-- name: insert_api_key
INSERT INTO api_keys (tenant_id, key_id, secret_sha256) VALUES ($1, $2, $3)
RETURNING tenant_id, key_id, created_at, revoked_at;

-- name: list_api_keys
SELECT key_id, created_at, revoked_at
FROM api_keys
WHERE tenant_id = $1
ORDER BY created_at, key_id;

-- name: revoke_api_key
UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
WHERE tenant_id = $1 AND key_id = $2
RETURNING key_id;

-- name: find_api_key
-- Authentication: the key id is the lookup; the caller compares the secret's hash.
SELECT tenant_id, secret_sha256, revoked_at FROM api_keys WHERE key_id = $1;

-- name: list_tasks
-- The tenant's tasks across instances, oldest first (the inbox: what has waited longest
-- comes first), keyset-paginated on (created_at, id) like list_instances. NULL filters
-- are off; with status 'pending' and a type, tasks_pending_by_type_idx serves it. The
-- caller asks for one row more than the page to learn whether there is a next page.
SELECT tenant_id, id, instance_id, kind, type, name, input, output, status, run_at, attempts,
       max_attempts, backoff, timeout_ms, policy, idempotency_key, completion_event,
       failure_event, last_error, created_at, updated_at, finished_at
FROM tasks
WHERE tenant_id = $1
  AND ($2::text IS NULL OR status = $2)
  AND ($3::text IS NULL OR type = $3)
  AND ($4::timestamptz IS NULL OR (created_at, id) > ($4, $5::uuid))
ORDER BY created_at, id
LIMIT $6;
