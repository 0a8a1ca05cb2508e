use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::Pool;
use crate::{
    config::ConsumerDefaults,
    domain::{ConsumerConfig, ConsumerConfigUpdate, QueueName, TenantId},
    error::Result,
};

const COLUMNS: &str = "tenant_id, queue_name, workers, retry_attempts, retry_delay_ms, enabled, \
                       endpoint_url, signing_secret, on_dead_letter, created_at, updated_at";

fn from_row(row: &Row) -> ConsumerConfig {
    ConsumerConfig {
        tenant_id: TenantId(row.get("tenant_id")),
        queue_name: row.get("queue_name"),
        workers: row.get::<_, i32>("workers") as u32,
        retry_attempts: row.get::<_, i32>("retry_attempts") as u32,
        retry_delay_ms: row.get::<_, i64>("retry_delay_ms") as u64,
        enabled: row.get("enabled"),
        endpoint_url: row.get("endpoint_url"),
        signing_secret: row.get("signing_secret"),
        on_dead_letter: row
            .get::<_, &str>("on_dead_letter")
            .parse()
            .unwrap_or_default(),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    }
}

/// A new Standard Webhooks signing secret.
pub fn new_signing_secret() -> String {
    use base64::Engine as _;
    let bytes: [u8; 24] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// Creates the queue's config with the defaults unless it exists. Returns true when created.
pub async fn ensure_default(
    client: &impl GenericClient,
    tenant: TenantId,
    queue: &QueueName,
    defaults: &ConsumerDefaults,
) -> Result<bool> {
    let c = ConsumerConfig::new_queue(tenant, queue, defaults, new_signing_secret());
    let n = client
        .execute(
            "INSERT INTO consumer_configs
                 (tenant_id, queue_name, workers, retry_attempts, retry_delay_ms, enabled,
                  endpoint_url, signing_secret)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (tenant_id, queue_name) DO NOTHING",
            &[
                &tenant.0,
                &c.queue_name,
                &(c.workers as i32),
                &(c.retry_attempts as i32),
                &(c.retry_delay_ms as i64),
                &c.enabled,
                &c.endpoint_url,
                &c.signing_secret,
            ],
        )
        .await?;
    Ok(n == 1)
}

/// Inserts or updates the queue's config; fields the update leaves out keep their stored value,
/// or take the default for a new queue.
pub async fn upsert(
    client: &impl GenericClient,
    tenant: TenantId,
    update: &ConsumerConfigUpdate,
    defaults: &ConsumerDefaults,
) -> Result<ConsumerConfig> {
    let new = ConsumerConfig::new_queue(tenant, &update.queue_name, defaults, new_signing_secret());
    let (endpoint_given, endpoint) = match &update.endpoint_url {
        Some(url) => (true, url.clone()),
        None => (false, None),
    };
    let sql = format!(
        "INSERT INTO consumer_configs AS c
             (tenant_id, queue_name, workers, retry_attempts, retry_delay_ms, enabled, endpoint_url, signing_secret,
              on_dead_letter)
         VALUES ($1, $2, $3, COALESCE($4::int, $9::int), COALESCE($5::bigint, $10::bigint),
                 COALESCE($6::boolean, $12::boolean), $7::text, $8, COALESCE($13::text, 'continue'))
         ON CONFLICT (tenant_id, queue_name) DO UPDATE SET
             workers = EXCLUDED.workers,
             on_dead_letter = COALESCE($13::text, c.on_dead_letter),
             retry_attempts = COALESCE($4::int, c.retry_attempts),
             retry_delay_ms = COALESCE($5::bigint, c.retry_delay_ms),
             enabled = COALESCE($6::boolean, c.enabled),
             endpoint_url = CASE WHEN $11::boolean THEN $7::text ELSE c.endpoint_url END,
             updated_at = now()
         RETURNING {COLUMNS}"
    );
    let row = client
        .query_one(
            &sql,
            &[
                &tenant.0,
                &update.queue_name.as_str(),
                &(update.workers.get() as i32),
                &update.retry_attempts.map(|n| n as i32),
                &update.retry_delay_ms.map(|n| n as i64),
                &update.enabled,
                &endpoint,
                &new.signing_secret,
                &(new.retry_attempts as i32),
                &(new.retry_delay_ms as i64),
                &endpoint_given,
                &new.enabled,
                &update.on_dead_letter.map(|o| o.as_str()),
            ],
        )
        .await?;
    Ok(from_row(&row))
}

pub async fn get(pool: &Pool, tenant: TenantId, queue: &str) -> Result<Option<ConsumerConfig>> {
    let client = pool.get().await?;
    let sql =
        format!("SELECT {COLUMNS} FROM consumer_configs WHERE tenant_id = $1 AND queue_name = $2");
    let stmt = client.prepare_cached(&sql).await?;
    Ok(client
        .query_opt(&stmt, &[&tenant.0, &queue])
        .await?
        .as_ref()
        .map(from_row))
}

pub async fn list_for_tenant(pool: &Pool, tenant: TenantId) -> Result<Vec<ConsumerConfig>> {
    let client = pool.get().await?;
    let sql =
        format!("SELECT {COLUMNS} FROM consumer_configs WHERE tenant_id = $1 ORDER BY queue_name");
    let rows = client.query(&sql, &[&tenant.0]).await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Every queue of every active tenant: what the local event source consumes (system-wide).
pub async fn list_all_of_active_tenants(pool: &Pool) -> Result<Vec<ConsumerConfig>> {
    let client = pool.get().await?;
    let sql = format!(
        "SELECT {} FROM consumer_configs c JOIN tenants t ON t.id = c.tenant_id
         WHERE t.status = 'active' ORDER BY c.tenant_id, c.queue_name",
        prefixed("c")
    );
    let rows = client.query(&sql, &[]).await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Every queue of every tenant (admin view).
pub async fn list_all(pool: &Pool) -> Result<Vec<ConsumerConfig>> {
    let client = pool.get().await?;
    let sql = format!("SELECT {COLUMNS} FROM consumer_configs ORDER BY tenant_id, queue_name");
    let rows = client.query(&sql, &[]).await?;
    Ok(rows.iter().map(from_row).collect())
}

fn prefixed(alias: &str) -> String {
    COLUMNS
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}
