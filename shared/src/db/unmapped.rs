//! Messages the consumer acknowledged without processing because they are none of ours (see
//! the consumer's `rmq::unmapped`), counted per tenant work queue for the status API.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Row;

use super::Pool;
use crate::{domain::TenantId, error::Result};

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct UnmappedMessages {
    /// Deliveries acknowledged without processing since the queue was created.
    pub count: i64,
    /// When the latest was seen (absent while none was).
    pub last_seen_at: Option<DateTime<Utc>>,
    /// Why the latest batch's could not be mapped: `no_message_id`, `invalid_message_id` or
    /// `unknown_message`.
    pub last_reason: Option<String>,
}

fn from_row(r: &Row) -> ((TenantId, String), UnmappedMessages) {
    let key = (TenantId(r.get("tenant_id")), r.get("queue_name"));
    let figures = UnmappedMessages {
        count: r.get("count"),
        last_seen_at: Some(r.get("last_seen_at")),
        last_reason: Some(r.get("last_reason")),
    };
    (key, figures)
}

/// Adds one batch's unmapped messages to the queue's count.
pub async fn record(
    pool: &Pool,
    tenant: TenantId,
    queue: &str,
    count: u64,
    reason: &str,
) -> Result<()> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO unmapped_messages (tenant_id, queue_name, count, last_reason)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant_id, queue_name) DO UPDATE
                 SET count = unmapped_messages.count + $3, last_reason = $4, last_seen_at = now()",
            &[&tenant.0, &queue, &(count as i64), &reason],
        )
        .await?;
    Ok(())
}

/// The tenant's queues that had any, or every tenant's (admin) when `tenant` is `None`.
pub async fn list(
    pool: &Pool,
    tenant: Option<TenantId>,
) -> Result<HashMap<(TenantId, String), UnmappedMessages>> {
    let client = pool.get().await?;
    let scope = super::TenantScope::new(tenant);
    let rows = client
        .query(
            &format!(
                "SELECT * FROM unmapped_messages{}",
                scope.condition("WHERE", "tenant_id")
            ),
            &scope.params(),
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}
