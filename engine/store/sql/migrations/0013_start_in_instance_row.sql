-- 0013: an interactive instance's start event is recorded on its own row.
--
-- Until now every start wrote an outbox row for its WORKFLOW_START event and marked it
-- published once sent: an insert (with its foreign-key check) and an update per
-- instance, about a seventh of Postgres's time on the hello workflow. The instance row
-- is written anyway, so it now carries the start event it still waits for
-- (start_event); the step that applies it clears the column in the update it makes
-- regardless. The sweeper re-sends the start of instances still waiting after its
-- grace period through this index, which holds only those rows. Starts held for the
-- admitter (below the interactive priority) keep their outbox row, as every held event.
-- Rows of earlier versions have NULL here: their starts are in the outbox.
ALTER TABLE workflow_instances ADD COLUMN start_event text;

CREATE INDEX workflow_instances_unstarted_idx
    ON workflow_instances (created_at)
    WHERE start_event IS NOT NULL AND status = 'running';
