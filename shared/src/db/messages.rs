use std::collections::BTreeMap;

use deadpool_postgres::GenericClient;
use tokio_postgres::{Row, types::ToSql};
use uuid::Uuid;

use super::Pool;
use crate::{
    domain::{Message, MessageId, MessageStatus, PageRequest, TenantId, message::NewMessage},
    error::Result,
};

pub(crate) const COLUMNS: &str = "id, tenant_id, queue_name, body, headers, status, attempts, \
    last_error, idempotency_key, ordering_key, deliver_at, next_attempt_at, created_at, \
    updated_at, queued_at, completed_at, dead_lettered_at, cancelled_at";

pub(crate) fn from_row(row: &Row) -> Message {
    let headers: serde_json::Value = row.get("headers");
    Message {
        id: MessageId(row.get("id")),
        tenant_id: TenantId(row.get("tenant_id")),
        queue_name: row.get("queue_name"),
        status: row
            .get::<_, &str>("status")
            .parse()
            .unwrap_or(MessageStatus::Pending),
        message_body: row.get("body"),
        headers: serde_json::from_value::<BTreeMap<String, String>>(headers).unwrap_or_default(),
        attempts: row.get("attempts"),
        last_error: row.get("last_error"),
        idempotency_key: row.get("idempotency_key"),
        ordering_key: row.get("ordering_key"),
        deliver_at: row.get("deliver_at"),
        next_attempt_at: row.get("next_attempt_at"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
        queued_at: row.get("queued_at"),
        completed_at: row.get("completed_at"),
        dead_lettered_at: row.get("dead_lettered_at"),
        cancelled_at: row.get("cancelled_at"),
    }
}

// The statements of the message path, public so that the plan test (shared/tests/plans.rs)
// can check how PostgreSQL runs them. Each looks rows up by primary key alone, `OFFSET 0`
// keeping its other conditions out of the lookup: with them inside, the planner may read
// through any index they match, and statistics (or their absence) decide which. On an empty
// database it took the first index on `tenant_id` and scanned the tenant's waiting messages per
// row; once statistics had seen no `pending` row it scanned the whole partial index of unsettled
// messages per row. The conditions are checked on the locked row.

/// `pending -> queued` for `($1 ids, $2 tenants)`; see [`mark_queued`].
pub const MARK_QUEUED: &str = "UPDATE messages SET status = 'queued', queued_at = now(), updated_at = now()
             WHERE id IN (SELECT m.id FROM (SELECT * FROM unnest($1::uuid[], $2::uuid[]) AS u(id, tenant_id)
                                            ORDER BY id) u
                          CROSS JOIN LATERAL (SELECT id, tenant_id, status FROM messages
                              WHERE id = u.id OFFSET 0 FOR UPDATE SKIP LOCKED) m
                          WHERE m.tenant_id = u.tenant_id AND m.status = 'pending')";

/// Claims `$3` ids of tenant `$1`'s queue `$2` for a lease of `$4` seconds, a dead letter
/// holding its key back when `$5`; see [`claim`].
pub const CLAIM: &str = "WITH claimed AS (
                 UPDATE messages SET status = 'processing', attempts = attempts + 1,
                     total_attempts = total_attempts + 1,
                     locked_until = now() + make_interval(secs => $4), updated_at = now()
                 FROM (SELECT m.id FROM (SELECT id FROM unnest($3::uuid[]) AS id ORDER BY id) u
                       CROSS JOIN LATERAL (SELECT id, tenant_id, queue_name FROM messages
                           WHERE id = u.id OFFSET 0 FOR UPDATE) m
                       WHERE m.tenant_id = $1 AND m.queue_name = $2) AS locked
                 WHERE messages.id = locked.id
                   AND (messages.status IN ('pending', 'queued')
                        OR (messages.status = 'retrying' AND messages.next_attempt_at <= now() + interval '1 second')
                        OR (messages.status = 'processing' AND messages.locked_until < now()))
                   AND NOT (messages.ordering_key IS NOT NULL AND (
                       EXISTS (SELECT 1 FROM messages e
                               WHERE e.tenant_id = $1 AND e.queue_name = $2
                                 AND e.ordering_key = messages.ordering_key AND e.id <> messages.id
                                 AND e.status IN ('pending', 'queued', 'processing', 'retrying')
                                 AND (e.status = 'processing' OR e.ordering_seq < messages.ordering_seq))
                       OR ($5 AND EXISTS (SELECT 1 FROM messages e
                               WHERE e.tenant_id = $1 AND e.queue_name = $2
                                 AND e.ordering_key = messages.ordering_key
                                 AND e.status = 'dead_lettered'
                                 AND e.ordering_seq < messages.ordering_seq))))
                 RETURNING messages.id, messages.attempts, messages.total_attempts, messages.body,
                     messages.headers, messages.created_at, messages.ordering_key),
             abandoned AS (
                 UPDATE message_attempts SET finished_at = now(), outcome = 'abandoned',
                     error = 'the worker stopped or timed out before settling'
                 WHERE message_id IN (SELECT id FROM claimed) AND finished_at IS NULL),
             started AS (
                 INSERT INTO message_attempts (message_id, attempt, tenant_id, queue_name)
                 SELECT id, total_attempts, $1, $2 FROM claimed)
             SELECT * FROM claimed";

