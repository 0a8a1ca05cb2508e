//! Scheduled (delayed) messages: kept in PostgreSQL only, released by the relay's tick when
//! they come due, cancellable until then.

use super::{
    Pool,
    messages::{COLUMNS, Unsettled, from_row, unsettled},
};
use crate::{
    domain::{Message, MessageId, TenantId},
    error::Result,
};

/// System-wide (relay only): moves up to `limit` due `scheduled` messages, oldest due first, to
/// `pending`, each keyed one taking its place in its key's order now (so it never runs beside
/// a later message of its key that already started), and returns them to publish. Reads the
/// `messages_scheduled_due` index from its start; rows another sweep holds are skipped.
pub async fn release_due(pool: &Pool, limit: i64) -> Result<Vec<Unsettled>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "WITH due AS (
                 SELECT id, ordering_key FROM messages
                 WHERE status = 'scheduled' AND deliver_at <= now()
                 ORDER BY deliver_at, id LIMIT $1
                 FOR UPDATE SKIP LOCKED),
             numbered AS (
                 SELECT id, CASE WHEN ordering_key IS NOT NULL
                                 THEN nextval('messages_ordering_seq') END AS seq
                 FROM due)
             UPDATE messages SET status = 'pending', ordering_seq = numbered.seq,
                 updated_at = now()
             FROM numbered WHERE messages.id = numbered.id
             RETURNING messages.id, messages.tenant_id, messages.queue_name, messages.body,
                 messages.headers",
            &[&limit],
        )
        .await?;
    Ok(rows.iter().map(unsettled).collect())
}

/// `scheduled -> cancelled` for the tenant's message; `None` when it is not scheduled (any
/// more) or not the tenant's.
pub async fn cancel(pool: &Pool, tenant: TenantId, id: MessageId) -> Result<Option<Message>> {
    let client = pool.get().await?;
    let sql = format!(
        "UPDATE messages SET status = 'cancelled', cancelled_at = now(), updated_at = now()
         WHERE tenant_id = $1 AND id = $2 AND status = 'scheduled'
         RETURNING {COLUMNS}"
    );
    Ok(client
        .query_opt(&sql, &[&tenant.0, &id.0])
        .await?
        .as_ref()
        .map(from_row))
}

/// System-wide: how many messages are scheduled (read from the `messages_scheduled_due`
/// index alone).
pub async fn count(pool: &Pool) -> Result<i64> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "SELECT count(*) FROM messages WHERE status = 'scheduled'",
            &[],
        )
        .await?;
    Ok(row.get(0))
}
