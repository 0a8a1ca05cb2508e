-- The Lambda account's concurrency as the provisioner last read it (GetAccountSettings), for the
-- concurrency budget of tenant capacities. One row.

CREATE TABLE lambda_account (
    id                        boolean     PRIMARY KEY DEFAULT true CHECK (id),
    -- AccountLimit.ConcurrentExecutions
    concurrent_executions     integer     NOT NULL CHECK (concurrent_executions > 0),
    -- ConcurrentExecutions - UnreservedConcurrentExecutions - what tenant functions had
    -- reserved then: what the stack's own and any other functions in the account reserve
    reserved_outside_tenants  integer     NOT NULL DEFAULT 0 CHECK (reserved_outside_tenants >= 0),
    refreshed_at              timestamptz NOT NULL DEFAULT now()
);

-- A tenant without a capacity (desired_concurrency NULL) is pooled now: its queues map to the
-- shared pooled consumer function and nothing is reserved for it.
COMMENT ON COLUMN tenant_capacity.desired_concurrency IS
    'reserved concurrency asked for by an admin (dedicated tier); NULL: pooled tier';
