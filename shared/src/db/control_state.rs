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
    /// The tenant function's version: its `CodeSha256` as the provisioner last read it.
    pub code_sha256: Option<String>,
    /// The template function's `CodeSha256` of the latest rollout.
    pub template_code_sha256: Option<String>,
    /// Whether the function's code and the configuration copied from the template equal the
    /// template's (`null`: not compared yet).
    pub up_to_date: Option<bool>,
    /// The function's `State/LastUpdateStatus` when its version was read (e.g.
    /// `Active/Successful`).
    pub update_status: Option<String>,
    pub version_checked_at: Option<DateTime<Utc>>,
}

/// Capacity rows with the count of the tenant's enabled queues (what bounds the effective
/// capacity) and the version of the template each was last compared with (its latest rollout).
const CAPACITY_SELECT: &str = "SELECT c.*, (SELECT count(*) FROM consumer_configs q
        WHERE q.tenant_id = c.tenant_id AND q.enabled AND q.workers > 0) AS enabled_queues,
        r.code_sha256 AS template_code_sha256, r.config_digest AS template_config_digest
    FROM tenant_capacity c
    LEFT JOIN LATERAL (SELECT code_sha256, config_digest FROM function_rollouts f
        WHERE f.template_function = c.template_function
        ORDER BY requested_at DESC LIMIT 1) r ON true";

fn capacity_from_row(r: &Row) -> Capacity {
    let desired = r
        .get::<_, Option<i32>>("desired_concurrency")
        .map(|n| n as u32);
    let enabled_queues = r.get::<_, i64>("enabled_queues") as u32;
    let code: Option<String> = r.get("code_sha256");
    let digest: Option<String> = r.get("config_digest");
    let template_code: Option<String> = r.get("template_code_sha256");
    let template_digest: Option<String> = r.get("template_config_digest");
    let up_to_date = match (&code, &digest, &template_code, &template_digest) {
        (Some(c), Some(d), Some(tc), Some(td)) => Some(c == tc && d == td),
        _ => None,
    };
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
        code_sha256: code,
        template_code_sha256: template_code,
        up_to_date,
        update_status: r.get("update_status"),
        version_checked_at: r.get("version_checked_at"),
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
            &format!("{CAPACITY_SELECT} WHERE c.tenant_id = $1"),
            &[&tenant.0],
        )
        .await?
        .as_ref()
        .map(capacity_from_row))
}

/// The tenants' capacities, or every tenant's (admin) when `tenant` is `None`.
pub async fn list(pool: &Pool, tenant: Option<TenantId>) -> Result<Vec<Capacity>> {
    let client = pool.get().await?;
    let scope = super::TenantScope::new(tenant);
    let rows = client
        .query(
            &format!(
                "{CAPACITY_SELECT}{}",
                scope.condition("WHERE", "c.tenant_id")
            ),
            &scope.params(),
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
        enabled: Some(false),
        state: "deleted",
        ..MappingRecord::default()
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
    /// `applied`, `pending` (AWS is still creating, enabling or updating it), `failed` (the
    /// call failed, or AWS disabled it or left it in another state than asked: `error` says
    /// why), `deleted` or `unsupported`.
    pub state: String,
    pub error: Option<String>,
    /// The mapping's `State` in AWS at the last read-back (`Enabled`, `Disabled`, ...).
    pub aws_state: Option<String>,
    pub state_transition_reason: Option<String>,
    pub last_processing_result: Option<String>,
    /// How many times the control plane applied it (a reconcile retrying it counts).
    pub attempts: i32,
    pub updated_at: DateTime<Utc>,
}

/// What one mapping step did.
#[derive(Default)]
pub struct MappingRecord<'a> {
    pub mapping_id: Option<&'a str>,
    pub batch_size: Option<u32>,
    pub enabled: Option<bool>,
    pub state: &'a str,
    pub error: Option<&'a str>,
    pub aws_state: Option<&'a str>,
    pub state_transition_reason: Option<&'a str>,
    pub last_processing_result: Option<&'a str>,
    /// Whether this record is an apply (counted in `attempts`) rather than a read-back.
    pub applied: bool,
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
                 enabled, state, error, aws_state, state_transition_reason,
                 last_processing_result, attempts)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::int)
             ON CONFLICT (tenant_id, queue_name) DO UPDATE SET mapping_id = $3, batch_size = $4,
                 enabled = $5, state = $6, error = $7, aws_state = $8,
                 state_transition_reason = $9, last_processing_result = $10,
                 attempts = consumer_mappings.attempts + $11::int, updated_at = now()",
            &[
                &tenant.0,
                &queue,
                &m.mapping_id,
                &m.batch_size.map(|n| n as i32),
                &m.enabled,
                &m.state,
                &m.error,
                &m.aws_state,
                &m.state_transition_reason,
                &m.last_processing_result,
                &(m.applied as i32),
            ],
        )
        .await?;
    Ok(())
}

