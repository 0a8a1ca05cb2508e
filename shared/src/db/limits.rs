//! Per-tenant limit overrides, the token buckets and the usage figures the limits are held to.

use deadpool_postgres::GenericClient;

use super::Pool;
use crate::{
    domain::{
        TenantId,
        limits::{LimitOverrides, TenantStanding},
    },
    error::Result,
};

/// The tenant's status and its overrides, in one query; `None` for an unknown tenant.
pub async fn standing(pool: &Pool, tenant: TenantId) -> Result<Option<TenantStanding>> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT t.status = 'active' AS active, l.publish_rate, l.publish_burst, l.max_queues,
                    l.max_message_bytes, l.max_backlog
             FROM tenants t LEFT JOIN tenant_limits l ON l.tenant_id = t.id
             WHERE t.id = $1",
        )
        .await?;
    Ok(client
        .query_opt(&stmt, &[&tenant.0])
        .await?
        .map(|r| TenantStanding {
            active: r.get("active"),
            overrides: LimitOverrides {
                publish_rate: r.get("publish_rate"),
                publish_burst: r.get::<_, Option<i32>>("publish_burst").map(|v| v as u32),
                max_queues: r.get::<_, Option<i32>>("max_queues").map(|v| v as u32),
                max_message_bytes: r
                    .get::<_, Option<i32>>("max_message_bytes")
                    .map(|v| v as u32),
                max_backlog: r.get::<_, Option<i64>>("max_backlog").map(|v| v as u64),
            },
        }))
}

/// Replaces the tenant's overrides (NULL: the environment default).
pub async fn set(pool: &Pool, tenant: TenantId, o: &LimitOverrides) -> Result<()> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO tenant_limits (tenant_id, publish_rate, publish_burst, max_queues,
                                        max_message_bytes, max_backlog)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant_id) DO UPDATE SET
                 publish_rate = EXCLUDED.publish_rate, publish_burst = EXCLUDED.publish_burst,
                 max_queues = EXCLUDED.max_queues, max_message_bytes = EXCLUDED.max_message_bytes,
                 max_backlog = EXCLUDED.max_backlog, updated_at = now()",
            &[
                &tenant.0,
                &o.publish_rate,
                &o.publish_burst.map(|v| v as i32),
                &o.max_queues.map(|v| v as i32),
                &o.max_message_bytes.map(|v| v as i32),
                &o.max_backlog.map(|v| v as i64),
            ],
        )
        .await?;
    Ok(())
}

/// Takes `n` tokens from the tenant's bucket when it holds them (one round trip, one row lock).
/// Returns `None` when taken, else the seconds until `n` tokens will be there.
pub async fn take_tokens(
    pool: &Pool,
    tenant: TenantId,
    n: u32,
    rate: f64,
    burst: u32,
) -> Result<Option<f64>> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached("SELECT granted, wait_secs FROM take_publish_tokens($1, $2, $3, $4)")
        .await?;
    let row = client
        .query_one(&stmt, &[&tenant.0, &(n as f64), &rate, &(burst as f64)])
        .await?;
    Ok((!row.get::<_, bool>(0)).then(|| row.get(1)))
}

/// Tokens in the bucket now (refilled for the time elapsed), without taking any.
pub async fn tokens_available(pool: &Pool, tenant: TenantId, rate: f64, burst: u32) -> Result<f64> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT least($2, tokens + greatest(0, extract(epoch FROM clock_timestamp() - refilled_at))::float8 * $3)
             FROM tenant_rate_buckets WHERE tenant_id = $1",
            &[&tenant.0, &(burst as f64), &rate],
        )
        .await?;
    Ok(row.map_or(burst as f64, |r| r.get(0)))
}

/// Unsettled messages of the tenant, counted up to `cap` (so the count costs at most that).
///
/// Planned for this tenant on every call (the values are in the text, not parameters): a
/// generic plan is made for the average tenant, and with few tenants holding most rows
/// PostgreSQL chose to scan the whole table for it, for a tenant with ten messages as for one
/// with a million. Called only when the per-tenant cache misses, so the planning is cheap.
pub fn backlog_sql(tenant: TenantId, cap: u64) -> String {
    let cap = cap.min(i64::MAX as u64);
    // A UUID and an integer, formatted by Rust: nothing to quote.
    format!(
        "SELECT count(*) FROM (SELECT 1 FROM messages
             WHERE tenant_id = '{}' AND status IN ('scheduled', 'pending', 'queued', 'processing', 'retrying')
             LIMIT {cap}) AS b",
        tenant.0
    )
}

/// See [`backlog_sql`].
pub async fn backlog(client: &impl GenericClient, tenant: TenantId, cap: u64) -> Result<u64> {
    let n: i64 = client
        .query_one(backlog_sql(tenant, cap).as_str(), &[])
        .await?
        .get(0);
    Ok(n as u64)
}

/// How many queues (consumer configs) the tenant has, and whether `queue` is one of them.
pub async fn queue_count(
    client: &impl GenericClient,
    tenant: TenantId,
    queue: &str,
) -> Result<(u64, bool)> {
    let row = client
        .query_one(
            "SELECT count(*), coalesce(bool_or(queue_name = $2), false)
             FROM consumer_configs WHERE tenant_id = $1",
            &[&tenant.0, &queue],
        )
        .await?;
    Ok((row.get::<_, i64>(0) as u64, row.get(1)))
}