/// Completes `($1 ids, $2 tenants, $3 attempt numbers)` and records each attempt's
/// `($4 HTTP statuses, $5 durations in ms, $6 response excerpts)`; see [`complete_many`].
pub const COMPLETE: &str = "WITH locked AS (
                 SELECT m.id, u.n, u.http_status, u.duration_ms, u.excerpt
                 FROM (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::int2[],
                                            $5::int[], $6::text[])
                       AS u(id, tenant_id, n, http_status, duration_ms, excerpt) ORDER BY id) u
                 CROSS JOIN LATERAL (SELECT id, tenant_id, status, total_attempts FROM messages
                     WHERE id = u.id OFFSET 0 FOR UPDATE) m
                 WHERE m.tenant_id = u.tenant_id AND m.status = 'processing'
                   AND m.total_attempts = u.n),
             done AS (
                 UPDATE messages SET status = 'completed', updated_at = now(), locked_until = NULL,
                     next_attempt_at = NULL, completed_at = now()
                 FROM locked WHERE messages.id = locked.id
                 RETURNING messages.id, locked.n, locked.http_status, locked.duration_ms,
                     locked.excerpt)
             UPDATE message_attempts a SET finished_at = now(), outcome = 'completed',
                 http_status = done.http_status, duration_ms = done.duration_ms,
                 response_excerpt = done.excerpt
             FROM done WHERE a.message_id = done.id AND a.attempt = done.n
             RETURNING a.message_id";

/// Inserts `$1` tenant's messages `($2 ids, $3 queues, $4 bodies, $5 headers, $6 idempotency
/// keys, $7 ordering keys, $8 delivery times)` as `pending`, or `scheduled` where the delivery
/// time is ahead; see [`insert_pending`]. Rows are numbered in the order given (ORDER BY n), so
/// a batch's keyed messages take their key's sequence in request order.
pub const INSERT_PENDING: &str =
    "INSERT INTO messages (id, tenant_id, queue_name, body, headers, status, idempotency_key,
                           ordering_key, ordering_seq, deliver_at)
     SELECT m.id, $1::uuid, m.queue_name, m.body, m.headers, m.status, m.key, m.okey,
            CASE WHEN m.okey IS NOT NULL AND m.status = 'pending'
                 THEN nextval('messages_ordering_seq') END,
            m.deliver_at
     FROM (SELECT u.*, CASE WHEN u.deliver_at > now() THEN 'scheduled' ELSE 'pending' END
                  AS status
           FROM unnest($2::uuid[], $3::text[], $4::jsonb[], $5::jsonb[], $6::text[],
                       $7::text[], $8::timestamptz[])
                WITH ORDINALITY AS u(id, queue_name, body, headers, key, okey, deliver_at, n)
           ORDER BY u.n) m
     WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $1 AND status = 'active')
     ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
     RETURNING id, status";

