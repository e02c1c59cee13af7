-- 0004: leave room on instance and task pages for HOT updates.
--
-- Every step rewrites its instance's row (snapshot, version, updated_at) and every task
-- attempt rewrites its task row. With full pages, each new row version lands on
-- another page and every index of the table gets a new entry. With free space on the
-- page and no indexed column changed, Postgres writes a heap-only tuple instead and
-- leaves the indexes alone (the transitions benchmark measured the instance update at
-- about a third of its former cost). Existing pages keep their fill until rewritten.
ALTER TABLE workflow_instances SET (fillfactor = 70);
ALTER TABLE tasks SET (fillfactor = 80);
