//! Processing a batch of one tenant queue's deliveries: the heart of the consumer, the same
//! whether Amazon MQ invoked the function or the local event source did.
//!
//! Per batch: read the queue's config (so a change applies without a redeploy), claim the
//! messages by compare-and-set, run up to `workers` of them at once, and settle each — completed,
//! retrying through a wait queue, or dead-lettered. Only infrastructure faults fail the batch
//! (the broker then redelivers it, which the claims make safe); a message's own failure never does.

pub mod retry;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Serialize;
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    AppContext,
    broker::{Outbound, QueueRef},
    db::{
        self,
        messages::{Claimed, Settlement},
    },
    domain::{ConsumerConfig, MessageId, MessageStatus},
    error::{Error, Result},
    messages::broker_headers,
    metrics as m,
    processing::{Job, Outcome, Processor},
};

/// Extra lease beyond the processing timeout, for settling the outcome.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// One delivery as the broker handed it over. The body is read from PostgreSQL, the source of
/// truth, so only the id matters here.
#[derive(Clone, Debug)]
pub struct Inbound {
    pub message_id: Option<String>,
    pub redelivered: bool,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct BatchReport {
    pub completed: usize,
    pub retried: usize,
    pub dead_lettered: usize,
    /// Already completed or dead-lettered, or a retry that is not due: a duplicate delivery.
    pub duplicates: usize,
    /// Held by another live worker: put back on a wait queue until its lease ends.
    pub deferred: usize,
    /// Not a message of ours (no or unknown id).
    pub unknown: usize,
}

pub struct BatchHandler {
    ctx: AppContext,
    processor: Arc<dyn Processor>,
}

impl BatchHandler {
    pub fn new(ctx: AppContext, processor: Arc<dyn Processor>) -> Self {
        Self { ctx, processor }
    }

    pub fn context(&self) -> &AppContext {
        &self.ctx
    }

