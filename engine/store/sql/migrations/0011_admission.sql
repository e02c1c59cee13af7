-- 0011: priorities, weighted fair share across tenants, and task limits
-- (docs/scheduling.md).
--
-- Interactive work (single starts, sends, HUMAN completions, task completions) goes to
-- the queue at once, as before. Work below the interactive priority (a batch's starts
-- and its instances' tasks) and every task under a concurrency or rate limit is *held*:
-- it waits here, in Postgres, and each engine's admitter takes it a batch at a time, in
-- weighted fair order across tenants (priority, then age, within a tenant), within the
-- limits, and hands it straight to its shards and pools. So the broker never holds a
-- backlog for an interactive job to wait behind, and one tenant's batch cannot starve
-- another tenant's work.
--
--   priority            0..10, higher first; 10 is interactive (never held). Instances
--                       carry it (a batch's default is 5, a single start's 10) and pass
--                       it on to their tasks and their start event
--   held                the row waits for the admitter instead of being published
--   admitted_at         tasks: when the admitter handed a held task to a pool (NULL while
--                       it waits); a retry waits again. Outbox rows use published_at
--   limit_key, limit_concurrency, limit_per_second
--                       tasks: the limit a spec's task.limits declared (key: the task
--                       type, or type:<value of the key expression>); tenants' per-type
--                       limits live in tenants.settings -> 'scheduling'
--   rate_limits         one row per rate-limited key: the GCRA's theoretical arrival
--                       time of the next start

ALTER TABLE workflow_instances
    ADD COLUMN priority smallint NOT NULL DEFAULT 10 CHECK (priority BETWEEN 0 AND 10);

ALTER TABLE batches
    ADD COLUMN priority smallint NOT NULL DEFAULT 5 CHECK (priority BETWEEN 0 AND 10);

ALTER TABLE outbox
    ADD COLUMN held boolean NOT NULL DEFAULT false,
    ADD COLUMN priority smallint NOT NULL DEFAULT 10 CHECK (priority BETWEEN 0 AND 10);

ALTER TABLE tasks
    ADD COLUMN held boolean NOT NULL DEFAULT false,
    ADD COLUMN priority smallint NOT NULL DEFAULT 10 CHECK (priority BETWEEN 0 AND 10),
    ADD COLUMN admitted_at timestamptz,
    ADD COLUMN limit_key text CHECK (limit_key <> ''),
    ADD COLUMN limit_concurrency integer CHECK (limit_concurrency >= 1),
    ADD COLUMN limit_per_second double precision CHECK (limit_per_second > 0);

-- What the admitter reads: per tenant, its waiting rows in priority then age order.
CREATE INDEX outbox_held_idx ON outbox (tenant_id, priority DESC, created_at)
    WHERE held AND published_at IS NULL;
CREATE INDEX tasks_held_idx ON tasks (tenant_id, priority DESC, run_at)
    WHERE held AND status = 'pending' AND admitted_at IS NULL;

-- The sweeper's unpublished rows: the held ones are the admitter's, and a big batch's
-- would otherwise lie in the way of every sweep.
DROP INDEX outbox_unpublished_idx;
CREATE INDEX outbox_unpublished_idx ON outbox (available_at)
    WHERE published_at IS NULL AND NOT held;

-- Limits count the attempts running and those admitted but not yet claimed.
CREATE INDEX tasks_admitted_idx ON tasks (tenant_id, type)
    WHERE status = 'pending' AND admitted_at IS NOT NULL;
CREATE INDEX tasks_running_idx ON tasks (tenant_id, type) WHERE status = 'running';

CREATE TABLE rate_limits (
    tenant_id  text        NOT NULL CHECK (tenant_id <> ''),
    key        text        NOT NULL CHECK (key <> ''),
    tat        timestamptz NOT NULL,
    CONSTRAINT rate_limits_pkey PRIMARY KEY (tenant_id, key)
);
