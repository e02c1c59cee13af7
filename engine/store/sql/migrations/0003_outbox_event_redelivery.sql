-- 0003: let the sweeper find published event jobs that were never applied.
--
-- A broker can lose a job after accepting it (Redis restarted without its data, a
-- memory queue after a crash). Task and timer jobs are safe: their rows stay pending and
-- the sweeper re-sends due work. Event jobs live only in the outbox, so the sweeper
-- re-sends published event rows whose event id never reached the instance's audit log;
-- this index keeps that scan to the orchestrator's published rows.
CREATE INDEX outbox_published_events_idx
    ON outbox (published_at)
    WHERE queue = 'workflow-orchestrator' AND published_at IS NOT NULL;