fn mapping_from_row(r: &Row) -> Mapping {
    Mapping {
        tenant_id: TenantId(r.get("tenant_id")),
        queue_name: r.get("queue_name"),
        mapping_id: r.get("mapping_id"),
        batch_size: r.get::<_, Option<i32>>("batch_size").map(|n| n as u32),
        enabled: r.get("enabled"),
        state: r.get("state"),
        error: r.get("error"),
        aws_state: r.get("aws_state"),
        state_transition_reason: r.get("state_transition_reason"),
        last_processing_result: r.get("last_processing_result"),
        attempts: r.get("attempts"),
        updated_at: r.get("updated_at"),
    }
}

pub async fn list_mappings(pool: &Pool, tenant: Option<TenantId>) -> Result<Vec<Mapping>> {
    let client = pool.get().await?;
    let scope = super::TenantScope::new(tenant);
    let rows = client
        .query(
            &format!(
                "SELECT * FROM consumer_mappings{}",
                scope.condition("WHERE", "tenant_id")
            ),
            &scope.params(),
        )
        .await?;
    Ok(rows.iter().map(mapping_from_row).collect())
}

/// A tenant function's version as the provisioner read it, recorded on every tenant it
/// serves.
pub struct FunctionVersion<'a> {
    pub function_name: &'a str,
    pub template_function: &'a str,
    pub code_sha256: Option<&'a str>,
    pub config_digest: &'a str,
    pub update_status: &'a str,
}

pub async fn record_function_version(pool: &Pool, v: &FunctionVersion<'_>) -> Result<()> {
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE tenant_capacity SET code_sha256 = $2, config_digest = $3, update_status = $4,
                 template_function = $5, version_checked_at = now()
             WHERE function_name = $1 AND state <> 'deleted'",
            &[
                &v.function_name,
                &v.code_sha256,
                &v.config_digest,
                &v.update_status,
                &v.template_function,
            ],
        )
        .await?;
    Ok(())
}

/// The tenant functions a rollout brings to the template's version (system-wide): every
/// function named with the deployment's `prefix` that an active tenant's capacity row names
/// (never the template itself). A name several tenants share appears once.
pub async fn rollout_targets(pool: &Pool, prefix: &str, template: &str) -> Result<Vec<String>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT DISTINCT c.function_name FROM tenant_capacity c
             JOIN tenants t ON t.id = c.tenant_id
             WHERE t.status = 'active' AND c.state <> 'deleted'
               AND starts_with(c.function_name, $1) AND c.function_name <> $2
             ORDER BY 1",
            &[&prefix, &template],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Mappings of active tenants a reconcile should retry (`failed`) or re-read (`pending`),
/// system-wide but only of this deployment's functions (dedicated ones by `prefix`, the
/// `pooled` function, or no function recorded yet), least recently tried first.
pub async fn mappings_to_reconcile(
    pool: &Pool,
    prefix: &str,
    pooled: &str,
    limit: i64,
) -> Result<Vec<Mapping>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT m.* FROM consumer_mappings m JOIN tenants t ON t.id = m.tenant_id
             LEFT JOIN tenant_capacity c ON c.tenant_id = m.tenant_id
             WHERE t.status = 'active' AND m.state IN ('failed', 'pending')
               AND (c.function_name IS NULL OR starts_with(c.function_name, $1)
                    OR c.function_name = $3)
             ORDER BY m.updated_at LIMIT $2",
            &[&prefix, &limit, &pooled],
        )
        .await?;
    Ok(rows.iter().map(mapping_from_row).collect())
}
