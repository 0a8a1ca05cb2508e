-- Every request-path statement indexed for its shape at any table size (issue 16).
--
-- Built inside the migration's transaction (the runner has no way out of it), so writes to
-- the table wait while each builds: on a large existing table, create them first with
-- CREATE INDEX CONCURRENTLY under these names (IF NOT EXISTS then skips them here).

-- A tenant's messages of one queue, newest first, with no status filter: the queue index
-- (tenant_id, queue_name, status, id) cannot give that order across statuses.
CREATE INDEX IF NOT EXISTS messages_by_tenant_queue_id
    ON messages (tenant_id, queue_name, id DESC);

-- The status view's last error per queue: only failed attempts, so finding the latest one
-- never walks a busy queue's successful attempts.
CREATE INDEX IF NOT EXISTS message_attempts_errors
    ON message_attempts (tenant_id, queue_name, finished_at)
    WHERE error IS NOT NULL;

-- Dead letters per queue, kept current by a trigger. The other statuses the status view counts
-- (pending, queued, processing, retrying) are a queue's backlog, read from the queue index
-- (bounded by TENANT_MAX_BACKLOG); dead letters stay until redriven or expired, so counting
-- them would read every one. A trigger, not the statements: a consumer of the previous
-- version dead-lettering during a deployment is counted too. Dead-lettering is rare, so the
-- row lock it takes here is not a contention point; the message path's transitions never
-- touch this table (the WHEN clauses skip them without calling the function).
CREATE TABLE IF NOT EXISTS queue_dead_letters (
    tenant_id   uuid   NOT NULL,
    queue_name  text   NOT NULL,
    count       bigint NOT NULL,
    PRIMARY KEY (tenant_id, queue_name)
);

CREATE FUNCTION count_dead_letters() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.status = 'dead_lettered' THEN
        UPDATE queue_dead_letters SET count = count - 1
        WHERE tenant_id = OLD.tenant_id AND queue_name = OLD.queue_name;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.status = 'dead_lettered' THEN
        INSERT INTO queue_dead_letters AS q (tenant_id, queue_name, count)
        VALUES (NEW.tenant_id, NEW.queue_name, 1)
        ON CONFLICT (tenant_id, queue_name) DO UPDATE SET count = q.count + 1;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER messages_dead_letters_insert AFTER INSERT ON messages
    FOR EACH ROW WHEN (NEW.status = 'dead_lettered') EXECUTE FUNCTION count_dead_letters();
CREATE TRIGGER messages_dead_letters_update AFTER UPDATE OF status ON messages
    FOR EACH ROW WHEN ((OLD.status = 'dead_lettered') IS DISTINCT FROM (NEW.status = 'dead_lettered'))
    EXECUTE FUNCTION count_dead_letters();
CREATE TRIGGER messages_dead_letters_delete AFTER DELETE ON messages
    FOR EACH ROW WHEN (OLD.status = 'dead_lettered') EXECUTE FUNCTION count_dead_letters();

-- The dead letters already there (the partial index of dead letters finds them).
INSERT INTO queue_dead_letters (tenant_id, queue_name, count)
SELECT tenant_id, queue_name, count(*) FROM messages WHERE status = 'dead_lettered'
GROUP BY tenant_id, queue_name;