/// Inserts the messages as `pending` (or `scheduled`, those whose `deliver_at` is ahead) in one
/// statement, only while the tenant is active. Messages whose idempotency key the tenant
/// already used are not inserted; their ids are absent from the returned list (as are all of
/// them for an inactive or unknown tenant). Keyed `pending` messages take their place in their
/// key's order here, in the order given.
pub async fn insert_pending(
    client: &impl GenericClient,
    tenant: TenantId,
    messages: &[&NewMessage],
) -> Result<Vec<(Uuid, MessageStatus)>> {
    let ids: Vec<Uuid> = messages.iter().map(|m| m.id.0).collect();
    let queues: Vec<&str> = messages.iter().map(|m| m.queue_name.as_str()).collect();
    let bodies: Vec<&serde_json::Value> = messages.iter().map(|m| &m.body).collect();
    let headers: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| serde_json::to_value(&m.headers).unwrap_or_default())
        .collect();
    let keys: Vec<Option<&str>> = messages
        .iter()
        .map(|m| m.idempotency_key.as_deref())
        .collect();
    let ordering: Vec<Option<&str>> = messages.iter().map(|m| m.ordering_key.as_deref()).collect();
    let deliver_at: Vec<Option<chrono::DateTime<chrono::Utc>>> =
        messages.iter().map(|m| m.deliver_at).collect();
    let stmt = client.prepare_cached(INSERT_PENDING).await?;
    let rows = client
        .query(
            &stmt,
            &[
                &tenant.0,
                &ids,
                &queues,
                &bodies,
                &headers,
                &keys,
                &ordering,
                &deliver_at,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let status = r
                .get::<_, &str>(1)
                .parse()
                .unwrap_or(MessageStatus::Pending);
            (r.get(0), status)
        })
        .collect())
}

/// `$1` tenant's messages stored under the idempotency keys `$2`.
pub fn find_by_idempotency_keys_sql() -> String {
    format!(
        "SELECT {COLUMNS} FROM messages WHERE tenant_id = $1::uuid AND idempotency_key = ANY($2::text[])"
    )
}

/// The tenant's messages stored under these idempotency keys.
pub async fn find_by_idempotency_keys(
    client: &impl GenericClient,
    tenant: TenantId,
    keys: &[&str],
) -> Result<Vec<Message>> {
    let rows = client
        .query(&find_by_idempotency_keys_sql(), &[&tenant.0, &keys])
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// `pending -> queued` for messages the broker confirmed, each `(tenant, id)` pair scoped to
/// its tenant. Only from `pending`: a consumer may already have moved a message on.
pub async fn mark_queued(pool: &Pool, pairs: &[(TenantId, Uuid)]) -> Result<u64> {
    if pairs.is_empty() {
        return Ok(0);
    }
    let tenants: Vec<Uuid> = pairs.iter().map(|(t, _)| t.0).collect();
    let ids: Vec<Uuid> = pairs.iter().map(|(_, id)| *id).collect();
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            // Looked up id by id (LATERAL), so the plan never scans a tenant's other rows,
            // however many are pending; rows a consumer holds are skipped (it moves them on
            // itself), so publishing never waits on, or deadlocks with, a consumer.
            MARK_QUEUED,
        )
        .await?;
    Ok(client.execute(&stmt, &[&ids, &tenants]).await?)
}

/// `$1` tenant's message `$2`.
pub fn get_sql() -> String {
    format!("SELECT {COLUMNS} FROM messages WHERE tenant_id = $1::uuid AND id = $2::uuid")
}

pub async fn get(pool: &Pool, tenant: TenantId, id: MessageId) -> Result<Option<Message>> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(&get_sql()).await?;
    Ok(client
        .query_opt(&stmt, &[&tenant.0, &id.0])
        .await?
        .as_ref()
        .map(from_row))
}

#[derive(Clone, Debug, Default)]
pub struct MessageFilter {
    pub status: Option<MessageStatus>,
    pub queue_name: Option<String>,
}

/// Which of the list's optional conditions a statement has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListShape {
    pub status: bool,
    pub queue: bool,
    /// A cursor: the page after this id.
    pub after: bool,
}

impl ListShape {
    /// Every combination, for the plan test.
    pub fn all() -> impl Iterator<Item = ListShape> {
        (0..8).map(|b| ListShape {
            status: b & 1 != 0,
            queue: b & 2 != 0,
            after: b & 4 != 0,
        })
    }
}

