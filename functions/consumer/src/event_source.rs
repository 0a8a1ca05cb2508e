//! The local event source: plays Amazon MQ's part outside AWS. It consumes every active tenant
//! queue (one consumer per queue, so one tenant's backlog never holds back another's), groups
//! deliveries into `aws:rmq` batches, hands each to the dispatcher, and acknowledges a batch
//! only after the handler returned. It re-reads the consumer configs every
//! `CONSUMER_CONFIG_POLL_INTERVAL`: new queues start, paused ones stop, changed ones restart.
//! A tenant's batches share one gate (crate::capacity) sized to the tenant's capacity, as the
//! tenant function's reserved concurrency caps them in AWS.
//! On shutdown it stops taking deliveries, finishes the batches in flight, and closes its
//! channels, so the broker requeues whatever was prefetched but not handled.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use futures::StreamExt;
use lapin::{
    options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
};
use shared::{
    AppContext,
    broker::QueueRef,
    db,
    domain::{QueueName, TenantId},
};
use tokio::{sync::watch, task::JoinHandle};

use crate::{capacity::Gate, dispatch::Dispatcher, rmq::event_from_deliveries};

#[derive(Clone, Debug)]
pub struct Options {
    pub batch_size: usize,
    pub batch_window: Duration,
    pub poll_interval: Duration,
    /// Only these tenants' queues; empty for every tenant.
    pub tenants: Vec<TenantId>,
}

impl Options {
    pub fn from_config(c: &shared::Config) -> Self {
        Self {
            batch_size: c.consumer.batch_size,
            batch_window: c.consumer.batch_window,
            poll_interval: c.consumer.config_poll_interval,
            tenants: c.consumer.tenants.clone(),
        }
    }
}

/// The settings a running queue consumer was started with; a change restarts it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Desired {
    workers: u32,
}

struct Running {
    desired: Desired,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

pub struct EventSource {
    ctx: AppContext,
    dispatcher: Dispatcher,
    opts: Options,
    running: HashMap<QueueRef, Running>,
    gates: HashMap<TenantId, std::sync::Arc<Gate>>,
}

impl EventSource {
    pub fn new(ctx: AppContext, dispatcher: Dispatcher, opts: Options) -> Self {
        Self {
            ctx,
            dispatcher,
            opts,
            running: HashMap::new(),
            gates: HashMap::new(),
        }
    }

    /// Runs until `shutdown` turns true, then drains.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.reconcile().await {
                tracing::warn!(error = %e, "cannot read consumer configs; will retry");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.opts.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                break;
            }
        }
        tracing::info!(
            queues = self.running.len(),
            "event source stopping; finishing batches in flight"
        );
        let all: Vec<QueueRef> = self.running.keys().cloned().collect();
        for q in all {
            self.stop(&q).await;
        }
    }

    async fn reconcile(&mut self) -> shared::Result<()> {
        let configs = db::consumer_configs::list_all_of_active_tenants(&self.ctx.db).await?;
        let mut desired: HashMap<QueueRef, Desired> = HashMap::new();
        let wanted = |t: &TenantId| self.opts.tenants.is_empty() || self.opts.tenants.contains(t);
        for c in configs.iter().filter(|c| wanted(&c.tenant_id)) {
            let workers = if c.is_active() { c.workers } else { 0 };
            let labels = shared::metrics::tq(&c.tenant_id, &c.queue_name);
            metrics::gauge!(shared::metrics::WORKERS_DESIRED, &labels).set(workers as f64);
            if !c.is_active() {
                continue;
            }
            if let Ok(name) = QueueName::parse(&c.queue_name) {
                desired.insert(
                    QueueRef::new(c.tenant_id, name),
                    Desired { workers: c.workers },
                );
            }
        }
        let stale: Vec<QueueRef> = self
            .running
            .iter()
            .filter(|(q, r)| r.handle.is_finished() || desired.get(*q) != Some(&r.desired))
            .map(|(q, _)| q.clone())
            .collect();
        for q in stale {
            self.stop(&q).await;
        }
        self.size_gates(desired.keys().map(|q| q.tenant_id)).await?;
        for (q, d) in desired {
            if !self.running.contains_key(&q) {
                self.start(q, d).await;
            }
        }
        Ok(())
    }

    /// Sizes each consuming tenant's gate to its capacity: the desired reserved concurrency,
    /// or the deployment default, as the control plane applies it.
    async fn size_gates(&mut self, tenants: impl Iterator<Item = TenantId>) -> shared::Result<()> {
        let capacities: HashMap<TenantId, Option<u32>> =
            db::control_state::list(&self.ctx.db, None)
                .await?
                .into_iter()
                .map(|c| (c.tenant_id, c.desired_concurrency))
                .collect();
        for t in tenants {
            let desired = capacities.get(&t).copied().flatten();
            let limit = shared::control_plane::effective_concurrency(&self.ctx, desired);
            let gate = self.gates.entry(t).or_insert_with(|| Gate::new(limit));
            if gate.limit() != limit {
                tracing::info!(tenant_id = %t, from = gate.limit(), to = limit, "tenant capacity changed");
                gate.set_limit(limit);
            }
        }
        Ok(())
    }

    async fn start(&mut self, queue: QueueRef, desired: Desired) {
        tracing::info!(tenant_id = %queue.tenant_id, queue = %queue.queue_name, workers = desired.workers, "consuming queue");
        let (stop, stop_rx) = watch::channel(false);
        let consumer = QueueConsumer {
            ctx: self.ctx.clone(),
            dispatcher: self.dispatcher.clone(),
            opts: self.opts.clone(),
            queue: queue.clone(),
            workers: desired.workers,
            gate: self
                .gates
                .get(&queue.tenant_id)
                .cloned()
                .expect("gates are sized before queues start"),
        };
        let handle = tokio::spawn(async move {
            let q = consumer.queue.clone();
            if let Err(e) = consumer.run(stop_rx).await {
                tracing::warn!(tenant_id = %q.tenant_id, queue = %q.queue_name, error = %e, "queue consumer stopped; restarting");
            }
        });
        self.record_applied(&queue, desired.workers, true).await;
        self.running.insert(
            queue,
            Running {
                desired,
                stop,
                handle,
            },
        );
    }

    /// Records what this process applied, for the status API (best effort: a failure to record
    /// must not stop consumption).
    async fn record_applied(&self, q: &QueueRef, workers: u32, running: bool) {
        let by = instance_name();
        let recorded = db::consumer_runtime::record(
            &self.ctx.db,
            q.tenant_id,
            q.queue_name.as_str(),
            workers,
            running,
            &by,
        );
        if let Err(e) = recorded.await {
            tracing::warn!(error = %e, "cannot record the applied consumer state");
        }
    }

    async fn stop(&mut self, queue: &QueueRef) {
        if let Some(r) = self.running.remove(queue) {
            let _ = r.stop.send(true);
            let _ = r.handle.await;
            self.record_applied(queue, 0, false).await;
        }
    }
}

