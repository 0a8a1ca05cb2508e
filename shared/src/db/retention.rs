//! Retention: tenants' own settings, and the statement that deletes one batch of settled
//! messages that are past their tenant's retention, with their attempts.

use deadpool_postgres::GenericClient;

use super::Pool;
use crate::{
    domain::{TenantId, retention::RetentionOverrides},
    error::Result,
};

/// The tenant's own retention (all `None` when it has none); `None` for an unknown tenant.
pub async fn overrides(pool: &Pool, tenant: TenantId) -> Result<Option<RetentionOverrides>> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT r.completed_days, r.dead_lettered_days
             FROM tenants t LEFT JOIN tenant_retention r ON r.tenant_id = t.id
             WHERE t.id = $1",
        )
        .await?;
    Ok(client
        .query_opt(&stmt, &[&tenant.0])
        .await?
        .map(|r| RetentionOverrides {
            completed_days: r.get::<_, Option<i32>>(0).map(|v| v as u32),
            dead_lettered_days: r.get::<_, Option<i32>>(1).map(|v| v as u32),
        }))
}

/// Replaces the tenant's own retention (NULL: the configuration's default).
pub async fn set(
    client: &impl GenericClient,
    tenant: TenantId,
    o: &RetentionOverrides,
) -> Result<()> {
    client
        .execute(
            "INSERT INTO tenant_retention (tenant_id, completed_days, dead_lettered_days)
             VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id) DO UPDATE SET
                 completed_days = EXCLUDED.completed_days,
                 dead_lettered_days = EXCLUDED.dead_lettered_days, updated_at = now()",
            &[
                &tenant.0,
                &o.completed_days.map(|v| v as i32),
                &o.dead_lettered_days.map(|v| v as i32),
            ],
        )
        .await?;
    Ok(())
}

/// The settled statuses retention deletes, each with the time its retention counts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    Completed,
    DeadLettered,
    /// Cancelled while scheduled: kept as long as completed messages.
    Cancelled,
}

impl Settled {
    pub const ALL: [Settled; 3] = [
        Settled::Completed,
        Settled::DeadLettered,
        Settled::Cancelled,
    ];

    /// The status, the column its age is read from, and the tenant's setting.
    fn columns(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Settled::Completed => ("completed", "completed_at", "completed_days"),
            Settled::DeadLettered => ("dead_lettered", "dead_lettered_at", "dead_lettered_days"),
            Settled::Cancelled => ("cancelled", "cancelled_at", "completed_days"),
        }
    }
}

/// One batch of [`delete_expired`]: `$1` the default days, `$2` the batch size. Per tenant
/// whose retention is not 0 ("for ever"), its oldest messages of the status past its cutoff,
/// read from the tenant's range of the partial index (`messages_<status>_by_tenant`); then
/// locked (skipping rows a redrive holds) and checked again on the locked row, so a message
/// that left the status meanwhile is never deleted; its attempts go first, in the same
/// statement.
pub fn delete_expired_sql(status: Settled) -> String {
    let (status, at, days) = status.columns();
    format!(
        "WITH due AS (
             SELECT d.id, c.before
             FROM (SELECT t.id AS tenant_id,
                          now() - make_interval(days => coalesce(r.{days}, $1)) AS before
                   FROM tenants t LEFT JOIN tenant_retention r ON r.tenant_id = t.id
                   WHERE coalesce(r.{days}, $1) > 0) c
             CROSS JOIN LATERAL (
                 SELECT m.id FROM messages m
                 WHERE m.tenant_id = c.tenant_id AND m.status = '{status}' AND m.{at} < c.before
                 ORDER BY m.{at} LIMIT $2) d
             LIMIT $2),
         locked AS (
             SELECT m.id FROM messages m JOIN due ON due.id = m.id
             WHERE m.status = '{status}' AND m.{at} < due.before
             FOR UPDATE OF m SKIP LOCKED),
         attempts AS (
             DELETE FROM message_attempts WHERE message_id IN (SELECT id FROM locked)
             RETURNING 1),
         gone AS (
             DELETE FROM messages WHERE id IN (SELECT id FROM locked) AND status = '{status}'
             RETURNING 1)
         SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM attempts)"
    )
}

/// Deletes up to `limit` messages of `status` past their tenant's retention (the tenant's own
/// days, else `default_days`; 0 keeps them), and their attempts. Returns how many of each.
pub async fn delete_expired(
    pool: &Pool,
    status: Settled,
    default_days: u32,
    limit: i64,
) -> Result<(u64, u64)> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(&delete_expired_sql(status)).await?;
    let row = client
        .query_one(&stmt, &[&(default_days as i32), &limit])
        .await?;
    Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
}