/// The list statement of one shape: `$1` the tenant, then the status, queue and cursor that
/// are present, in that order, then the row limit. One text per combination, holding only the
/// conditions present: connections plan generically (`plan_cache_mode`), and a generic plan of
/// `($n IS NULL OR col = $n)` cannot use `col` in an index, so a late page or a status filter
/// read the tenant's rows from the top. Each shape reads one index range in order:
/// `messages_by_tenant`, `_status`, `_queue_id`, or `_queue` with both filters.
pub fn list_sql(shape: ListShape) -> String {
    let mut sql = format!("SELECT {COLUMNS} FROM messages WHERE tenant_id = $1::uuid");
    let mut n = 1;
    for (present, condition) in [
        (shape.status, "status = ${}::text"),
        (shape.queue, "queue_name = ${}::text"),
        (shape.after, "id < ${}::uuid"),
    ] {
        if present {
            n += 1;
            sql.push_str(" AND ");
            sql.push_str(&condition.replace("{}", &n.to_string()));
        }
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}::int8", n + 1));
    sql
}

/// The tenant's messages, newest first, filtered and keyset-paginated.
pub async fn list(
    pool: &Pool,
    tenant: TenantId,
    filter: &MessageFilter,
    page: &PageRequest,
) -> Result<Vec<Message>> {
    let status = filter.status.map(|s| s.as_str());
    let shape = ListShape {
        status: status.is_some(),
        queue: filter.queue_name.is_some(),
        after: page.after.is_some(),
    };
    let limit = page.fetch_limit();
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&tenant.0];
    if let Some(s) = &status {
        params.push(s);
    }
    if let Some(q) = &filter.queue_name {
        params.push(q);
    }
    if let Some(a) = &page.after {
        params.push(a);
    }
    params.push(&limit);
    let client = pool.get().await?;
    let stmt = client.prepare_cached(&list_sql(shape)).await?;
    let rows = client.query(&stmt, &params).await?;
    Ok(rows.iter().map(from_row).collect())
}

/// A message the relay must put back on the broker.
pub struct Unsettled {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub queue_name: String,
    pub body: serde_json::Value,
    pub headers: BTreeMap<String, String>,
}

/// SQL: the tenant queue named by these columns can be consumed: its tenant is active and not
/// at capacity 0, and the queue is not paused (`enabled: false` or `workers: 0`; a queue
/// without a config row takes the defaults, which consume).
fn consumable(tenant: &str, queue: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM tenants t WHERE t.id = {tenant} AND t.status = 'active')
         AND NOT EXISTS (SELECT 1 FROM consumer_configs cc
                         WHERE cc.tenant_id = {tenant} AND cc.queue_name = {queue}
                           AND (NOT cc.enabled OR cc.workers = 0))
         AND NOT EXISTS (SELECT 1 FROM tenant_capacity tc
                         WHERE tc.tenant_id = {tenant} AND tc.desired_concurrency = 0)"
    )
}

pub(crate) fn unsettled(r: &tokio_postgres::Row) -> Unsettled {
    Unsettled {
        id: r.get("id"),
        tenant_id: TenantId(r.get("tenant_id")),
        queue_name: r.get("queue_name"),
        body: r.get("body"),
        headers: serde_json::from_value(r.get("headers")).unwrap_or_default(),
    }
}

/// `$1` seconds stale, `$2` the limit; see [`relay_take_unsettled`].
pub fn relay_take_unsettled_sql() -> String {
    format!(
        "WITH taken AS (
                 SELECT m.id FROM messages m
                 WHERE m.status IN ('pending', 'retrying', 'processing')
                   AND m.updated_at < now() - make_interval(secs => $1)
                   AND ((m.status = 'pending'
                         AND (m.relayed_at IS NULL OR m.relayed_at < now() - make_interval(secs => $1)))
                        OR (m.relayed_attempt IS DISTINCT FROM m.total_attempts
                            AND ((m.status = 'retrying' AND m.next_attempt_at < now() - make_interval(secs => $1))
                                 OR (m.status = 'processing' AND m.locked_until < now() - make_interval(secs => $1)))
                            AND {consumable}))
                 ORDER BY m.updated_at
                 LIMIT $2
                 FOR UPDATE OF m SKIP LOCKED)
             UPDATE messages SET relayed_at = now(), relayed_attempt = total_attempts
             FROM taken WHERE messages.id = taken.id
             RETURNING messages.id, messages.tenant_id, messages.queue_name, messages.body,
                 messages.headers",
        consumable = consumable("m.tenant_id", "m.queue_name"),
    )
}

