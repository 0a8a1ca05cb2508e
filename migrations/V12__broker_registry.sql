-- The broker registry: every RabbitMQ broker (or virtual host) this deployment puts tenants on.
-- A tenant lives on one broker for its whole life; a deployment grows past one broker's limits by
-- registering another, which new tenants are then assigned to. No credentials are stored here:
-- every broker is reached with the deployment's own broker user (RABBITMQ_URL's, and
-- MQ_SECRET_ARN unless a broker names its own secret).

CREATE TABLE brokers (
    id              text        PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9-]{0,31}$'),
    -- amqp(s)://host:port/vhost without user or password. NULL: the deployment's own broker
    -- (RABBITMQ_URL, RABBITMQ_MANAGEMENT_URL, MQ_BROKER_ARN, MQ_SECRET_ARN).
    amqp_url        text,
    -- http(s)://host:port of the management API, without user or password.
    management_url  text,
    -- The Amazon MQ broker's ARN, for the tenant functions' event source mappings.
    mq_broker_arn   text,
    -- The Secrets Manager secret with the user the mappings log in as (NULL: MQ_SECRET_ARN).
    mq_secret_arn   text,
    -- How many tenant queues the broker may hold (the README's sizing table); NULL: no cap.
    max_queues      integer     CHECK (max_queues >= 0),
    -- Whether new tenants may be assigned to it; existing tenants stay either way.
    accepting       boolean     NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((id = 'default') = (amqp_url IS NULL))
);

INSERT INTO brokers (id) VALUES ('default');

-- Every tenant so far is on the deployment's own broker; the API assigns new ones (see
-- `db::brokers::assign`), the default only serves rows written by hand.
ALTER TABLE tenants ADD COLUMN broker_id text NOT NULL DEFAULT 'default' REFERENCES brokers (id);
CREATE INDEX tenants_broker_id_idx ON tenants (broker_id);
