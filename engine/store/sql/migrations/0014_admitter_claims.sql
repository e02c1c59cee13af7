-- 0014: the admitter claims a held task for the pool it hands it to.
--
-- Until now a held task was admitted (admitted_at set in the pass's transaction) and
-- then claimed by the pool it was handed to (status, attempts and lease set by a second
-- update): two updates of the row, two statements, and a claim round trip in the pool
-- for every task a batch runs. The pass now claims the task itself, under the lease
-- owner of the pool it hands it to, so a held task is either pending (waiting for the
-- admitter) or running (claimed, leased, renewed by its pool's heartbeat), like any
-- other. Limits count the running attempts only; a claim whose pool never ran it
-- expires with its lease, as a dead pool's does, and the sweeper re-sends it.
--
-- Rows an older version left admitted but unclaimed are pending again here, and the
-- admitter takes them like any other held task.
DROP INDEX IF EXISTS tasks_admitted_idx;
DROP INDEX IF EXISTS tasks_held_idx;
ALTER TABLE tasks DROP COLUMN admitted_at;

CREATE INDEX tasks_held_idx ON tasks (tenant_id, priority DESC, run_at)
    WHERE held AND status = 'pending';
