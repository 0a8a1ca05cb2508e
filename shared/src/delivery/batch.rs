//! Processing a batch of one tenant queue's deliveries: the heart of the consumer, the same
//! whether Amazon MQ invoked the function or the local event source did.
//!
//! Per batch: read the queue's config (so a change applies without a redeploy), claim the
//! messages by compare-and-set, run up to `workers` of them at once, and settle each — completed,
//! retrying through a wait queue, or dead-lettered. Only infrastructure faults fail the batch
//! (the broker then redelivers it, which the claims make safe); a message's own failure never does.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{FutureExt, StreamExt, stream::FuturesUnordered};

use serde::Serialize;
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    AppContext,
    broker::QueueRef,
    config::SETTLE_MARGIN,
    db::{
        self,
        messages::{AttemptRecord, Claimed, Completion, Settlement},
    },
    delivery::{Outcome, Processed, Processor, Task},
    domain::{ConsumerConfig, MessageId, MessageStatus, OnDeadLetter},
    error::{Error, Result},
    observability::metrics as m,
    outbox,
};

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
    /// Behind an earlier unsettled message of its ordering key at the batch's end: put on the
    /// ordering wait tier, no attempt used, until that one settles.
    pub held_back: usize,
    /// Not a message of ours (no or unknown id).
    pub unknown: usize,
    /// Not started before the invocation's deadline: back on the work queue, attempts unchanged.
    pub put_back: usize,
}

impl BatchReport {
    fn count(&mut self, status: MessageStatus) {
        match status {
            MessageStatus::Completed => self.completed += 1,
            MessageStatus::Retrying => self.retried += 1,
            MessageStatus::DeadLettered => self.dead_lettered += 1,
            // Taken over by another worker while running: its outcome was dropped.
            _ => self.duplicates += 1,
        }
    }
}

/// How long a message held back by its ordering key waits on the broker before it is looked at
/// again. A backstop only: the settle of the message holding it back sends it back at once.
pub const ORDERING_RECHECK: Duration = Duration::from_secs(30);

/// A keyed message the claim refused for an earlier unsettled one of its key.
pub struct Held {
    id: Uuid,
    key: String,
    seq: i64,
}

/// The batch's held-back messages by key, and the keys whose message settled in the batch.
#[derive(Default)]
struct HeldBack {
    by_key: HashMap<String, Vec<(i64, Uuid)>>,
    moved_on: HashSet<String>,
}

impl HeldBack {
    fn add(&mut self, held: Vec<Held>) {
        for h in held {
            self.by_key.entry(h.key).or_default().push((h.seq, h.id));
        }
    }

    /// The earliest held-back message of the key, taken out to be claimed.
    fn next_of(&mut self, key: &str) -> Option<Uuid> {
        let list = self.by_key.get_mut(key)?;
        let (i, _) = list.iter().enumerate().min_by_key(|(_, (seq, _))| *seq)?;
        let (_, id) = list.swap_remove(i);
        if list.is_empty() {
            self.by_key.remove(key);
        }
        Some(id)
    }
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

