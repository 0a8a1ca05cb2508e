-- Tenants, their queues' consumer configurations, messages and every processing attempt.

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        text        NOT NULL,
    status      text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX tenants_name_key ON tenants (lower(name));

CREATE TABLE consumer_configs (
    tenant_id       uuid        NOT NULL REFERENCES tenants (id),
    queue_name      text        NOT NULL,
    workers         integer     NOT NULL CHECK (workers >= 0),
    retry_attempts  integer     NOT NULL CHECK (retry_attempts >= 0),
    retry_delay_ms  bigint      NOT NULL CHECK (retry_delay_ms > 0),
    enabled         boolean     NOT NULL DEFAULT true,
    endpoint_url    text,
    signing_secret  text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, queue_name)
);

CREATE TABLE messages (
    id                uuid        PRIMARY KEY,
    tenant_id         uuid        NOT NULL REFERENCES tenants (id),
    queue_name        text        NOT NULL,
    body              jsonb       NOT NULL,
    headers           jsonb       NOT NULL DEFAULT '{}',
    status            text        NOT NULL CHECK (status IN
                          ('pending', 'queued', 'processing', 'retrying', 'completed', 'dead_lettered')),
    -- attempts within the current retry budget (reset by a redrive); total_attempts never
    -- resets and numbers the rows of message_attempts, fencing stale workers.
    attempts          integer     NOT NULL DEFAULT 0,
    total_attempts    integer     NOT NULL DEFAULT 0,
    last_error        text,
    idempotency_key   text,
    next_attempt_at   timestamptz,
    locked_until      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    queued_at         timestamptz,
    completed_at      timestamptz,
    dead_lettered_at  timestamptz
);
CREATE UNIQUE INDEX messages_idempotency_key ON messages (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Keyset pagination newest first, with and without the status and queue filters.
CREATE INDEX messages_by_tenant ON messages (tenant_id, id DESC);
CREATE INDEX messages_by_tenant_status ON messages (tenant_id, status, id DESC);
CREATE INDEX messages_by_tenant_queue ON messages (tenant_id, queue_name, status, id DESC);
-- The outbox relay's sweep: only messages that may need republishing.
CREATE INDEX messages_unsettled ON messages (updated_at)
    WHERE status IN ('pending', 'retrying', 'processing');

CREATE TABLE message_attempts (
    message_id   uuid        NOT NULL REFERENCES messages (id),
    attempt      integer     NOT NULL,
    tenant_id    uuid        NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    outcome      text        CHECK (outcome IN ('completed', 'retrying', 'dead_lettered', 'abandoned')),
    error        text,
    PRIMARY KEY (message_id, attempt)
);
