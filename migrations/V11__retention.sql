-- Retention: a tenant's own settings (NULL takes the configuration's RETENTION_*_DAYS), and
-- the indexes the retention sweep reads: per tenant, its settled messages oldest first, so
-- each batch finds what is due with one short index range per tenant and never reads a
-- message that is not settled or not due. Only completed and dead-lettered messages are in
-- them: nothing else is ever deleted.
CREATE TABLE tenant_retention (
    tenant_id           uuid        PRIMARY KEY REFERENCES tenants (id),
    completed_days      integer     CHECK (completed_days BETWEEN 0 AND 3650),
    dead_lettered_days  integer     CHECK (dead_lettered_days BETWEEN 0 AND 3650),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- Built inside the migration's transaction, so writes to messages wait while they build: on
-- a large existing table, create them first with CREATE INDEX CONCURRENTLY under these names
-- (IF NOT EXISTS then skips them here).
CREATE INDEX IF NOT EXISTS messages_completed_by_tenant
    ON messages (tenant_id, completed_at) WHERE status = 'completed';
CREATE INDEX IF NOT EXISTS messages_dead_lettered_by_tenant
    ON messages (tenant_id, dead_lettered_at) WHERE status = 'dead_lettered';