/// System-wide (relay only): takes up to `limit` messages that should be on the broker but may
/// not be, and records that the relay is putting a copy there (`relayed_at`,
/// `relayed_attempt`), in one statement, so no lock is held while the broker is asked:
///
/// - `pending` ones never confirmed, again every `stale_after` until one is;
/// - `retrying` ones long past their due time (their wait-queue copy was lost) and
///   `processing` ones whose worker's lease ran out long ago: once per attempt (another copy
///   only after a consumer claimed the message again), and only while the queue can be
///   consumed: not paused (`enabled: false` or `workers: 0`), its tenant active and not at
///   capacity 0. A paused queue's copies wait on the broker for it; adding more would only
///   multiply them.
///
/// `updated_at` is not touched: it is the time of the message's last change of status.
pub async fn relay_take_unsettled(
    pool: &Pool,
    stale_after: std::time::Duration,
    limit: i64,
) -> Result<Vec<Unsettled>> {
    let client = pool.get().await?;
    let sql = relay_take_unsettled_sql();
    let rows = client
        .query(&sql, &[&stale_after.as_secs_f64(), &limit])
        .await?;
    Ok(rows.iter().map(unsettled).collect())
}

/// `$1` seconds old, `$2` the limit; see [`relay_queues_with_old_queued`].
pub fn relay_queues_with_old_queued_sql() -> String {
    format!(
        "SELECT c.tenant_id, c.queue_name FROM consumer_configs c
             WHERE {consumable}
               AND EXISTS (SELECT 1 FROM messages m
                           WHERE m.tenant_id = c.tenant_id AND m.queue_name = c.queue_name
                             AND m.status IN ('pending', 'queued', 'retrying')
                             AND m.created_at < now() - make_interval(secs => $1)
                             AND m.status = 'queued'
                             AND m.queued_at < now() - make_interval(secs => $1)
                             AND m.relayed_attempt IS DISTINCT FROM m.total_attempts)
             LIMIT $2",
        consumable = consumable("c.tenant_id", "c.queue_name"),
    )
}

/// Consumable queues (tenant active, not at capacity 0, queue enabled with workers) holding
/// `queued` messages older than `lost_after` that the relay has not copied for their current
/// attempt: up to `limit` of them. Whether their copies are lost is the broker's to say.
pub async fn relay_queues_with_old_queued(
    pool: &Pool,
    lost_after: std::time::Duration,
    limit: i64,
) -> Result<Vec<(TenantId, String)>> {
    let client = pool.get().await?;
    let sql = relay_queues_with_old_queued_sql();
    let rows = client
        .query(&sql, &[&lost_after.as_secs_f64(), &limit])
        .await?;
    Ok(rows
        .iter()
        .map(|r| (TenantId(r.get(0)), r.get(1)))
        .collect())
}

/// `$1` tenant, `$2` queue, `$3` seconds old, `$4` the limit; see [`relay_take_lost`].
pub const RELAY_TAKE_LOST: &str = "WITH taken AS (
                 SELECT id FROM messages
                 WHERE tenant_id = $1 AND queue_name = $2
                   AND status IN ('pending', 'queued', 'retrying')
                   AND created_at < now() - make_interval(secs => $3)
                   AND status = 'queued' AND queued_at < now() - make_interval(secs => $3)
                   AND relayed_attempt IS DISTINCT FROM total_attempts
                 ORDER BY created_at LIMIT $4
                 FOR UPDATE SKIP LOCKED)
             UPDATE messages SET relayed_at = now(), relayed_attempt = total_attempts
             FROM taken WHERE messages.id = taken.id
             RETURNING messages.id, messages.tenant_id, messages.queue_name, messages.body,
                 messages.headers";

