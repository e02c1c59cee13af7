-- 0010: what each engine loop counted (engine/runtime/tally.py), so that a process
-- running no engine (`statefleet api`) can show the whole cluster's figures on /metrics.
--
--   engine_id   random, chosen by an engine loop when it starts; one row per engine
--   tally       the loop's cumulative Tally.to_json(), rewritten every
--               STATEFLEET_METRICS_FLUSH_MS and once more when the loop stops
--   updated_at  the last flush; rows of engines gone for 7 days are deleted by the
--               flushes of the others
--
-- Not tenant data: the figures are the engine's, across tenants.
CREATE TABLE engine_tallies (
    engine_id   text        PRIMARY KEY,
    tally       jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
