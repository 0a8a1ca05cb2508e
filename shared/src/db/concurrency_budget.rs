//! What the concurrency budget reads: the account limit the provisioner last read from AWS
//! (`lambda_account`) and the capacity other tenants asked for, under one lock so two capacity
//! requests are checked one after the other.

use deadpool_postgres::GenericClient;

use super::Pool;
use crate::{domain::TenantId, error::Result};

/// Serializes capacity changes until the transaction ends: without it two requests could each
/// see the other's capacity missing and both pass.
pub async fn lock(tx: &impl GenericClient) -> Result<()> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('msgsvc.concurrency_budget'))",
        &[],
    )
    .await?;
    Ok(())
}

/// Capacity requested by every dedicated tenant but `tenant` that still has (or may still have)
/// a function: active ones, and deactivated ones whose function is not yet deleted.
pub async fn reserved_by_others(tx: &impl GenericClient, tenant: Option<TenantId>) -> Result<u32> {
    let row = tx
        .query_one(
            "SELECT COALESCE(SUM(c.desired_concurrency), 0)::bigint AS reserved
             FROM tenant_capacity c JOIN tenants t ON t.id = c.tenant_id
             WHERE c.desired_concurrency IS NOT NULL
               AND ($1::uuid IS NULL OR c.tenant_id <> $1)
               AND (t.status = 'active' OR c.state <> 'deleted')",
            &[&tenant.map(|t| t.0)],
        )
        .await?;
    Ok(row.get::<_, i64>("reserved").min(u32::MAX as i64) as u32)
}

/// The capacity `tenant` asked for now (`None`: pooled, or no row).
pub async fn requested(tx: &impl GenericClient, tenant: TenantId) -> Result<Option<u32>> {
    Ok(tx
        .query_opt(
            "SELECT desired_concurrency FROM tenant_capacity WHERE tenant_id = $1",
            &[&tenant.0],
        )
        .await?
        .and_then(|r| r.get::<_, Option<i32>>(0))
        .map(|n| n as u32))
}

/// The account as the provisioner last read it from AWS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountReading {
    /// `AccountLimit.ConcurrentExecutions`.
    pub concurrent_executions: u32,
    /// Reserved by functions that are not tenant functions (the stack's own, and any other).
    pub reserved_outside_tenants: u32,
}

pub async fn stored_account(client: &impl GenericClient) -> Result<Option<AccountReading>> {
    Ok(client
        .query_opt(
            "SELECT concurrent_executions, reserved_outside_tenants FROM lambda_account WHERE id",
            &[],
        )
        .await?
        .map(|r| AccountReading {
            concurrent_executions: r.get::<_, i32>(0) as u32,
            reserved_outside_tenants: r.get::<_, i32>(1) as u32,
        }))
}

/// Reserved concurrency the tenant functions have as last applied (what AWS counts now).
pub async fn applied_by_tenants(pool: &Pool) -> Result<u32> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "SELECT COALESCE(SUM(applied_concurrency), 0)::bigint FROM tenant_capacity
             WHERE state <> 'deleted'",
            &[],
        )
        .await?;
    Ok(row.get::<_, i64>(0).min(u32::MAX as i64) as u32)
}

/// Records what AWS reported (GetAccountSettings).
pub async fn store_account(pool: &Pool, reading: AccountReading) -> Result<()> {
    let clamp = |n: u32| n.min(i32::MAX as u32) as i32;
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO lambda_account (id, concurrent_executions, reserved_outside_tenants)
             VALUES (true, $1, $2)
             ON CONFLICT (id) DO UPDATE SET concurrent_executions = $1,
                 reserved_outside_tenants = $2, refreshed_at = now()",
            &[
                &clamp(reading.concurrent_executions),
                &clamp(reading.reserved_outside_tenants),
            ],
        )
        .await?;
    Ok(())
}
