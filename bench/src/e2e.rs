//! End-to-end figures from PostgreSQL's own timestamps: a message's latency is its
//! `completed_at - created_at`, both set by the database clock.

use std::time::{Duration, Instant};

use shared::{db::Pool, domain::TenantId};

pub struct Completion {
    pub completed: usize,
    pub total: usize,
    pub latencies: Vec<Duration>,
    /// From the first attempt's start to the last completion.
    pub span: Duration,
}

/// Every message of the tenant queue, with the latency of the completed ones, oldest first.
pub async fn completion(pool: &Pool, tenant: TenantId, queue: &str) -> anyhow::Result<Completion> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT status, extract(epoch FROM completed_at - created_at)::float8
             FROM messages WHERE tenant_id = $1 AND queue_name = $2 ORDER BY created_at, id",
            &[&tenant.0, &queue],
        )
        .await?;
    let latencies: Vec<Duration> = rows
        .iter()
        .filter(|r| r.get::<_, &str>(0) == "completed")
        .map(|r| Duration::from_secs_f64(r.get::<_, f64>(1).max(0.0)))
        .collect();
    let span_row = client
        .query_one(
            "SELECT extract(epoch FROM max(m.completed_at) - min(a.started_at))::float8
             FROM messages m JOIN message_attempts a ON a.message_id = m.id
             WHERE m.tenant_id = $1 AND m.queue_name = $2",
            &[&tenant.0, &queue],
        )
        .await?;
    Ok(Completion {
        completed: latencies.len(),
        total: rows.len(),
        latencies,
        span: Duration::from_secs_f64(span_row.get::<_, Option<f64>>(0).unwrap_or(0.0).max(0.0)),
    })
}

/// Waits until `expected` messages of the queue completed.
pub async fn wait_completed(
    pool: &Pool,
    tenant: TenantId,
    queue: &str,
    expected: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let client = pool.get().await?;
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM messages WHERE tenant_id = $1 AND queue_name = $2 AND status = 'completed'",
                &[&tenant.0, &queue],
            )
            .await?
            .get(0);
        if n as usize >= expected {
            return Ok(());
        }
        anyhow::ensure!(
            start.elapsed() < timeout,
            "{n} of {expected} completed after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
