//! Per-queue figures derived from PostgreSQL for the status API and the metrics: messages by
//! status (completed ones excepted: they only grow), the oldest waiting message, and recent
//! attempts by outcome. `tenant: None` is the admin view over every tenant.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::Pool;
use crate::{domain::TenantId, error::Result};

pub type Key = (TenantId, String);

#[derive(Clone, Debug, Default)]
pub struct QueueFigures {
    pub by_status: HashMap<String, i64>,
    pub oldest_waiting: Option<DateTime<Utc>>,
    pub recent: HashMap<String, i64>,
    pub last_error: Option<(DateTime<Utc>, String)>,
}

pub async fn figures(
    pool: &Pool,
    tenant: Option<TenantId>,
    window_secs: f64,
) -> Result<HashMap<Key, QueueFigures>> {
    let client = pool.get().await?;
    let t = tenant.map(|t| t.0);
    let mut out: HashMap<Key, QueueFigures> = HashMap::new();
    let counts = client
        .query(
            "SELECT tenant_id, queue_name, status, count(*) AS n FROM messages
             WHERE ($1::uuid IS NULL OR tenant_id = $1) AND status <> 'completed'
             GROUP BY 1, 2, 3",
            &[&t],
        )
        .await?;
    for r in &counts {
        let e = out.entry((TenantId(r.get(0)), r.get(1))).or_default();
        e.by_status.insert(r.get(2), r.get(3));
    }
    let oldest = client
        .query(
            "SELECT tenant_id, queue_name, min(created_at) FROM messages
             WHERE ($1::uuid IS NULL OR tenant_id = $1) AND status IN ('pending', 'queued', 'retrying')
             GROUP BY 1, 2",
            &[&t],
        )
        .await?;
    for r in &oldest {
        out.entry((TenantId(r.get(0)), r.get(1)))
            .or_default()
            .oldest_waiting = r.get(2);
    }
    let recent = client
        .query(
            "SELECT tenant_id, queue_name, outcome, count(*) FROM message_attempts
             WHERE ($1::uuid IS NULL OR tenant_id = $1)
               AND finished_at > now() - make_interval(secs => $2)
             GROUP BY 1, 2, 3",
            &[&t, &window_secs],
        )
        .await?;
    for r in &recent {
        let outcome: Option<String> = r.get(2);
        out.entry((TenantId(r.get(0)), r.get(1)))
            .or_default()
            .recent
            .insert(outcome.unwrap_or_default(), r.get(3));
    }
    let errors = client
        .query(
            "SELECT DISTINCT ON (tenant_id, queue_name) tenant_id, queue_name, finished_at, error
             FROM message_attempts
             WHERE ($1::uuid IS NULL OR tenant_id = $1) AND error IS NOT NULL
               AND finished_at > now() - interval '7 days'
             ORDER BY tenant_id, queue_name, finished_at DESC",
            &[&t],
        )
        .await?;
    for r in &errors {
        out.entry((TenantId(r.get(0)), r.get(1)))
            .or_default()
            .last_error = Some((r.get(2), r.get(3)));
    }
    Ok(out)
}

/// Age in seconds of each queue's oldest waiting message, over every tenant (metrics).
pub async fn oldest_waiting_ages(pool: &Pool) -> Result<HashMap<Key, f64>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT tenant_id, queue_name, extract(epoch FROM now() - min(created_at))::float8
             FROM messages WHERE status IN ('pending', 'queued', 'retrying') GROUP BY 1, 2",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ((TenantId(r.get(0)), r.get(1)), r.get(2)))
        .collect())
}
