-- 0017: an interactive start is applied in the transaction that creates its instance.
--
-- Since 0013 an interactive instance's row recorded the start event it still waited
-- for (start_event), a shard applied it as the instance's first step, and the sweeper
-- re-sent it from this column. Now start_many applies the start itself, as it inserts
-- the row (engine/runtime/instances.py): the row is created at the checkpoint its start
-- step leaves, so no instance waits for an interactive start any more. A start below
-- the interactive priority still waits in the outbox for the admitter.
--
-- Rows an earlier version left waiting (created, their start not applied yet) get the
-- outbox row their start would have had before 0013: the same event job, which the
-- outbox publisher, or the sweeper after its grace period, sends until the instance
-- applies it (its event id is fixed, so it applies once).
INSERT INTO outbox (tenant_id, instance_id, queue, job_name, data, dedupe_key)
SELECT tenant_id, id, 'workflow-orchestrator', 'event',
       jsonb_build_object(
           'tenantId', tenant_id,
           'instanceId', id::text,
           'event', jsonb_build_object(
               'id', 'start-' || id::text, 'type', start_event, 'payload', '{}'::jsonb)),
       'start-' || id::text
FROM workflow_instances
WHERE start_event IS NOT NULL AND status = 'running'
ON CONFLICT (tenant_id, queue, dedupe_key) DO NOTHING;

DROP INDEX workflow_instances_unstarted_idx;
ALTER TABLE workflow_instances DROP COLUMN start_event;
