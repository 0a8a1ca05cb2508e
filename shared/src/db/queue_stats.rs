//! Per-queue figures derived from PostgreSQL for the status API and the metrics: messages by
//! status (completed ones excepted: they only grow), the oldest waiting message, and recent
//! attempts by outcome. `tenant: None` is the admin view over every tenant.
//!
//! Each figure is read per queue (a `LATERAL` over the queue's consumer config: every queue a
//! message was published to has one) from a short index range, so its cost follows the number
//! of queues and their backlogs, never the size of the tables: the backlog statuses from
//! `messages_by_tenant_queue`, the oldest waiting message from `messages_waiting`, recent
//! attempts from `message_attempts_recent`, the last error from `message_attempts_errors`, and
//! dead letters (which stay until redriven or expired) from the counters kept by a trigger
//! (`queue_dead_letters`, migration V13).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{Pool, TenantScope, condition};
use crate::{domain::TenantId, error::Result};

pub type Key = (TenantId, String);

#[derive(Clone, Debug, Default)]
pub struct QueueFigures {
    pub by_status: HashMap<String, i64>,
    pub oldest_waiting: Option<DateTime<Utc>>,
    pub recent: HashMap<String, i64>,
    pub last_error: Option<(DateTime<Utc>, String)>,
}

/// Messages by status per queue: the backlog's statuses counted, dead letters from their
/// counters. `scoped`: `$1` is the tenant; else every tenant's queues.
pub fn by_status_sql(scoped: bool) -> String {
    format!(
        "SELECT c.tenant_id, c.queue_name, m.status, m.n FROM consumer_configs c
         CROSS JOIN LATERAL (
             SELECT status, count(*) AS n FROM messages
             WHERE tenant_id = c.tenant_id AND queue_name = c.queue_name
               AND status IN ('pending', 'queued', 'processing', 'retrying')
             GROUP BY status) m{c}
         UNION ALL
         SELECT tenant_id, queue_name, 'dead_lettered', count FROM queue_dead_letters
         WHERE count > 0{d}",
        c = condition(scoped, "WHERE", "c.tenant_id"),
        d = condition(scoped, "AND", "tenant_id"),
    )
}

/// The oldest waiting message's creation time per queue.
pub fn oldest_waiting_sql(scoped: bool) -> String {
    format!(
        "SELECT c.tenant_id, c.queue_name, o.created_at FROM consumer_configs c
         CROSS JOIN LATERAL (
             SELECT created_at FROM messages
             WHERE tenant_id = c.tenant_id AND queue_name = c.queue_name
               AND status IN ('pending', 'queued', 'retrying')
             ORDER BY created_at LIMIT 1) o{}",
        condition(scoped, "WHERE", "c.tenant_id"),
    )
}

/// Attempts finished in the last `$1` seconds (`$2` when scoped) per queue, by outcome.
pub fn recent_sql(scoped: bool) -> String {
    format!(
        "SELECT c.tenant_id, c.queue_name, r.outcome, r.n FROM consumer_configs c
         CROSS JOIN LATERAL (
             SELECT outcome, count(*) AS n FROM message_attempts
             WHERE tenant_id = c.tenant_id AND queue_name = c.queue_name
               AND finished_at > now() - make_interval(secs => ${}::float8)
             GROUP BY outcome) r{}",
        if scoped { 2 } else { 1 },
        condition(scoped, "WHERE", "c.tenant_id"),
    )
}

/// The latest error of the last 7 days per queue.
pub fn last_error_sql(scoped: bool) -> String {
    format!(
        "SELECT c.tenant_id, c.queue_name, e.finished_at, e.error FROM consumer_configs c
         CROSS JOIN LATERAL (
             SELECT finished_at, error FROM message_attempts
             WHERE tenant_id = c.tenant_id AND queue_name = c.queue_name
               AND error IS NOT NULL AND finished_at > now() - interval '7 days'
             ORDER BY finished_at DESC LIMIT 1) e{}",
        condition(scoped, "WHERE", "c.tenant_id"),
    )
}

pub async fn figures(
    pool: &Pool,
    tenant: Option<TenantId>,
    window_secs: f64,
) -> Result<HashMap<Key, QueueFigures>> {
    let scope = TenantScope::new(tenant);
    let scoped = tenant.is_some();
    let params = scope.params();
    let mut recent_params = params.clone();
    recent_params.push(&window_secs);
    let client = pool.get().await?;
    let (by_status, oldest, recent, errors) = (
        client.prepare_cached(&by_status_sql(scoped)).await?,
        client.prepare_cached(&oldest_waiting_sql(scoped)).await?,
        client.prepare_cached(&recent_sql(scoped)).await?,
        client.prepare_cached(&last_error_sql(scoped)).await?,
    );
    let mut out: HashMap<Key, QueueFigures> = HashMap::new();
    for r in client.query(&by_status, &params).await? {
        let e = out.entry((TenantId(r.get(0)), r.get(1))).or_default();
        e.by_status.insert(r.get(2), r.get(3));
    }
    for r in client.query(&oldest, &params).await? {
        out.entry((TenantId(r.get(0)), r.get(1)))
            .or_default()
            .oldest_waiting = r.get(2);
    }
    for r in client.query(&recent, &recent_params).await? {
        let outcome: Option<String> = r.get(2);
        out.entry((TenantId(r.get(0)), r.get(1)))
            .or_default()
            .recent
            .insert(outcome.unwrap_or_default(), r.get(3));
    }
    for r in client.query(&errors, &params).await? {
        out.entry((TenantId(r.get(0)), r.get(1)))
            .or_default()
            .last_error = Some((r.get(2), r.get(3)));
    }
    Ok(out)
}

/// Age in seconds of each queue's oldest waiting message, over every tenant (metrics).
pub async fn oldest_waiting_ages(pool: &Pool) -> Result<HashMap<Key, f64>> {
    let client = pool.get().await?;
    // Ages by the database's clock, as `created_at` is.
    let sql = format!(
        "SELECT tenant_id, queue_name, extract(epoch FROM now() - created_at)::float8
         FROM ({}) o",
        oldest_waiting_sql(false)
    );
    let rows = client.query(&sql, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| ((TenantId(r.get(0)), r.get(1)), r.get(2)))
        .collect())
}
