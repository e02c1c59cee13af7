-- Per-tenant settings (tenants.settings, migration 0007). Every query takes the tenant
-- id as $1.

-- name: get_tenant_settings
SELECT settings FROM tenants WHERE tenant_id = $1;

-- name: set_tenant_settings_key
-- Replaces one top-level key ($2) of the tenant's settings with $3; no row: no tenant.
UPDATE tenants SET settings = jsonb_set(settings, ARRAY[$2::text], $3::jsonb)
WHERE tenant_id = $1
RETURNING settings;

-- name: get_schedulings
-- Several tenants' scheduling settings at once (the admitter's pass); $1: tenant ids.
SELECT tenant_id, settings -> 'scheduling' AS scheduling FROM tenants
WHERE tenant_id = ANY($1::text[]);
