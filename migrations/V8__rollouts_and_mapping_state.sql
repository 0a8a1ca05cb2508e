-- Rollouts: each tenant function's version (its code hash and a digest of the configuration
-- copied from the template) as the provisioner last read it, and one row per template version
-- the provisioner was asked to roll out, so each version is rolled out once.
ALTER TABLE tenant_capacity ADD COLUMN code_sha256 text;
ALTER TABLE tenant_capacity ADD COLUMN config_digest text;
-- the function's State/LastUpdateStatus as last read (e.g. Active/Successful, Failed/Failed)
ALTER TABLE tenant_capacity ADD COLUMN update_status text;
ALTER TABLE tenant_capacity ADD COLUMN version_checked_at timestamptz;
-- the template function the version was compared with
ALTER TABLE tenant_capacity ADD COLUMN template_function text;

CREATE TABLE function_rollouts (
    template_function text        NOT NULL,
    code_sha256       text        NOT NULL,
    config_digest     text        NOT NULL,
    -- requested | done | failed
    state             text        NOT NULL DEFAULT 'requested',
    requested_at      timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    functions         integer,
    updated           integer,
    failed            integer,
    error             text,
    PRIMARY KEY (template_function, code_sha256, config_digest)
);
CREATE INDEX function_rollouts_latest ON function_rollouts (template_function, requested_at DESC);

-- A mapping's state as AWS reported it on the last read-back (GetEventSourceMapping).
ALTER TABLE consumer_mappings ADD COLUMN aws_state text;
ALTER TABLE consumer_mappings ADD COLUMN state_transition_reason text;
ALTER TABLE consumer_mappings ADD COLUMN last_processing_result text;
-- how many times the control plane applied it (a reconcile retrying a failed one counts)
ALTER TABLE consumer_mappings ADD COLUMN attempts integer NOT NULL DEFAULT 0;

-- Periodic control-plane passes (the reconcile) claimed by whichever provisioner instance
-- runs the relay tick first once the interval has passed.
CREATE TABLE control_passes (
    name        text        PRIMARY KEY,
    last_run_at timestamptz NOT NULL
);
