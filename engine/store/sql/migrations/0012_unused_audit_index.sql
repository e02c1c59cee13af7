-- 0012: the audit log loses an index no query reads.
--
-- workflow_events_tenant_created_idx (tenant_id, created_at) came with the first schema
-- for tenant-wide audit queries that were never written: every read of the audit log
-- goes by instance (the primary key (instance_id, seq) and the event-id key). It was the
-- third index of the most-inserted table (three rows per hello instance), so dropping it
-- saves one index insertion per audit row.
DROP INDEX IF EXISTS workflow_events_tenant_created_idx;