    pub async fn handle(&self, queue: &QueueRef, deliveries: &[Inbound]) -> Result<BatchReport> {
        let mut report = BatchReport::default();
        let mut ids: Vec<Uuid> = Vec::with_capacity(deliveries.len());
        for d in deliveries {
            match d
                .message_id
                .as_deref()
                .and_then(|s| s.parse::<MessageId>().ok())
            {
                Some(id) if !ids.contains(&id.0) => ids.push(id.0),
                Some(_) => report.duplicates += 1,
                None => report.unknown += 1,
            }
        }
        if ids.is_empty() {
            return Ok(report);
        }
        let config = self.config_of(queue).await?;
        let defaults = &self.ctx.config.consumer;
        let lease = defaults.processing_timeout + LEASE_MARGIN;
        let claimed = db::messages::claim(
            &self.ctx.db,
            queue.tenant_id,
            queue.queue_name.as_str(),
            &ids,
            lease,
        )
        .await?;

        if claimed.len() < ids.len() {
            self.sort_unclaimed(queue, &ids, &claimed, &mut report)
                .await?;
        }

        let workers = config.workers.max(1) as usize;
        // At most `workers` at once. Futures built in a loop, not a closure, keep them `Send`.
        let permits = tokio::sync::Semaphore::new(workers);
        let mut runs = Vec::with_capacity(claimed.len());
        for c in &claimed {
            let (permits, config) = (&permits, &config);
            let span = tracing::info_span!("message", tenant_id = %queue.tenant_id,
                queue = %queue.queue_name, message_id = %c.id, attempt = c.attempts);
            runs.push(
                async move {
                    let _permit = permits
                        .acquire()
                        .await
                        .map_err(|e| Error::Internal(e.into()))?;
                    self.run_one(queue, config, c).await
                }
                .instrument(span),
            );
        }
        let outcomes: Vec<Result<MessageStatus>> = futures::future::join_all(runs).await;
        let mut first_fault = None;
        for outcome in outcomes {
            match outcome {
                Ok(MessageStatus::Completed) => report.completed += 1,
                Ok(MessageStatus::Retrying) => report.retried += 1,
                Ok(MessageStatus::DeadLettered) => report.dead_lettered += 1,
                Ok(_) => report.duplicates += 1,
                Err(e) => {
                    first_fault.get_or_insert(e);
                }
            }
        }
        match first_fault {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    async fn config_of(&self, queue: &QueueRef) -> Result<ConsumerConfig> {
        let found =
            db::consumer_configs::get(&self.ctx.db, queue.tenant_id, queue.queue_name.as_str())
                .await?;
        Ok(found.unwrap_or_else(|| {
            let d = &self.ctx.config.consumer;
            let now = chrono::Utc::now();
            ConsumerConfig {
                tenant_id: queue.tenant_id,
                queue_name: queue.queue_name.to_string(),
                workers: d.default_workers,
                retry_attempts: d.retry_attempts,
                retry_delay_ms: d.retry_delay.as_millis() as u64,
                enabled: true,
                endpoint_url: None,
                signing_secret: db::consumer_configs::new_signing_secret(),
                created_at: now,
                updated_at: now,
            }
        }))
    }

    /// Unclaimed messages are duplicates, unknown, or busy with another worker; busy ones go
    /// back to the broker (via a wait queue) so they are looked at again after the lease.
    async fn sort_unclaimed(
        &self,
        queue: &QueueRef,
        ids: &[Uuid],
        claimed: &[Claimed],
        report: &mut BatchReport,
    ) -> Result<()> {
        let unclaimed: Vec<Uuid> = ids
            .iter()
            .filter(|id| !claimed.iter().any(|c| c.id == **id))
            .copied()
            .collect();
        let standings = db::messages::standing(&self.ctx.db, queue.tenant_id, &unclaimed).await?;
        report.unknown += unclaimed.len() - standings.len();
        let now = chrono::Utc::now();
        let mut busy: HashMap<u64, Vec<Uuid>> = HashMap::new();
        for s in standings {
            match (s.status, s.locked_until) {
                (MessageStatus::Processing, Some(until)) if until > now => {
                    let wait_secs = (until - now).num_seconds().max(0) as u64 + 1;
                    busy.entry(wait_secs).or_default().push(s.id);
                }
                _ => report.duplicates += 1,
            }
        }
        for (secs, ids) in busy {
            report.deferred += ids.len();
            self.park(queue, &ids, Duration::from_secs(secs), None)
                .await?;
        }
        Ok(())
    }

    async fn run_one(
        &self,
        queue: &QueueRef,
        config: &ConsumerConfig,
        c: &Claimed,
    ) -> Result<MessageStatus> {
        let labels = m::tq(&queue.tenant_id, queue.queue_name.as_str());
        let body = serde_json::to_vec(&c.body).map_err(|e| Error::Internal(e.into()))?;
        let job = Job {
            message_id: MessageId(c.id),
            tenant_id: queue.tenant_id,
            queue_name: queue.queue_name.as_str(),
            body: &body,
            headers: &c.headers,
            attempt: c.attempts as u32,
            config,
        };
        let busy = metrics::gauge!(m::WORKERS_BUSY, &labels);
        busy.increment(1.0);
        let started = Instant::now();
        let timeout = self.ctx.config.consumer.processing_timeout;
        let outcome = match tokio::time::timeout(timeout, self.processor.process(&job)).await {
            Ok(o) => o,
            Err(_) => Outcome::retry(format!("processing timed out after {timeout:?}")),
        };
        busy.decrement(1.0);
        metrics::histogram!(m::PROCESSING_DURATION, &labels)
            .record(started.elapsed().as_secs_f64());

        let budget_left = (c.attempts as u32) <= config.retry_attempts;
        let (settlement, status, wait) = match &outcome {
            Outcome::Completed => (Settlement::Completed, MessageStatus::Completed, None),
            Outcome::Retry { error, retry_after } if budget_left => {
                let defaults = &self.ctx.config.consumer;
                let tier = retry::tier(
                    Duration::from_millis(config.retry_delay_ms),
                    c.attempts as u32,
                    defaults.max_retry_delay,
                    *retry_after,
                );
                let delay = retry::jittered(tier);
                (
                    Settlement::Retrying { error, delay },
                    MessageStatus::Retrying,
                    Some((tier, delay)),
                )
            }
            Outcome::Retry { error, .. } | Outcome::Fail { error } => (
                Settlement::DeadLettered { error },
                MessageStatus::DeadLettered,
                None,
            ),
        };
        let settled = match settlement {
            // Completions, the common case, share commits across the batch's workers.
            Settlement::Completed => self
                .ctx
                .writers()
                .complete
                .submit(vec![(queue.tenant_id, c.id, c.total_attempts)])
                .await?
                .first()
                .copied()
                .unwrap_or(false),
            _ => {
                db::messages::settle(
                    &self.ctx.db,
                    queue.tenant_id,
                    c.id,
                    c.total_attempts,
                    &settlement,
                )
                .await?
            }
        };
        if !settled {
            tracing::warn!(message_id = %c.id, "message was taken over by another worker; outcome dropped");
            return Ok(MessageStatus::Processing);
        }
        if let Some((tier, delay)) = wait {
            self.park(queue, &[c.id], tier, Some(delay)).await?;
        }
        match &settlement {
            Settlement::Completed => tracing::debug!("message completed"),
            Settlement::Retrying { error, delay } => {
                tracing::info!(%error, ?delay, "message failed; will retry")
            }
            Settlement::DeadLettered { error } => tracing::warn!(%error, "message dead-lettered"),
        }
        let outcome_label = match status {
            MessageStatus::Completed => "completed",
            MessageStatus::Retrying => "retried",
            _ => "dead_lettered",
        };
        metrics::counter!(
            m::MESSAGES_PROCESSED,
            &[
                ("tenant_id", queue.tenant_id.to_string()),
                ("queue", queue.queue_name.to_string()),
                ("outcome", outcome_label.to_string()),
            ]
        )
        .increment(1);
        if status == MessageStatus::Completed {
            let age = chrono::Utc::now() - c.created_at;
            metrics::histogram!(m::END_TO_END_LATENCY, &labels)
                .record(age.num_microseconds().unwrap_or(0) as f64 / 1e6);
        }
        Ok(status)
    }

    /// Puts messages on the queue's wait queue for `tier` (each expiring after `delay` if
    /// given); the broker then routes them back to the work queue.
    async fn park(
        &self,
        queue: &QueueRef,
        ids: &[Uuid],
        tier: Duration,
        delay: Option<Duration>,
    ) -> Result<()> {
        let wait = self.ctx.broker.ensure_wait_queue(queue, tier).await?;
        let tenant = queue.tenant_id.to_string();
        let ids_text: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        let no_headers = Default::default();
        let outbound: Vec<Outbound> = ids_text
            .iter()
            .map(|id| Outbound {
                queue: &wait,
                message_id: id.clone(),
                // The consumer reads bodies from PostgreSQL; the broker copy only carries the id.
                body: b"{}",
                headers: broker_headers(&tenant, queue.queue_name.as_str(), &no_headers),
                expiration_ms: delay.map(|d| d.as_millis() as u64),
            })
            .collect();
        for r in self.ctx.broker.publish_confirmed(&outbound).await {
            r?;
        }
        Ok(())
    }
}
