//! Ordered delivery's bookkeeping besides the claim itself (`messages::CLAIM`, which refuses a
//! keyed message while an earlier one of its key is unsettled): which messages the consumer put
//! aside behind an earlier one, and which of them comes next once its key moves on.

use uuid::Uuid;

use super::Pool;
use crate::{domain::TenantId, error::Result};

/// Records that the consumer put these messages aside (on a wait tier) behind an earlier
/// message of their key.
pub async fn mark_deferred(pool: &Pool, tenant: TenantId, ids: &[Uuid]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE messages SET deferred_at = now() WHERE tenant_id = $1 AND id = ANY($2)",
            &[&tenant.0, &ids],
        )
        .await?;
    Ok(())
}

/// For each of these keys of the queue, its next message (the earliest unsettled one) when the
/// consumer put it aside earlier and nothing else holds it back now: takes it (clears
/// `deferred_at`, so one settle sends it back once) and returns it, to be put on the work queue
/// at once instead of waiting out its wait tier. Reads one short range of the
/// `messages_ordering_unsettled` index per key.
pub async fn take_next_deferred(
    pool: &Pool,
    tenant: TenantId,
    queue: &str,
    keys: &[String],
) -> Result<Vec<Uuid>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let client = pool.get().await?;
    let rows = client
        .query(
            "WITH next AS (
                 SELECT DISTINCT ON (ordering_key) id, status, deferred_at FROM messages
                 WHERE tenant_id = $1 AND queue_name = $2 AND ordering_key = ANY($3)
                   AND status IN ('pending', 'queued', 'processing', 'retrying')
                 ORDER BY ordering_key, ordering_seq)
             UPDATE messages m SET deferred_at = NULL FROM next
             WHERE m.id = next.id AND m.tenant_id = $1
               AND next.deferred_at IS NOT NULL AND next.status IN ('pending', 'queued')
             RETURNING m.id",
            &[&tenant.0, &queue, &keys],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
