-- Control plane state: what capacity and event source mappings each tenant should have
-- (desired) next to what the control plane last applied, with the error when it could not.

CREATE TABLE tenant_capacity (
    tenant_id             uuid        PRIMARY KEY REFERENCES tenants (id),
    -- reserved concurrency asked for by an admin; NULL: the deployment default
    desired_concurrency   integer     CHECK (desired_concurrency >= 0),
    applied_concurrency   integer,
    -- the tenant function (AWS) or "local"
    function_name         text,
    -- pending | applied | deleted | failed
    state                 text        NOT NULL DEFAULT 'pending',
    error                 text,
    applied_by            text,
    updated_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE consumer_mappings (
    tenant_id    uuid        NOT NULL,
    queue_name   text        NOT NULL,
    -- the event source mapping's UUID in AWS
    mapping_id   text,
    batch_size   integer,
    enabled      boolean,
    -- applied | deleted | unsupported | failed
    state        text        NOT NULL,
    error        text,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, queue_name)
);
