-- The outbox relay puts a copy of a message back on the broker when the one it should have may
-- be lost. It records when (relayed_at) and for which attempt (relayed_attempt, the
-- total_attempts it saw), so it adds at most one copy per attempt: another only once a
-- consumer has claimed the message again. Nullable without defaults: adding them rewrites
-- nothing.
ALTER TABLE messages ADD COLUMN relayed_at timestamptz;
ALTER TABLE messages ADD COLUMN relayed_attempt integer;
