//! The consumer state a process actually applied (the local event source; the AWS control
//! plane later), shown next to the desired config by the status API.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Row;

use super::Pool;
use crate::{domain::TenantId, error::Result};

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize)]
pub struct Applied {
    #[serde(skip)]
    pub tenant_id: TenantId,
    #[serde(skip)]
    pub queue_name: String,
    pub workers: u32,
    pub running: bool,
    pub applied_by: String,
    pub updated_at: DateTime<Utc>,
}

fn from_row(r: &Row) -> Applied {
    Applied {
        tenant_id: TenantId(r.get("tenant_id")),
        queue_name: r.get("queue_name"),
        workers: r.get::<_, i32>("applied_workers") as u32,
        running: r.get("running"),
        applied_by: r.get("applied_by"),
        updated_at: r.get("updated_at"),
    }
}

pub async fn record(
    pool: &Pool,
    tenant: TenantId,
    queue: &str,
    workers: u32,
    running: bool,
    by: &str,
) -> Result<()> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO consumer_runtime (tenant_id, queue_name, applied_workers, running, applied_by)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant_id, queue_name) DO UPDATE SET applied_workers = $3, running = $4,
                 applied_by = $5, updated_at = now()",
            &[&tenant.0, &queue, &(workers as i32), &running, &by],
        )
        .await?;
    Ok(())
}

/// The tenant's queues, or every tenant's (admin) when `tenant` is `None`.
pub async fn list(pool: &Pool, tenant: Option<TenantId>) -> Result<Vec<Applied>> {
    let client = pool.get().await?;
    let scope = super::TenantScope::new(tenant);
    let rows = client
        .query(
            &format!(
                "SELECT * FROM consumer_runtime{}",
                scope.condition("WHERE", "tenant_id")
            ),
            &scope.params(),
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}
