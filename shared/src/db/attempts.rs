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
    /// The HTTP status the endpoint answered (webhook queues); null when no answer came
    /// (a timeout, a refused connection; `error` says which) or the queue has no endpoint.
    pub http_status: Option<i32>,
    /// How long the attempt's processing ran, in milliseconds; null while it runs, for an
    /// abandoned attempt, and for attempts recorded before this field existed.
    pub duration_ms: Option<i32>,
    /// The first bytes of the endpoint's answer as text: at most
    /// `ATTEMPT_RESPONSE_EXCERPT_BYTES` bytes of UTF-8 (a character cut by the bound is
    /// dropped; bytes that are not UTF-8 become U+FFFD); null when empty or not kept.
    pub response_excerpt: Option<String>,
}

fn from_row(row: &Row) -> Attempt {
    Attempt {
        attempt: row.get("attempt"),
        started_at: row.get("started_at"),
        finished_at: row.get("finished_at"),
        outcome: row.get("outcome"),
        error: row.get("error"),
        http_status: row.get::<_, Option<i16>>("http_status").map(i32::from),
        duration_ms: row.get("duration_ms"),
        response_excerpt: row.get("response_excerpt"),
    }
}

const COLUMNS: &str =
    "attempt, started_at, finished_at, outcome, error, http_status, duration_ms, response_excerpt";

/// `$1` tenant's message `$2`'s attempts, in order (read on the primary key).
pub fn list_sql() -> String {
    format!(
        "SELECT {COLUMNS} FROM message_attempts
         WHERE tenant_id = $1::uuid AND message_id = $2::uuid ORDER BY attempt"
    )
}

/// `$1` tenant's message `$2`'s latest attempt.
pub fn latest_sql() -> String {
    format!(
        "SELECT {COLUMNS} FROM message_attempts
         WHERE message_id = $2::uuid AND tenant_id = $1::uuid ORDER BY attempt DESC LIMIT 1"
    )
}

pub async fn list(pool: &Pool, tenant: TenantId, message: MessageId) -> Result<Vec<Attempt>> {
    let client = pool.get().await?;
    let rows = client.query(&list_sql(), &[&tenant.0, &message.0]).await?;
    Ok(rows.iter().map(from_row).collect())
}

/// The message's latest attempt (read backwards on the primary key).
pub async fn latest(pool: &Pool, tenant: TenantId, message: MessageId) -> Result<Option<Attempt>> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(&latest_sql()).await?;
    Ok(client
        .query_opt(&stmt, &[&tenant.0, &message.0])
        .await?
        .as_ref()
        .map(from_row))
}
