-- What the status API and the metrics read: per-queue attempt history, the age of the oldest
-- waiting message, and the consumer state each event source applied.

ALTER TABLE message_attempts ADD COLUMN queue_name text;
UPDATE message_attempts a SET queue_name = m.queue_name FROM messages m WHERE m.id = a.message_id;
ALTER TABLE message_attempts ALTER COLUMN queue_name SET NOT NULL;
CREATE INDEX message_attempts_recent ON message_attempts (tenant_id, queue_name, finished_at);

CREATE INDEX messages_waiting ON messages (tenant_id, queue_name, created_at)
    WHERE status IN ('pending', 'queued', 'retrying');

CREATE TABLE consumer_runtime (
    tenant_id        uuid        NOT NULL,
    queue_name       text        NOT NULL,
    applied_workers  integer     NOT NULL,
    running          boolean     NOT NULL,
    -- which process applied it: "<host>:<pid>" for a local event source
    applied_by       text        NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, queue_name)
);