    /// Processes the batch, starting no message that could not finish (processing timeout plus
    /// `SETTLE_MARGIN`) before `deadline`. Each message is claimed, and so leased, only when a
    /// worker takes it, so a message waiting for a worker never outlives its lease and never
    /// runs twice at once, whatever `workers`, batch size and processing time. Messages left
    /// unstarted at the deadline go back to the work queue with their attempts unchanged.
    ///
    /// A keyed message the claim refuses because an earlier one of its key is unsettled waits
    /// in the batch for that one if it runs here, and is claimed next when it settles; what
    /// still waits at the end goes on a wait tier ([`ORDERING_RECHECK`], no attempt used), and
    /// comes back at once when the message holding it back settles in a later batch.
    pub async fn handle(
        &self,
        queue: &QueueRef,
        deliveries: &[Inbound],
        deadline: Instant,
    ) -> Result<BatchReport> {
        let mut report = BatchReport::default();
        let mut waiting: VecDeque<Uuid> = VecDeque::with_capacity(deliveries.len());
        for d in deliveries {
            match d
                .message_id
                .as_deref()
                .and_then(|s| s.parse::<MessageId>().ok())
            {
                Some(id) if !waiting.contains(&id.0) => waiting.push_back(id.0),
                Some(_) => report.duplicates += 1,
                None => report.unknown += 1,
            }
        }
        if waiting.is_empty() {
            return Ok(report);
        }
        let config = self.config_of(queue).await?;
        let timeout = self.ctx.config.consumer.processing_timeout;
        let lease = timeout + SETTLE_MARGIN;
        let workers = config.workers.max(1) as usize;
        let dead_letter_blocks = config.on_dead_letter == OnDeadLetter::Block;

        let mut held = HeldBack::default();
        let mut running = FuturesUnordered::new();
        let mut first_fault: Option<Error> = None;
        loop {
            let free = workers - running.len();
            let may_start = first_fault.is_none() && Instant::now() + lease <= deadline;
            if free > 0 && may_start && !waiting.is_empty() {
                let take: Vec<Uuid> = waiting.drain(..free.min(waiting.len())).collect();
                let claim = self.claim(queue, &take, lease, dead_letter_blocks, &mut report);
                let claimed = match claim.await {
                    Ok((claimed, blocked)) => {
                        held.add(blocked);
                        claimed
                    }
                    Err(e) => {
                        first_fault = Some(e);
                        continue;
                    }
                };
                for c in claimed {
                    let span = tracing::info_span!("message", tenant_id = %queue.tenant_id,
                        queue = %queue.queue_name, message_id = %c.id, attempt = c.attempts);
                    let config = &config;
                    running.push(
                        async move {
                            let outcome = self.run_one(queue, config, &c).await;
                            (c.ordering_key, outcome)
                        }
                        .instrument(span),
                    );
                }
                continue;
            }
            let Some(first) = running.next().await else {
                break;
            };
            // Workers that finished together free their slots together: one claim for all.
            let mut finished = vec![first];
            while let Some(Some(more)) = running.next().now_or_never() {
                finished.push(more);
            }
            for (key, outcome) in finished {
                match outcome {
                    Ok(status) => {
                        report.count(status);
                        // Its key moves on when it completes, or is dead-lettered on a queue
                        // whose dead letters do not hold their key back.
                        let moves_on = status == MessageStatus::Completed
                            || (status == MessageStatus::DeadLettered && !dead_letter_blocks);
                        if let Some(key) = key.filter(|_| moves_on) {
                            // The next of it waiting here is claimed next.
                            if let Some(next) = held.next_of(&key) {
                                waiting.push_front(next);
                            }
                            held.moved_on.insert(key);
                        }
                    }
                    Err(e) => {
                        first_fault.get_or_insert(e);
                    }
                }
            }
        }
        if let Some(e) = first_fault {
            // The whole batch is redelivered; what completed is skipped as a duplicate.
            return Err(e);
        }
        if !waiting.is_empty() {
            let ids: Vec<Uuid> = waiting.into_iter().collect();
            tracing::info!(tenant_id = %queue.tenant_id, queue = %queue.queue_name,
                count = ids.len(), "deadline near: putting unstarted messages back");
            self.put_back(queue, &ids).await?;
            report.put_back += ids.len();
        }
        self.settle_held(queue, held, &mut report).await?;
        Ok(report)
    }

    /// After the batch: messages put aside in earlier batches behind a key that moved on here
    /// go back on the work queue at once, and what is still held back here goes on the
    /// ordering wait tier, marked as put aside so that the settle of the message holding it
    /// back sends it back (this, in a later batch).
    async fn settle_held(
        &self,
        queue: &QueueRef,
        held: HeldBack,
        report: &mut BatchReport,
    ) -> Result<()> {
        let left: Vec<Uuid> = held.by_key.values().flatten().map(|(_, id)| *id).collect();
        let keys: Vec<String> = held.moved_on.into_iter().collect();
        let tenant = queue.tenant_id;
        let queue_name = queue.queue_name.as_str();
        let next: Vec<Uuid> =
            db::ordering::take_next_deferred(&self.ctx.db, tenant, queue_name, &keys)
                .await?
                .into_iter()
                .filter(|id| !left.contains(id))
                .collect();
        if !next.is_empty() {
            self.put_back(queue, &next).await?;
        }
        if !left.is_empty() {
            db::ordering::mark_deferred(&self.ctx.db, tenant, &left).await?;
            self.park(queue, &left, ORDERING_RECHECK, None).await?;
            report.held_back += left.len();
        }
        let labels = m::tq(&queue.tenant_id, queue_name);
        metrics::counter!(m::ORDERING_DEFERRED, &labels).increment(left.len() as u64);
        Ok(())
    }

    /// Claims `ids` for this worker; those it could not claim are sorted into the report, but
    /// for the keyed ones held back by an earlier message of their key, which are returned.
    async fn claim(
        &self,
        queue: &QueueRef,
        ids: &[Uuid],
        lease: Duration,
        dead_letter_blocks: bool,
        report: &mut BatchReport,
    ) -> Result<(Vec<Claimed>, Vec<Held>)> {
        let claimed = db::messages::claim(
            &self.ctx.db,
            queue.tenant_id,
            queue.queue_name.as_str(),
            ids,
            lease,
            dead_letter_blocks,
        )
        .await?;
        let mut held = Vec::new();
        if claimed.len() < ids.len() {
            held = self.sort_unclaimed(queue, ids, &claimed, report).await?;
        }
        Ok((claimed, held))
    }

    async fn config_of(&self, queue: &QueueRef) -> Result<ConsumerConfig> {
        let found =
            db::consumer_configs::get(&self.ctx.db, queue.tenant_id, queue.queue_name.as_str())
                .await?;
        Ok(found.unwrap_or_else(|| {
            ConsumerConfig::new_queue(
                queue.tenant_id,
                &queue.queue_name,
                &self.ctx.config.consumer,
                db::consumer_configs::new_signing_secret(),
            )
        }))
    }

