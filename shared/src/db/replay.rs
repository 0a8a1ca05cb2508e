//! Replay: settled messages (`completed`, `dead_lettered`) put back to `pending` with a fresh
//! attempt budget, keeping their id (so a webhook receiver sees the same `webhook-id`) and
//! their attempt history (`total_attempts` goes on numbering the new attempts). Each statement
//! locks the rows it takes, so a message replayed twice at once is replayed once.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use uuid::Uuid;

use super::Pool;
use crate::{
    domain::{MessageId, QueueName, TenantId, message::NewMessage},
    error::Result,
};

/// A message put back, with the status it had.
pub struct Replayed {
    pub message: NewMessage,
    pub was: String,
}

const RESET: &str =
    "UPDATE messages m SET status = 'pending', attempts = 0, next_attempt_at = NULL,
        locked_until = NULL, completed_at = NULL, dead_lettered_at = NULL, updated_at = now()
    FROM taken WHERE m.id = taken.id
    RETURNING m.id, m.queue_name, m.body, m.headers, m.ordering_key, taken.status";

/// The settled ones of `ids` (the tenant's only).
const BY_IDS_SQL: &str = "WITH taken AS (
        SELECT id, status FROM messages
        WHERE tenant_id = $1 AND id = ANY($2) AND status IN ('completed', 'dead_lettered')
        ORDER BY id FOR UPDATE)";

/// The queue's settled messages of `statuses` with ids in (`after`, `before`), oldest first,
/// at most `limit`: a window of the tenant's id index (ids are UUIDv7, so the window is a span
/// of publish time).
const BY_RANGE_SQL: &str = "WITH taken AS (
        SELECT id, status FROM messages
        WHERE tenant_id = $1 AND id > $2 AND id < $3 AND queue_name = $4
          AND status = ANY($5::text[])
        ORDER BY id LIMIT $6 FOR UPDATE SKIP LOCKED)";

fn replayed(r: &Row) -> Option<Replayed> {
    let body: serde_json::Value = r.get("body");
    Some(Replayed {
        message: NewMessage {
            id: MessageId(r.get("id")),
            queue_name: QueueName::parse(r.get("queue_name")).ok()?,
            body_bytes: serde_json::to_vec(&body).ok()?,
            body,
            headers: serde_json::from_value(r.get("headers")).unwrap_or_default(),
            idempotency_key: None,
            // Its place in its key stays the one it took when first published.
            ordering_key: r.get("ordering_key"),
            deliver_at: None,
        },
        was: r.get("status"),
    })
}

/// The whole statement of a replay by ids (for the plans test too).
pub fn by_ids_sql() -> String {
    format!("{BY_IDS_SQL} {RESET}")
}

/// The whole statement of a replay by range.
pub fn by_range_sql() -> String {
    format!("{BY_RANGE_SQL} {RESET}")
}

pub async fn by_ids(pool: &Pool, tenant: TenantId, ids: &[Uuid]) -> Result<Vec<Replayed>> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(&by_ids_sql()).await?;
    let rows = client.query(&stmt, &[&tenant.0, &ids]).await?;
    Ok(rows.iter().filter_map(replayed).collect())
}

pub async fn by_range(
    pool: &Pool,
    tenant: TenantId,
    queue: &QueueName,
    (after, before): (Uuid, Uuid),
    statuses: &[&str],
    limit: i64,
) -> Result<Vec<Replayed>> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(&by_range_sql()).await?;
    let rows = client
        .query(
            &stmt,
            &[
                &tenant.0,
                &after,
                &before,
                &queue.as_str(),
                &statuses,
                &limit,
            ],
        )
        .await?;
    Ok(rows.iter().filter_map(replayed).collect())
}

/// The status of each of `ids` the tenant has (for the ones a replay skipped).
pub async fn statuses(pool: &Pool, tenant: TenantId, ids: &[Uuid]) -> Result<Vec<(Uuid, String)>> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached("SELECT id, status FROM messages WHERE tenant_id = $1 AND id = ANY($2)")
        .await?;
    let rows = client.query(&stmt, &[&tenant.0, &ids]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The smallest UUIDv7 of the millisecond `at` falls in: every id generated at or after `at`
/// is greater, every one generated before it smaller (ids are `Uuid::now_v7`).
pub fn v7_floor(at: DateTime<Utc>) -> Uuid {
    let ms = at.timestamp_millis().clamp(0, (1 << 48) - 1) as u64;
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    bytes[6] = 0x70; // version 7
    bytes[8] = 0x80; // RFC 4122 variant
    Uuid::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v7_floors_order_ids_by_their_time() {
        let t0 = Utc::now();
        let id = Uuid::now_v7();
        let t1 = Utc::now();
        let (floor, ceiling) = (
            v7_floor(t0),
            v7_floor(t1 + chrono::Duration::milliseconds(1)),
        );
        assert!(floor <= id && id < ceiling, "{floor} <= {id} < {ceiling}");
        let now = t1;
        assert_eq!(v7_floor(now).get_version_num(), 7);
    }
}
