//! The outbox relay: puts back on the broker every accepted message that is not safely there
//! (see `db::messages::relay_lock_unsettled`). Runs as a background task outside Lambda and as
//! a scheduled job in AWS. Republishing may duplicate a message; consumers are idempotent.

use std::collections::BTreeMap;

use crate::{
    AppContext,
    broker::{Outbound, QueueRef, work_queue},
    db,
    domain::QueueName,
    error::Result,
    messages::broker_headers,
    metrics as m,
};

#[derive(Debug, Default, PartialEq, Eq)]
pub struct RelayReport {
    pub republished: usize,
    pub failed: usize,
}

/// One sweep.
pub async fn run_once(ctx: &AppContext) -> Result<RelayReport> {
    let cfg = &ctx.config.relay;
    let mut client = ctx.db.get().await?;
    let tx = client.transaction().await?;
    let stale = db::messages::relay_lock_unsettled(&tx, cfg.stale_after, cfg.batch).await?;
    metrics::counter!(m::RELAY_SWEEPS).increment(1);
    let republished = metrics::counter!(m::RELAY_REPUBLISHED);
    if stale.is_empty() {
        return Ok(RelayReport::default());
    }

    // Group by tenant queue: declare each once, then publish its messages pipelined.
    let mut by_queue: BTreeMap<QueueRef, Vec<&db::messages::Unsettled>> = BTreeMap::new();
    for msg in &stale {
        if let Ok(q) = QueueName::parse(&msg.queue_name) {
            by_queue
                .entry(QueueRef::new(msg.tenant_id, q))
                .or_default()
                .push(msg);
        }
    }
    let mut done = Vec::new();
    let mut failed = 0;
    for (q, msgs) in &by_queue {
        if let Err(e) = ctx.broker.ensure_queue(q).await {
            tracing::warn!(error = %e, "relay cannot declare queue; will retry");
            failed += msgs.len();
            continue;
        }
        let queue = work_queue(q);
        let tenant = q.tenant_id.to_string();
        let bodies: Vec<Vec<u8>> = msgs
            .iter()
            .map(|m| serde_json::to_vec(&m.body).unwrap_or_default())
            .collect();
        let outbound: Vec<Outbound> = msgs
            .iter()
            .zip(&bodies)
            .map(|(msg, body)| Outbound {
                queue: &queue,
                message_id: msg.id.to_string(),
                body,
                headers: broker_headers(&tenant, q.queue_name.as_str(), &msg.headers),
                expiration_ms: None,
            })
            .collect();
        for (msg, result) in msgs
            .iter()
            .zip(ctx.broker.publish_confirmed(&outbound).await)
        {
            match result {
                Ok(()) => done.push(msg.id),
                Err(_) => failed += 1,
            }
        }
    }
    db::messages::relay_mark_republished(&tx, &done).await?;
    tx.commit().await?;
    republished.increment(done.len() as u64);
    if !done.is_empty() || failed > 0 {
        tracing::info!(republished = done.len(), failed, "outbox relay sweep");
    }
    Ok(RelayReport {
        republished: done.len(),
        failed,
    })
}

/// Runs the relay every `RELAY_INTERVAL` until the task is dropped.
pub fn spawn(ctx: AppContext) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ctx.config.relay.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = run_once(&ctx).await {
                tracing::warn!(error = %e, "outbox relay sweep failed; will retry");
            }
        }
    })
}
