-- Definition versions. Writers of one (tenant, key) are serialised by an advisory
-- transaction lock, so "same spec -> same version, changed spec -> next version"
-- holds when two deploys race.

-- name: lock_definition_key
SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0));

-- name: find_definition_by_checksum
SELECT id, tenant_id, key, version, spec, checksum, created_at
FROM workflow_definitions
WHERE tenant_id = $1 AND key = $2 AND checksum = $3;

-- name: insert_next_definition_version
INSERT INTO workflow_definitions (tenant_id, key, version, spec, checksum)
SELECT $1, $2, coalesce(max(version), 0) + 1, $3, $4
FROM workflow_definitions
WHERE tenant_id = $1 AND key = $2
RETURNING id, tenant_id, key, version, spec, checksum, created_at;

-- name: get_definition_version
SELECT id, tenant_id, key, version, spec, checksum, created_at
FROM workflow_definitions
WHERE tenant_id = $1 AND key = $2 AND version = $3;

-- name: get_latest_definition
SELECT id, tenant_id, key, version, spec, checksum, created_at
FROM workflow_definitions
WHERE tenant_id = $1 AND key = $2
ORDER BY version DESC
LIMIT 1;

-- name: get_definition_by_id
SELECT id, tenant_id, key, version, spec, checksum, created_at
FROM workflow_definitions
WHERE tenant_id = $1 AND id = $2;

-- name: list_definitions
SELECT DISTINCT ON (key) id, tenant_id, key, version, spec, checksum, created_at
FROM workflow_definitions
WHERE tenant_id = $1
ORDER BY key, version DESC;