struct QueueConsumer {
    ctx: AppContext,
    dispatcher: Dispatcher,
    opts: Options,
    queue: QueueRef,
    workers: u32,
    gate: std::sync::Arc<Gate>,
}

impl QueueConsumer {
    async fn run(self, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let broker = &self.ctx.broker;
        broker.ensure_queue(&self.queue).await?;
        let vhost = broker.connection().await?.status().vhost().to_string();
        let channel = broker.channel().await?;
        // Room for the batch being handled plus the next one, so batches flow back to back.
        let prefetch = (self.opts.batch_size.max(self.workers as usize) * 2).min(u16::MAX as usize);
        channel
            .basic_qos(prefetch as u16, BasicQosOptions::default())
            .await?;
        let tag = format!("local-event-source.{}", self.queue.queue_name);
        let mut deliveries = channel
            .basic_consume(
                shared::broker::work_queue(&self.queue).into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;

        let result: anyhow::Result<()> = async {
            loop {
                let first = tokio::select! {
                    biased;
                    _ = stop.changed() => return Ok(()),
                    d = deliveries.next() => match d {
                        Some(d) => d?,
                        None => anyhow::bail!("the broker cancelled the consumer"),
                    },
                };
                let mut batch = vec![first];
                let deadline = Instant::now() + self.opts.batch_window;
                while batch.len() < self.opts.batch_size {
                    match tokio::time::timeout_at(deadline.into(), deliveries.next()).await {
                        Ok(Some(d)) => batch.push(d?),
                        Ok(None) | Err(_) => break,
                    }
                }
                let event = event_from_deliveries(&self.queue, &vhost, &batch);
                // Held until the batch is handled: the tenant's capacity counts running batches.
                let _permit = tokio::select! {
                    biased;
                    // Not acknowledged: closing the channel returns the batch.
                    _ = stop.changed() => return Ok(()),
                    p = self.gate.acquire() => p,
                };
                let mut backoff = Duration::from_millis(200);
                loop {
                    match self.dispatcher.dispatch(&event).await {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::warn!(queue = %self.queue.queue_name, error = %e, "batch failed; retrying it");
                            if *stop.borrow() {
                                // Not acknowledged: closing the channel returns the batch.
                                return Ok(());
                            }
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                        }
                    }
                }
                let last = batch.last().map(|d| d.delivery_tag).unwrap_or_default();
                channel
                    .basic_ack(last, BasicAckOptions { multiple: true })
                    .await?;
            }
        }
        .await;
        // Unacknowledged deliveries (prefetched, or a failed batch) go back to the queue.
        let _ = channel.close(200, "consumer stopping".into()).await;
        result
    }
}

/// `<host>:<pid>`, naming this process in the applied state.
fn instance_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".into());
    format!("{host}:{}", std::process::id())
}
