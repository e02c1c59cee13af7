-- 0002_tenants_and_batches: tenants and their API keys, and batches of instances.
--
-- Table layout
--
--   tenants      one row per tenant; the HTTP API's keys decide which tenant a request is
--   api_keys     a tenant's API keys: only a SHA-256 of each secret is stored
--   batches      one row per "start many" call, so its progress can be counted later
--
-- The tenant's own id column is called tenant_id (not id) so the rule of 0001 holds here
-- too: every table carries tenant_id and it leads every tenant-scoped index.


-- tenants: who may use the API.
--   tenant_id   the id every other table's tenant_id holds (text: readable in logs)
--   name        a human label, not unique (two teams may both be called "ops")
CREATE TABLE tenants (
    tenant_id   text        NOT NULL CHECK (tenant_id <> ''),
    name        text        NOT NULL CHECK (name <> ''),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tenants_pkey PRIMARY KEY (tenant_id)
);


-- api_keys: bearer keys "sf_<key_id>_<secret>".
--   key_id         public part of the key, globally unique: authentication looks the key up
--                  by it before knowing the tenant, hence the one index not led by tenant_id
--   secret_sha256  SHA-256 of the secret; the secret is 32 random bytes, so a slow password
--                  hash would add nothing, and a fast one keeps every request cheap
--   revoked_at     set once; a revoked key answers 401 and is never reinstated
CREATE TABLE api_keys (
    tenant_id      text        NOT NULL REFERENCES tenants (tenant_id),
    key_id         text        NOT NULL CHECK (key_id <> ''),
    secret_sha256  bytea       NOT NULL CHECK (length(secret_sha256) = 32),
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz,
    CONSTRAINT api_keys_pkey PRIMARY KEY (tenant_id, key_id),
    CONSTRAINT api_keys_key_id_key UNIQUE (key_id)
);


-- batches: one "start many" call.
--   definition_id  the definition version every instance of the batch started on
--   total          how many instances the call asked for (progress is counted from
--                  workflow_instances.batch_id)
CREATE TABLE batches (
    tenant_id      text        NOT NULL CHECK (tenant_id <> ''),
    id             uuid        NOT NULL DEFAULT gen_random_uuid(),
    definition_id  uuid        NOT NULL,
    total          integer     NOT NULL CHECK (total >= 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT batches_pkey PRIMARY KEY (tenant_id, id),
    CONSTRAINT batches_definition_fkey FOREIGN KEY (tenant_id, definition_id)
        REFERENCES workflow_definitions (tenant_id, id)
);


-- workflow_instances.batch_id: the batch an instance was started by, if any.
ALTER TABLE workflow_instances ADD COLUMN batch_id uuid;
ALTER TABLE workflow_instances ADD CONSTRAINT workflow_instances_batch_fkey
    FOREIGN KEY (tenant_id, batch_id) REFERENCES batches (tenant_id, id);

-- A batch's progress: counts by status without reading the tenant's other instances.
CREATE INDEX workflow_instances_batch_idx
    ON workflow_instances (tenant_id, batch_id, status) WHERE batch_id IS NOT NULL;
-- Listing newest first with a keyset cursor on (created_at, id).
CREATE INDEX workflow_instances_created_idx
    ON workflow_instances (tenant_id, created_at DESC, id DESC);
