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

/// Release batches per tick at most (`RELAY_BATCH` messages each); what is left goes in the
/// next tick, so one tick never holds the schedule for long.
const RELEASE_BATCHES: usize = 10;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct RelayReport {
    pub republished: usize,
    pub failed: usize,
}

/// One sweep: scheduled messages that came due ([`release_due`]), unsettled messages (see
/// `db::messages::relay_take_unsettled`), then `queued` ones whose copies the broker no longer
/// holds ([`recover_lost`]).
pub async fn run_once(ctx: &AppContext) -> Result<RelayReport> {
    let cfg = &ctx.config.relay;
    metrics::counter!(m::RELAY_SWEEPS).increment(1);
    let mut report = release_due(ctx).await?;
    let stale = db::messages::relay_take_unsettled(&ctx.db, cfg.stale_after, cfg.batch).await?;
    let unsettled = republish(ctx, &stale).await?;
    report.republished += unsettled.republished;
    report.failed += unsettled.failed;
    let lost = recover_lost(ctx).await?;
    report.republished += lost.republished;
    report.failed += lost.failed;
    // Counted every sweep, so the series exists from the first one.
    metrics::counter!(m::RELAY_REPUBLISHED).increment(report.republished as u64);
    if report != RelayReport::default() {
        tracing::info!(
            republished = report.republished,
            failed = report.failed,
            "outbox relay sweep"
        );
    }
    Ok(report)
}

/// Scheduled messages that came due go to `pending` and onto their work queues like a fresh
/// publish: `RELAY_BATCH` at a time, [`RELEASE_BATCHES`] batches at most, the rest in the next
/// tick. One the broker does not confirm stays `pending`, which the unsettled sweep
/// republishes after `RELAY_STALE_AFTER`.
async fn release_due(ctx: &AppContext) -> Result<RelayReport> {
    let cfg = &ctx.config.relay;
    let mut report = RelayReport::default();
    let mut released = 0;
    for _ in 0..RELEASE_BATCHES {
        let due = db::schedule::release_due(&ctx.db, cfg.batch).await?;
        released += due.len();
        let r = republish(ctx, &due).await?;
        report.republished += r.republished;
        report.failed += r.failed;
        if (due.len() as i64) < cfg.batch || r.failed > 0 {
            break;
        }
    }
    metrics::counter!(m::SCHEDULED_RELEASED).increment(released as u64);
    match db::schedule::count(&ctx.db).await {
        Ok(scheduled) => metrics::gauge!(m::MESSAGES_SCHEDULED).set(scheduled as f64),
        Err(e) => tracing::warn!(error = %e, "cannot count scheduled messages"),
    }
    if released > 0 {
        tracing::info!(released, "scheduled messages came due");
    }
    Ok(report)
}

/// `queued` messages whose broker copy is gone: dead-lettered by the broker on its delivery
/// limit, or lost. A message is `queued` until a consumer claims it, so one older than
/// `RELAY_LOST_AFTER` on a consumable queue whose work queue holds no ready message has no
/// copy left to wait for; it gets one (once per attempt). A queue that still holds messages
/// is merely backed up, and gets none.
async fn recover_lost(ctx: &AppContext) -> Result<RelayReport> {
    let cfg = &ctx.config.relay;
    let mut report = RelayReport::default();
    let queues = db::messages::relay_queues_with_old_queued(&ctx.db, cfg.lost_after, 100).await?;
    for (tenant, queue_name) in queues {
        let Ok(name) = QueueName::parse(&queue_name) else {
            continue;
        };
        let queue = QueueRef::new(tenant, name);
        let counted = tokio::time::timeout(cfg.publish_timeout, holds_nothing(ctx, &queue)).await;
        match counted {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => continue,
            Err(_) => {
                tracing::warn!("the broker does not answer; lost copies wait for the next sweep");
                break;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, %tenant, queue = %queue_name,
                    "cannot count a work queue; its lost copies wait for the next sweep");
                continue;
            }
        }
        let lost =
            db::messages::relay_take_lost(&ctx.db, tenant, &queue_name, cfg.lost_after, cfg.batch)
                .await?;
        if !lost.is_empty() {
            tracing::warn!(%tenant, queue = %queue_name, messages = lost.len(),
                "queued messages without a broker copy; republishing");
        }
        let r = republish(ctx, &lost).await?;
        report.republished += r.republished;
        report.failed += r.failed;
    }
    Ok(report)
}

/// Whether the work queue holds no copy at all: none ready (exact, over AMQP) and, where the
/// management API is configured, none delivered and unacknowledged (as last sampled). Without
/// the management API a message delivered but not yet claimed at the tail of an old backlog
/// may get one extra copy, which the claim fences.
async fn holds_nothing(ctx: &AppContext, queue: &QueueRef) -> anyhow::Result<bool> {
    let endpoint = ctx.brokers.for_tenant(&ctx.db, queue.tenant_id).await?;
    let work_queue = crate::broker::work_queue(queue);
    match endpoint.broker.ready_count(&work_queue).await? {
        // No such queue: no copy either (publishing declares it again).
        None => return Ok(true),
        Some(0) => {}
        Some(_) => return Ok(false),
    }
    let Some(url) = endpoint.management_url.as_deref() else {
        return Ok(true);
    };
    let vhost = &endpoint.vhost;
    Ok(crate::broker::stats::unacked(&ctx.http, url, vhost, &work_queue).await? == 0)
}

/// Publishes the taken messages (bounded by `RELAY_PUBLISH_TIMEOUT`) and records the outcome.
async fn republish(ctx: &AppContext, stale: &[db::messages::Unsettled]) -> Result<RelayReport> {
    let cfg = &ctx.config.relay;
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
    Ok(RelayReport {
        republished: done.len(),
        failed,
    })
}

/// The maintenance tick: one relay sweep, planner statistics for young tables (see
/// `db::statistics`) and one retention sweep (`services::retention`). The relay's schedule
/// runs it in AWS, [`spawn`] outside Lambda. A failed retention sweep is logged; the next
/// tick tries again.
pub async fn tick(ctx: &AppContext) -> Result<RelayReport> {
    if let Err(e) = db::statistics::refresh(&ctx.db).await {
        tracing::warn!(error = %e, "planner statistics not refreshed");
    }
    let report = run_once(ctx).await;
    if let Err(e) = crate::services::retention::sweep(ctx).await {
        tracing::warn!(error = %e, "retention sweep failed; will retry");
    }
    report
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