    /// Unclaimed messages are duplicates, unknown, busy with another worker, or held back by
    /// an earlier message of their key (returned); busy ones go back to the broker (via a wait
    /// queue) so they are looked at again after the lease.
    async fn sort_unclaimed(
        &self,
        queue: &QueueRef,
        ids: &[Uuid],
        claimed: &[Claimed],
        report: &mut BatchReport,
    ) -> Result<Vec<Held>> {
        let unclaimed: Vec<Uuid> = ids
            .iter()
            .filter(|id| !claimed.iter().any(|c| c.id == **id))
            .copied()
            .collect();
        let standings = db::messages::standing(&self.ctx.db, queue.tenant_id, &unclaimed).await?;
        report.unknown += unclaimed.len() - standings.len();
        let now = chrono::Utc::now();
        let mut busy: HashMap<u64, Vec<Uuid>> = HashMap::new();
        let mut held = Vec::new();
        for s in standings {
            match (s.status, s.locked_until) {
                (MessageStatus::Processing, Some(until)) if until > now => {
                    let wait_secs = (until - now).num_seconds().max(0) as u64 + 1;
                    busy.entry(wait_secs).or_default().push(s.id);
                }
                // The claim could have taken it but for an earlier message of its key.
                _ if s.claimable(now) && s.queue_name == queue.queue_name.as_str() => {
                    match (s.ordering_key, s.ordering_seq) {
                        (Some(key), Some(seq)) => held.push(Held { id: s.id, key, seq }),
                        // Moved on between the claim and this read.
                        _ => report.duplicates += 1,
                    }
                }
                _ => report.duplicates += 1,
            }
        }
        for (secs, ids) in busy {
            report.deferred += ids.len();
            self.park(queue, &ids, Duration::from_secs(secs), None)
                .await?;
        }
        Ok(held)
    }

    async fn run_one(
        &self,
        queue: &QueueRef,
        config: &ConsumerConfig,
        c: &Claimed,
    ) -> Result<MessageStatus> {
        let labels = m::tq(&queue.tenant_id, queue.queue_name.as_str());
        let body = serde_json::to_vec(&c.body).map_err(|e| Error::Internal(e.into()))?;
        let job = Task {
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
        let Processed { outcome, response } =
            match tokio::time::timeout(timeout, self.processor.process_recorded(&job)).await {
                Ok(p) => p,
                Err(_) => Outcome::retry(format!("processing timed out after {timeout:?}")).into(),
            };
        busy.decrement(1.0);
        let elapsed = started.elapsed();
        metrics::histogram!(m::PROCESSING_DURATION, &labels).record(elapsed.as_secs_f64());
        let (http_status, response_excerpt) = match response {
            Some(r) => (i16::try_from(r.status).ok(), r.excerpt),
            None => (None, None),
        };
        let record = AttemptRecord {
            http_status,
            duration_ms: i32::try_from(elapsed.as_millis()).unwrap_or(i32::MAX),
            response_excerpt,
        };

        let budget_left = (c.attempts as u32) <= config.retry_attempts;
        let (settlement, status, wait) = match &outcome {
            Outcome::Completed => (Settlement::Completed, MessageStatus::Completed, None),
            Outcome::Retry { error, retry_after } if budget_left => {
                let defaults = &self.ctx.config.consumer;
                let tier = super::retry::tier(
                    Duration::from_millis(config.retry_delay_ms),
                    c.attempts as u32,
                    defaults.max_retry_delay,
                    *retry_after,
                );
                let delay = super::retry::jittered(tier);
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
                .submit(vec![Completion {
                    tenant: queue.tenant_id,
                    id: c.id,
                    total_attempts: c.total_attempts,
                    record,
                }])
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
                    &record,
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

    /// Puts messages on the wait tier for `tier` of the tenant's broker (each expiring after
    /// `delay` if given); the broker then routes them back to the work queue.
    async fn park(
        &self,
        queue: &QueueRef,
        ids: &[Uuid],
        tier: Duration,
        delay: Option<Duration>,
    ) -> Result<()> {
        let endpoint = self
            .ctx
            .brokers
            .for_tenant(&self.ctx.db, queue.tenant_id)
            .await?;
        let exchange = endpoint.broker.ensure_wait_tier(tier).await?;
        outbox::republish_ids(&endpoint.broker, queue, &exchange, ids, delay).await
    }

    /// Puts messages straight back on the work queue, for a later invocation.
    async fn put_back(&self, queue: &QueueRef, ids: &[Uuid]) -> Result<()> {
        let endpoint = self
            .ctx
            .brokers
            .for_tenant(&self.ctx.db, queue.tenant_id)
            .await?;
        outbox::republish_ids(&endpoint.broker, queue, "", ids, None).await
    }
}