/// Takes up to `limit` of the queue's `queued` messages older than `lost_after` that have no
/// relay copy for their current attempt, recording the copy about to be made (see
/// [`relay_take_unsettled`]). The status list and `created_at` bound here and in
/// [`relay_queues_with_old_queued`] are those of the `messages_waiting` index, so both read it.
pub async fn relay_take_lost(
    pool: &Pool,
    tenant: TenantId,
    queue: &str,
    lost_after: std::time::Duration,
    limit: i64,
) -> Result<Vec<Unsettled>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            RELAY_TAKE_LOST,
            &[&tenant.0, &queue, &lost_after.as_secs_f64(), &limit],
        )
        .await?;
    Ok(rows.iter().map(unsettled).collect())
}

/// `$1` the ids; see [`relay_mark_republished`].
pub const RELAY_MARK_REPUBLISHED: &str = "UPDATE messages SET
                 queued_at = CASE WHEN status = 'pending' THEN now() ELSE queued_at END,
                 next_attempt_at = CASE WHEN status = 'retrying' THEN now() ELSE next_attempt_at END,
                 updated_at = CASE WHEN status = 'pending' THEN now() ELSE updated_at END,
                 status = CASE WHEN status = 'pending' THEN 'queued' ELSE status END
             WHERE id = ANY($1)";

/// System-wide (relay only): the broker confirmed these copies. A `pending` message is now
/// `queued`; a `retrying` one is due now (its copy is on the work queue, not a wait queue).
pub async fn relay_mark_republished(pool: &Pool, ids: &[Uuid]) -> Result<()> {
    let client = pool.get().await?;
    client.execute(RELAY_MARK_REPUBLISHED, &[&ids]).await?;
    Ok(())
}

/// `$1` the ids; see [`relay_forget`].
pub const RELAY_FORGET: &str = "UPDATE messages SET relayed_at = NULL, relayed_attempt = NULL
             WHERE id = ANY($1) AND relayed_attempt = total_attempts";

/// System-wide (relay only): the broker did not confirm these copies; the next sweep tries
/// them again (unless a consumer moved them on meanwhile).
pub async fn relay_forget(pool: &Pool, ids: &[Uuid]) -> Result<()> {
    let client = pool.get().await?;
    client.execute(RELAY_FORGET, &[&ids]).await?;
    Ok(())
}

/// The redrive statement for a selector: `$1` the tenant, then the queue and the ids when
/// present, then the limit. One text per selector, as [`list_sql`] and for the same reason: the
/// ids are looked up by key, a queue's dead letters read from `messages_by_tenant_queue`.
pub fn reset_dead_letters_sql(queue: bool, ids: bool) -> String {
    let mut conditions = String::new();
    let mut n = 1;
    if queue {
        n += 1;
        conditions.push_str(&format!(" AND queue_name = ${n}::text"));
    }
    if ids {
        n += 1;
        conditions.push_str(&format!(" AND id = ANY(${n}::uuid[])"));
    }
    format!(
        "UPDATE messages SET status = 'pending', attempts = 0, next_attempt_at = NULL,
             locked_until = NULL, dead_lettered_at = NULL, updated_at = now()
         WHERE id IN (
             SELECT id FROM messages
             WHERE tenant_id = $1::uuid AND status = 'dead_lettered'{conditions}
             ORDER BY id LIMIT ${}::int8 FOR UPDATE SKIP LOCKED)
         RETURNING id, queue_name, body, headers, ordering_key",
        n + 1
    )
}

/// Moves up to `limit` of the tenant's dead letters (optionally of one queue, or these ids)
/// back to `pending` with a fresh attempt budget; returns them, ready to publish.
pub async fn reset_dead_letters(
    pool: &Pool,
    tenant: TenantId,
    queue: Option<&str>,
    ids: Option<&[Uuid]>,
    limit: i64,
) -> Result<Vec<NewMessage>> {
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&tenant.0];
    if let Some(q) = &queue {
        params.push(q);
    }
    if let Some(i) = &ids {
        params.push(i);
    }
    params.push(&limit);
    let sql = reset_dead_letters_sql(queue.is_some(), ids.is_some());
    let client = pool.get().await?;
    let rows = client.query(&sql, &params).await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let body: serde_json::Value = r.get("body");
            Some(NewMessage {
                id: MessageId(r.get("id")),
                queue_name: crate::domain::QueueName::parse(r.get("queue_name")).ok()?,
                body_bytes: serde_json::to_vec(&body).ok()?,
                body,
                headers: serde_json::from_value(r.get("headers")).unwrap_or_default(),
                idempotency_key: None,
                ordering_key: r.get("ordering_key"),
                deliver_at: None,
            })
        })
        .collect())
}

