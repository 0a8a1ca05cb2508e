-- What a webhook endpoint answered, per attempt: its HTTP status (NULL when none came: a
-- timeout, a refused connection, a processor that is not HTTP), how long the attempt ran, and
-- the first bytes of the answer's body (bounded by ATTEMPT_RESPONSE_EXCERPT_BYTES).
-- Nullable without defaults: adding them rewrites nothing, and older attempts stay valid.
ALTER TABLE message_attempts ADD COLUMN http_status smallint;
ALTER TABLE message_attempts ADD COLUMN duration_ms integer;
ALTER TABLE message_attempts ADD COLUMN response_excerpt text;
