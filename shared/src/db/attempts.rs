use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Row;

use super::Pool;
use crate::{
    domain::{MessageId, TenantId},
    error::Result,
};

/// One processing attempt of a message.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize)]
pub struct Attempt {
    /// Counts every attempt of the message, across redrives.
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `completed`, `retrying`, `dead_lettered`, or `abandoned` (the worker died or timed out);
    /// absent while the attempt runs.
    pub outcome: Option<String>,
    pub error: Option<String>,
}

fn from_row(row: &Row) -> Attempt {
    Attempt {
        attempt: row.get("attempt"),
        started_at: row.get("started_at"),
        finished_at: row.get("finished_at"),
        outcome: row.get("outcome"),
        error: row.get("error"),
    }
}

pub async fn list(pool: &Pool, tenant: TenantId, message: MessageId) -> Result<Vec<Attempt>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT attempt, started_at, finished_at, outcome, error FROM message_attempts
             WHERE tenant_id = $1 AND message_id = $2 ORDER BY attempt",
            &[&tenant.0, &message.0],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}
