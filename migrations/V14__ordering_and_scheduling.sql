-- Ordered delivery per key and delayed delivery (issue #18, items 1 and 2).
--
-- Statuses: `scheduled` (stored until `deliver_at`; the relay's tick releases it) and
-- `cancelled` (a scheduled message cancelled before it came due).
ALTER TABLE messages DROP CONSTRAINT messages_status_check;
ALTER TABLE messages ADD CONSTRAINT messages_status_check CHECK (status IN
    ('scheduled', 'pending', 'queued', 'processing', 'retrying', 'completed', 'dead_lettered',
     'cancelled'));

-- ordering_key: messages of one key in one queue run one at a time in ordering_seq order.
-- ordering_seq is taken from one sequence when the message enters its key's order: at publish,
-- or when a scheduled message comes due. deferred_at: the consumer last put the message aside
-- behind an earlier one of its key; the settle of that one sends it back at once.
ALTER TABLE messages
    ADD COLUMN ordering_key text,
    ADD COLUMN ordering_seq bigint,
    ADD COLUMN deferred_at  timestamptz,
    ADD COLUMN deliver_at   timestamptz,
    ADD COLUMN cancelled_at timestamptz;
CREATE SEQUENCE messages_ordering_seq;

-- What the claim reads to find an earlier unsettled message of the key (and, for queues that
-- block on a dead letter, an earlier dead-lettered one): one short index range per key.
CREATE INDEX IF NOT EXISTS messages_ordering_unsettled
    ON messages (tenant_id, queue_name, ordering_key, ordering_seq)
    WHERE ordering_key IS NOT NULL AND status IN ('pending', 'queued', 'processing', 'retrying');
CREATE INDEX IF NOT EXISTS messages_ordering_dead_lettered
    ON messages (tenant_id, queue_name, ordering_key, ordering_seq)
    WHERE ordering_key IS NOT NULL AND status = 'dead_lettered';
-- The relay's release of due scheduled messages, oldest due first.
CREATE INDEX IF NOT EXISTS messages_scheduled_due ON messages (deliver_at) WHERE status = 'scheduled';
-- Retention of cancelled messages, like the other settled statuses (V11).
CREATE INDEX IF NOT EXISTS messages_cancelled_by_tenant
    ON messages (tenant_id, cancelled_at) WHERE status = 'cancelled';

-- What the rest of a key does when one of its messages is dead-lettered.
ALTER TABLE consumer_configs ADD COLUMN on_dead_letter text NOT NULL DEFAULT 'continue'
    CHECK (on_dead_letter IN ('continue', 'block'));
