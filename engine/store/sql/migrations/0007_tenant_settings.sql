-- 0007: per-tenant settings, one JSON object per tenant.
--
--   settings   what an operator set for this tenant through the admin API, as
--              {"limits": {"maxStates": 200, ...}}: only the values that differ from
--              the process-wide defaults (STATEFLEET_SPEC_MAX_*) are stored, so a
--              changed default reaches every tenant that did not override it. One
--              object with a key per concern, so later per-tenant settings (weights,
--              concurrency limits) are new keys, not new columns.
ALTER TABLE tenants
    ADD COLUMN settings jsonb NOT NULL DEFAULT '{}'::jsonb
        CONSTRAINT tenants_settings_object CHECK (jsonb_typeof(settings) = 'object');