/// A message this worker now owns for one attempt.
pub struct Claimed {
    pub id: Uuid,
    /// Attempts within the current budget, this one included.
    pub attempts: i32,
    /// The fencing token: settling succeeds only while the row still carries it.
    pub total_attempts: i32,
    pub body: serde_json::Value,
    pub headers: BTreeMap<String, String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub ordering_key: Option<String>,
}

/// Claims the messages that may run now, by compare-and-set: `pending`/`queued`, `retrying`
/// that is due, or `processing` whose lease ran out (its worker died). Completed and
/// dead-lettered messages, and ones another worker holds, are left alone, and so is a keyed
/// message while another of its key runs or an earlier one is unsettled (or dead-lettered,
/// when `dead_letter_blocks`). Also records the attempt, and closes an abandoned one.
pub async fn claim(
    pool: &Pool,
    tenant: TenantId,
    queue: &str,
    ids: &[Uuid],
    lease: std::time::Duration,
    dead_letter_blocks: bool,
) -> Result<Vec<Claimed>> {
    let client = pool.get().await?;
    // One statement, so one round trip and one commit: the claim is taken when a worker is
    // about to start, once per freed worker slot.
    let claim = client
        .prepare_cached(
            // Rows are locked id by id in id order (one lock order for every writer), and
            // looked up by primary key (LATERAL), so a large backlog is never scanned.
            CLAIM,
        )
        .await?;
    let rows = client
        .query(
            &claim,
            &[
                &tenant.0,
                &queue,
                &ids,
                &lease.as_secs_f64(),
                &dead_letter_blocks,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Claimed {
            id: r.get("id"),
            attempts: r.get("attempts"),
            total_attempts: r.get("total_attempts"),
            body: r.get("body"),
            headers: serde_json::from_value(r.get("headers")).unwrap_or_default(),
            created_at: r.get("created_at"),
            ordering_key: r.get("ordering_key"),
        })
        .collect())
}

/// How an unclaimed message stands, so the consumer can tell a duplicate from one that is busy.
pub struct Standing {
    pub id: Uuid,
    pub status: MessageStatus,
    pub locked_until: Option<chrono::DateTime<chrono::Utc>>,
    pub queue_name: String,
    pub next_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
    pub ordering_key: Option<String>,
    pub ordering_seq: Option<i64>,
}

impl Standing {
    /// Whether the claim could have taken it but for an earlier message of its key.
    pub fn claimable(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        match self.status {
            MessageStatus::Pending | MessageStatus::Queued => true,
            MessageStatus::Retrying => self
                .next_attempt_at
                .is_some_and(|t| t <= now + chrono::Duration::seconds(1)),
            MessageStatus::Processing => self.locked_until.is_some_and(|t| t < now),
            _ => false,
        }
    }
}

/// How `$1` tenant's messages `$2` stand; see [`standing`].
pub const STANDING: &str =
    "SELECT id, status, locked_until, queue_name, next_attempt_at, ordering_key,
            ordering_seq
     FROM messages WHERE tenant_id = $1::uuid AND id = ANY($2::uuid[])";

pub async fn standing(pool: &Pool, tenant: TenantId, ids: &[Uuid]) -> Result<Vec<Standing>> {
    let client = pool.get().await?;
    let rows = client.query(STANDING, &[&tenant.0, &ids]).await?;
    Ok(rows
        .iter()
        .map(|r| Standing {
            id: r.get("id"),
            status: r
                .get::<_, &str>("status")
                .parse()
                .unwrap_or(MessageStatus::Pending),
            locked_until: r.get("locked_until"),
            queue_name: r.get("queue_name"),
            next_attempt_at: r.get("next_attempt_at"),
            ordering_key: r.get("ordering_key"),
            ordering_seq: r.get("ordering_seq"),
        })
        .collect())
}

/// How an attempt ended.
pub enum Settlement<'a> {
    Completed,
    Retrying {
        error: &'a str,
        delay: std::time::Duration,
    },
    DeadLettered {
        error: &'a str,
    },
}

