-- Engine tallies (migration 0010): each engine loop's cumulative counts, summed by
-- processes that run no engine when /metrics is scraped.

-- name: save_engine_tally
-- $1 engine id, $2 its tally (jsonb). Also deletes the rows of engines that have not
-- flushed for 7 days (stopped or gone), so the table holds the live ones and the recent.
WITH expired AS (
    DELETE FROM engine_tallies
    WHERE updated_at < now() - interval '7 days' AND engine_id <> $1
)
INSERT INTO engine_tallies (engine_id, tally, updated_at)
VALUES ($1, $2, now())
ON CONFLICT (engine_id) DO UPDATE SET tally = EXCLUDED.tally, updated_at = EXCLUDED.updated_at;

-- name: engine_tallies
SELECT engine_id, tally FROM engine_tallies;
