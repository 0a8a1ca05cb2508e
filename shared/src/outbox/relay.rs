//! The relay: puts back on the broker every accepted message that is not safely there
//! (see `db::messages::relay_take_unsettled`), at most one copy per attempt and none for a
//! queue that cannot be consumed. Runs as a background task outside Lambda and as a scheduled
//! job in AWS. Republishing may duplicate a message; consumers are idempotent. No database
//! lock or transaction is held while the broker is asked, and the broker is given
//! `RELAY_PUBLISH_TIMEOUT` at most: a broker that stops confirming (a memory or disk alarm)
//! delays the relay, never the claims and publishes that share its rows.

use super::Envelope;
use crate::{
    AppContext, broker::QueueRef, db, domain::QueueName, error::Result, observability::metrics as m,
};

#[derive(Debug, Default, PartialEq, Eq)]
pub struct RelayReport {
    pub republished: usize,
    pub failed: usize,
}

/// One sweep.
pub async fn run_once(ctx: &AppContext) -> Result<RelayReport> {
    let cfg = &ctx.config.relay;
    let stale = db::messages::relay_take_unsettled(&ctx.db, cfg.stale_after, cfg.batch).await?;
    metrics::counter!(m::RELAY_SWEEPS).increment(1);
    let republished = metrics::counter!(m::RELAY_REPUBLISHED);
    if stale.is_empty() {
        return Ok(RelayReport::default());
    }

    let bodies: Vec<Vec<u8>> = stale
        .iter()
        .map(|m| serde_json::to_vec(&m.body).unwrap_or_default())
        .collect();
    let envelopes: Vec<Envelope> = stale
        .iter()
        .zip(&bodies)
        .filter_map(|(msg, body)| {
            let queue = QueueName::parse(&msg.queue_name).ok()?;
            Some(Envelope {
                id: msg.id,
                queue: QueueRef::new(msg.tenant_id, queue),
                body,
                headers: &msg.headers,
            })
        })
        .collect();
    let done = tokio::time::timeout(cfg.publish_timeout, super::publish(ctx, &envelopes))
        .await
        .unwrap_or_else(|_| {
            tracing::warn!(timeout = ?cfg.publish_timeout, "the broker did not confirm in time");
            Vec::new()
        });
    let failed = envelopes.len() - done.len();
    db::messages::relay_mark_republished(&ctx.db, &done).await?;
    if failed > 0 {
        let unconfirmed: Vec<_> = stale
            .iter()
            .map(|m| m.id)
            .filter(|id| !done.contains(id))
            .collect();
        db::messages::relay_forget(&ctx.db, &unconfirmed).await?;
    }
    republished.increment(done.len() as u64);
    if !done.is_empty() || failed > 0 {
        tracing::info!(republished = done.len(), failed, "outbox relay sweep");
    }
    Ok(RelayReport {
        republished: done.len(),
        failed,
    })
}

/// The maintenance tick: one relay sweep, and planner statistics for young tables (see
/// `db::statistics`). The relay's schedule runs it in AWS, [`spawn`] outside Lambda.
pub async fn tick(ctx: &AppContext) -> Result<RelayReport> {
    if let Err(e) = db::statistics::refresh(&ctx.db).await {
        tracing::warn!(error = %e, "planner statistics not refreshed");
    }
    run_once(ctx).await
}

/// Runs the maintenance tick every `RELAY_INTERVAL` until the task is dropped.
pub fn spawn(ctx: AppContext) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(ctx.config.relay.interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(e) = tick(&ctx).await {
                tracing::warn!(error = %e, "outbox relay sweep failed; will retry");
            }
        }
    })
}
