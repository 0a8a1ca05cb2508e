-- Messages the consumer could not map to one of ours on a tenant work queue (no message id,
-- one that is not a UUID, or an id this database does not know): acknowledged, never
-- processed, and counted here per queue so the status API shows them. One upsert per batch
-- that had any. No foreign key: the broker may carry queues of tenants this database does not
-- know (another deployment on the same vhost), and those are worth seeing too.

CREATE TABLE unmapped_messages (
    tenant_id     uuid        NOT NULL,
    queue_name    text        NOT NULL,
    count         bigint      NOT NULL CHECK (count >= 0),
    -- the reason of the latest batch's unmapped messages (the most frequent one when mixed):
    -- no_message_id | invalid_message_id | unknown_message
    last_reason   text        NOT NULL,
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, queue_name)
);
