//! Control-plane state (`tenant_capacity`, `consumer_mappings`): the capacity an admin asked
//! for next to what the control plane applied, and each queue's event source mapping.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Row;

use super::Pool;
use crate::{
    domain::{TenantId, Tier, capacity::effective},
    error::Result,
};

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize)]
pub struct Capacity {
    #[serde(skip)]
    pub tenant_id: TenantId,
    /// `dedicated` when a capacity was requested, else `pooled`.
    pub tier: Tier,
    /// The capacity requested: reserved concurrency of the tenant's own function (`null`:
    /// pooled, nothing reserved).
    pub desired_concurrency: Option<u32>,
    /// What can run and is reserved: the requested capacity, at most the tenant's number of
    /// enabled queues (one Amazon MQ mapping runs one invocation at a time); `null` when pooled.
    pub effective_concurrency: Option<u32>,
    /// Reserved concurrency as the control plane last applied it (`null` when pooled).
    pub applied_concurrency: Option<u32>,
    pub function_name: Option<String>,
    /// `pending`, `applied`, `deleted` or `failed`.
    pub state: String,
    pub error: Option<String>,
    pub applied_by: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// Capacity rows with the count of the tenant's enabled queues (what bounds the effective
/// capacity).
const CAPACITY_SELECT: &str = "SELECT c.*, (SELECT count(*) FROM consumer_configs q
        WHERE q.tenant_id = c.tenant_id AND q.enabled AND q.workers > 0) AS enabled_queues
    FROM tenant_capacity c";

fn capacity_from_row(r: &Row) -> Capacity {
    let desired = r
        .get::<_, Option<i32>>("desired_concurrency")
        .map(|n| n as u32);
    let enabled_queues = r.get::<_, i64>("enabled_queues") as u32;
    Capacity {
        tenant_id: TenantId(r.get("tenant_id")),
        tier: Tier::of(desired),
        desired_concurrency: desired,
        effective_concurrency: desired.map(|d| effective(d, enabled_queues)),
        applied_concurrency: r
            .get::<_, Option<i32>>("applied_concurrency")
            .map(|n| n as u32),
        function_name: r.get("function_name"),
        state: r.get("state"),
        error: r.get("error"),
        applied_by: r.get("applied_by"),
        updated_at: r.get("updated_at"),
    }
}

/// Stores the capacity an admin asked for; the control plane applies it later. The API goes
/// through `services::capacity`, which checks the concurrency budget first.
pub async fn set_desired(pool: &Pool, tenant: TenantId, concurrency: Option<u32>) -> Result<()> {
    set_desired_in(&pool.get().await?, tenant, concurrency).await
}

/// [`set_desired`] inside the caller's transaction.
pub async fn set_desired_in(
    client: &impl deadpool_postgres::GenericClient,
    tenant: TenantId,
    concurrency: Option<u32>,
) -> Result<()> {
    client
        .execute(
            "INSERT INTO tenant_capacity (tenant_id, desired_concurrency) VALUES ($1, $2)
             ON CONFLICT (tenant_id) DO UPDATE SET desired_concurrency = $2, state = 'pending',
                 updated_at = now()",
            &[&tenant.0, &concurrency.map(|n| n as i32)],
        )
        .await?;
    Ok(())
}

pub async fn get(pool: &Pool, tenant: TenantId) -> Result<Option<Capacity>> {
    let client = pool.get().await?;
    Ok(client
        .query_opt(
            format!("{CAPACITY_SELECT} WHERE c.tenant_id = $1").as_str(),
            &[&tenant.0],
        )
        .await?
        .as_ref()
        .map(capacity_from_row))
}

/// The tenants' capacities, or every tenant's (admin) when `tenant` is `None`.
pub async fn list(pool: &Pool, tenant: Option<TenantId>) -> Result<Vec<Capacity>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            format!("{CAPACITY_SELECT} WHERE $1::uuid IS NULL OR c.tenant_id = $1").as_str(),
            &[&tenant.map(|t| t.0)],
        )
        .await?;
    Ok(rows.iter().map(capacity_from_row).collect())
}

/// Records what the control plane applied (or why it could not: `state = failed`, `error`).
pub async fn record_applied(
    pool: &Pool,
    tenant: TenantId,
    concurrency: Option<u32>,
    function_name: &str,
    state: &str,
    error: Option<&str>,
    by: &str,
) -> Result<()> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO tenant_capacity (tenant_id, applied_concurrency, function_name, state,
                 error, applied_by)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant_id) DO UPDATE SET applied_concurrency = $2, function_name = $3,
                 state = $4, error = $5, applied_by = $6, updated_at = now()",
            &[
                &tenant.0,
                &concurrency.map(|n| n as i32),
                &function_name,
                &state,
                &error,
                &by,
            ],
        )
        .await?;
    Ok(())
}

/// Records a deleted tenant: every queue's mapping and the tenant's function as `deleted`
/// (the data stays).
pub async fn record_tenant_deleted(
    pool: &Pool,
    tenant: TenantId,
    function_name: &str,
    by: &str,
) -> Result<()> {
    let deleted = MappingRecord {
        mapping_id: None,
        batch_size: None,
        enabled: Some(false),
        state: "deleted",
        error: None,
    };
    for config in super::consumer_configs::list_for_tenant(pool, tenant).await? {
        record_mapping(pool, tenant, &config.queue_name, &deleted).await?;
    }
    record_applied(pool, tenant, None, function_name, "deleted", None, by).await
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize)]
pub struct Mapping {
    #[serde(skip)]
    pub tenant_id: TenantId,
    #[serde(skip)]
    pub queue_name: String,
    pub mapping_id: Option<String>,
    pub batch_size: Option<u32>,
    pub enabled: Option<bool>,
    /// `applied`, `deleted`, `unsupported` or `failed`.
    pub state: String,
    pub error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// What one mapping step did.
pub struct MappingRecord<'a> {
    pub mapping_id: Option<&'a str>,
    pub batch_size: Option<u32>,
    pub enabled: Option<bool>,
    pub state: &'a str,
    pub error: Option<&'a str>,
}

pub async fn record_mapping(
    pool: &Pool,
    tenant: TenantId,
    queue: &str,
    m: &MappingRecord<'_>,
) -> Result<()> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO consumer_mappings (tenant_id, queue_name, mapping_id, batch_size,
                 enabled, state, error)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (tenant_id, queue_name) DO UPDATE SET mapping_id = $3, batch_size = $4,
                 enabled = $5, state = $6, error = $7, updated_at = now()",
            &[
                &tenant.0,
                &queue,
                &m.mapping_id,
                &m.batch_size.map(|n| n as i32),
                &m.enabled,
                &m.state,
                &m.error,
            ],
        )
        .await?;
    Ok(())
}

pub async fn list_mappings(pool: &Pool, tenant: Option<TenantId>) -> Result<Vec<Mapping>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT * FROM consumer_mappings WHERE $1::uuid IS NULL OR tenant_id = $1",
            &[&tenant.map(|t| t.0)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Mapping {
            tenant_id: TenantId(r.get("tenant_id")),
            queue_name: r.get("queue_name"),
            mapping_id: r.get("mapping_id"),
            batch_size: r.get::<_, Option<i32>>("batch_size").map(|n| n as u32),
            enabled: r.get("enabled"),
            state: r.get("state"),
            error: r.get("error"),
            updated_at: r.get("updated_at"),
        })
        .collect())
}