/// What an attempt record keeps besides its outcome and error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttemptRecord {
    /// The endpoint's HTTP status; `None` without an answer (transport error, not HTTP).
    pub http_status: Option<i16>,
    /// How long the processor ran.
    pub duration_ms: i32,
    /// The first bytes of the answer's body, already bounded.
    pub response_excerpt: Option<String>,
}

/// One attempt to complete: its message, scoped to the tenant, and the attempt's fencing token.
#[derive(Clone, Debug)]
pub struct Completion {
    pub tenant: TenantId,
    pub id: Uuid,
    pub total_attempts: i32,
    pub record: AttemptRecord,
}

/// Settles `$1` tenant's message `$2`, attempt `$3`, as `$4` (`completed`, `retrying` with
/// error `$5` and a delay of `$6` seconds, or `dead_lettered` with error `$5`), recording the
/// attempt's `($7 HTTP status, $8 duration in ms, $9 response excerpt)`; see [`settle`].
pub const SETTLE: &str = "WITH m AS (
                 UPDATE messages SET status = $4::text, updated_at = now(), locked_until = NULL,
                     last_error = CASE WHEN $4 = 'completed' THEN last_error ELSE $5::text END,
                     next_attempt_at = CASE WHEN $4 = 'retrying'
                         THEN now() + make_interval(secs => $6::float8) ELSE NULL END,
                     completed_at = CASE WHEN $4 = 'completed' THEN now() ELSE completed_at END,
                     dead_lettered_at = CASE WHEN $4 = 'dead_lettered' THEN now() ELSE dead_lettered_at END
                 WHERE tenant_id = $1::uuid AND id = $2::uuid AND status = 'processing' AND total_attempts = $3::int
                 RETURNING id)
             UPDATE message_attempts SET finished_at = now(), outcome = $4, error = $5,
                 http_status = $7::int2, duration_ms = $8::int, response_excerpt = $9::text
             WHERE message_id IN (SELECT id FROM m) AND attempt = $3
             RETURNING 1";

/// Records the attempt's outcome, only if the row still carries this attempt's fencing token.
/// Returns false when another worker took the message over meanwhile.
pub async fn settle(
    pool: &Pool,
    tenant: TenantId,
    id: Uuid,
    total_attempts: i32,
    settlement: &Settlement<'_>,
    record: &AttemptRecord,
) -> Result<bool> {
    let (status, error, delay_secs) = match settlement {
        Settlement::Completed => ("completed", None, None),
        Settlement::Retrying { error, delay } => {
            ("retrying", Some(*error), Some(delay.as_secs_f64()))
        }
        Settlement::DeadLettered { error } => ("dead_lettered", Some(*error), None),
    };
    let client = pool.get().await?;
    let stmt = client.prepare_cached(SETTLE).await?;
    let rows = client
        .query(
            &stmt,
            &[
                &tenant.0,
                &id,
                &total_attempts,
                &status,
                &error,
                &delay_secs,
                &record.http_status,
                &record.duration_ms,
                &record.response_excerpt,
            ],
        )
        .await?;
    Ok(!rows.is_empty())
}

/// `processing -> completed` for many attempts at once, each only if its row still carries the
/// attempt's fencing token, recording each attempt's record. Returns the ids settled.
pub async fn complete_many(
    pool: &Pool,
    items: &[Completion],
) -> Result<std::collections::HashSet<Uuid>> {
    let ids: Vec<Uuid> = items.iter().map(|c| c.id).collect();
    let tenants: Vec<Uuid> = items.iter().map(|c| c.tenant.0).collect();
    let numbers: Vec<i32> = items.iter().map(|c| c.total_attempts).collect();
    let statuses: Vec<Option<i16>> = items.iter().map(|c| c.record.http_status).collect();
    let durations: Vec<i32> = items.iter().map(|c| c.record.duration_ms).collect();
    let excerpts: Vec<Option<&str>> = items
        .iter()
        .map(|c| c.record.response_excerpt.as_deref())
        .collect();
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            // Rows are locked in id order, like every other writer's.
            COMPLETE,
        )
        .await?;
    let rows = client
        .query(
            &stmt,
            &[&ids, &tenants, &numbers, &statuses, &durations, &excerpts],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
