-- 0005: upgrades of running instances from one definition version to another.
--
-- Table layout
--
--   upgrades       one row per upgrade request (dry run or apply): what was asked, the
--                  verdict counts, and, for an apply, the job's status
--   upgrade_items  one row per instance the request considered: its dry-run verdict and
--                  details, whether the apply chose it, and what became of it
--
-- An apply does not move instances from here: it writes one engine-made `xstate.upgrade`
-- event per chosen instance to the outbox, and the shard owning the instance makes the
-- move as a step (docs/upgrades.md). The step marks the item moved or skipped in its own
-- transaction, so the job's progress is a count of these rows.


-- upgrades: one request.
--   definition_key            the definition both versions belong to
--   from_definition_id,       the versions A and B (rows of workflow_definitions)
--   to_definition_id
--   state_map                 {"old path": "new path"} for renamed or removed states
--   context_defaults          fields B needs that A's instances may lack
--   dry_run, force            as asked: force also moves `diverged` instances
--   status                    planning -> done (a dry run), or planning -> applying -> done
--   total                     instances considered
--   counts                    {"compatible": n, "diverged": n, "unmappable": n, "error": n}
CREATE TABLE upgrades (
    tenant_id           text        NOT NULL CHECK (tenant_id <> ''),
    id                  uuid        NOT NULL,
    definition_key      text        NOT NULL,
    from_definition_id  uuid        NOT NULL,
    to_definition_id    uuid        NOT NULL,
    from_version        integer     NOT NULL,
    to_version          integer     NOT NULL,
    state_map           jsonb       NOT NULL DEFAULT '{}',
    context_defaults    jsonb       NOT NULL DEFAULT '{}',
    dry_run             boolean     NOT NULL,
    force               boolean     NOT NULL,
    status              text        NOT NULL
                        CHECK (status IN ('planning', 'applying', 'done', 'failed')),
    total               integer     NOT NULL DEFAULT 0 CHECK (total >= 0),
    counts              jsonb       NOT NULL DEFAULT '{}',
    error               text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    finished_at         timestamptz,
    CONSTRAINT upgrades_pkey PRIMARY KEY (tenant_id, id),
    CONSTRAINT upgrades_from_fkey FOREIGN KEY (tenant_id, from_definition_id)
        REFERENCES workflow_definitions (tenant_id, id),
    CONSTRAINT upgrades_to_fkey FOREIGN KEY (tenant_id, to_definition_id)
        REFERENCES workflow_definitions (tenant_id, id)
);


-- upgrade_items: one instance of one request.
--   verdict          compatible | diverged | unmappable | error (the dry run's)
--   detail           the verdict's details: divergence, message, target state, tasks
--   chosen           the apply moves it (compatible, or diverged with force)
--   outcome          planned -> moved | skipped (set by the step that handled the move)
--   applied_verdict  the verdict the step computed against the checkpoint it replaced
--                    (differs from `verdict` when the instance moved on meanwhile)
CREATE TABLE upgrade_items (
    tenant_id        text        NOT NULL CHECK (tenant_id <> ''),
    upgrade_id       uuid        NOT NULL,
    instance_id      uuid        NOT NULL,
    verdict          text        NOT NULL
                     CHECK (verdict IN ('compatible', 'diverged', 'unmappable', 'error')),
    detail           jsonb       NOT NULL DEFAULT '{}',
    chosen           boolean     NOT NULL,
    outcome          text        NOT NULL DEFAULT 'planned'
                     CHECK (outcome IN ('planned', 'moved', 'skipped')),
    applied_verdict  text,
    CONSTRAINT upgrade_items_pkey PRIMARY KEY (tenant_id, upgrade_id, instance_id),
    CONSTRAINT upgrade_items_upgrade_fkey FOREIGN KEY (tenant_id, upgrade_id)
        REFERENCES upgrades (tenant_id, id) ON DELETE CASCADE
);
