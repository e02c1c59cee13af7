-- 0006_batch_idempotency: a batch may carry the Idempotency-Key of the request that
-- started it.
--
-- A client whose POST /v1/batches timed out cannot know whether the batch started; it
-- retries with the same key and gets the same batch back instead of a second one. The
-- instances of a keyed batch carry start idempotency keys derived from the batch id and
-- their position (workflow_instances.start_idempotency_key), so a retry that finds a
-- batch whose first request died half-way completes it without starting anything twice.
--
--   idempotency_key  optional; unique per tenant while the batch row exists (rows are
--                    never deleted, so the key is honoured for good)
ALTER TABLE batches ADD COLUMN idempotency_key text CHECK (idempotency_key <> '');

CREATE UNIQUE INDEX batches_idempotency_key
    ON batches (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
