//! The local event source: plays Amazon MQ's part outside AWS. It runs one event source
//! mapping (`super::mapping`) per active tenant queue, so one tenant's backlog never holds back
//! another's, and re-reads the consumer configs every `CONSUMER_CONFIG_POLL_INTERVAL`: new
//! queues start, paused ones stop, changed ones restart. Gates (`super::capacity`) play the
//! functions' concurrency as in AWS: a dedicated tenant's mappings share one gate sized to its
//! effective capacity (its function's reserved concurrency); every pooled tenant's mappings
//! share the pooled gate, sized to the account's unreserved concurrency (the pooled function
//! reserves none). A tenant moving between tiers has its mappings restarted on the other gate:
//! the batch in flight finishes and is acknowledged first, prefetched messages go back to the
//! queue. A queue that may not run (paused, or its tenant at capacity 0) has no mapping, so it
//! holds no channel and no prefetched message. The mappings' channels
//! are spread over connections of a bounded size (`super::connections`).
//! On shutdown it stops taking deliveries, finishes the invocations in flight, and closes its
//! channels, so the broker requeues whatever was prefetched but not handled.

use std::{collections::HashMap, sync::Arc, time::Duration};

use shared::{
    AppContext,
    broker::QueueRef,
    config::MappingBatching,
    db,
    domain::{QueueName, TenantId, Tier},
};
use tokio::{sync::watch, task::JoinHandle};

use super::{
    Stats,
    capacity::Gate,
    connections::{Connections, Seat},
    dispatch::Dispatcher,
    mapping::Mapping,
};

/// The pause after a failed invocation before the mapping's next one, so a failing function is
/// not invoked in a hot loop. AWS documents no interval for RabbitMQ; this is the default
/// redelivery delay of the policy Lambda applies to Amazon MQ for ActiveMQ
/// (https://docs.aws.amazon.com/lambda/latest/dg/services-mq-errors.html).
pub const REDELIVERY_PAUSE: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct Options {
    /// The mapping's batch size and window, as the provisioner creates the real one.
    pub batching: MappingBatching,
    /// The function's timeout (`CONSUMER_FUNCTION_TIMEOUT`): an invocation still running then
    /// is abandoned and its batch redelivered.
    pub function_timeout: Duration,
    pub redelivery_pause: Duration,
    pub poll_interval: Duration,
    /// Only these tenants' queues; empty for every tenant.
    pub tenants: Vec<TenantId>,
    /// The most mappings (one channel each) on one broker connection.
    pub channels_per_connection: usize,
}

impl Options {
    pub fn from_config(c: &shared::Config) -> Self {
        Self {
            batching: c.consumer.mapping_batching(),
            function_timeout: c.consumer.function_timeout,
            redelivery_pause: REDELIVERY_PAUSE,
            poll_interval: c.consumer.config_poll_interval,
            tenants: c.consumer.tenants.clone(),
            channels_per_connection: c.consumer.channels_per_connection,
        }
    }
}

/// The settings a running queue consumer was started with; a change restarts it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Desired {
    workers: u32,
    gate: GateKey,
}

/// Whose concurrency a mapping's invocations count against: the function it maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum GateKey {
    /// The pooled function, shared by every pooled tenant.
    Pooled,
    /// A dedicated tenant's own function.
    Dedicated(TenantId),
}

impl GateKey {
    fn tier(self) -> Tier {
        match self {
            GateKey::Pooled => Tier::Pooled,
            GateKey::Dedicated(_) => Tier::Dedicated,
        }
    }
}

struct Running {
    desired: Desired,
    /// The tenant's broker (its id in the registry) and the seat on one of its connections.
    broker: String,
    seat: Seat,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

pub struct EventSource {
    ctx: AppContext,
    dispatcher: Dispatcher,
    opts: Options,
    running: HashMap<QueueRef, Running>,
    gates: HashMap<GateKey, Arc<Gate>>,
    /// Per broker of the registry, the connections its tenants' queues are consumed on.
    connections: HashMap<String, Connections>,
    stats: Arc<Stats>,
}

impl EventSource {
    pub fn new(ctx: AppContext, dispatcher: Dispatcher, opts: Options) -> Self {
        Self {
            ctx,
            dispatcher,
            opts,
            running: HashMap::new(),
            gates: HashMap::new(),
            connections: HashMap::new(),
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
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
            connections = self
                .connections
                .values()
                .map(Connections::in_use)
                .sum::<usize>(),
            "event source stopping; finishing batches in flight"
        );
        // Every queue stops taking deliveries at once; then the batches in flight finish
        // together, so the whole drain takes the longest batch, not the sum of them, and fits
        // the grace period between SIGTERM and SIGKILL.
        let running: Vec<(QueueRef, Running)> = self.running.drain().collect();
        for (_, r) in &running {
            let _ = r.stop.send(true);
        }
        for (q, r) in running {
            let _ = r.handle.await;
            self.release(&r.broker, r.seat).await;
            self.record_applied(&q, 0, false).await;
        }
        for c in self.connections.values_mut() {
            c.close().await;
        }
    }

    async fn reconcile(&mut self) -> shared::Result<()> {
        let configs = db::consumer_configs::list_all_of_active_tenants(&self.ctx.db).await?;
        let dedicated = self.dedicated().await?;
        let pooled = shared::services::capacity::pooled_concurrency(&self.ctx).await?;
        // A tenant without an effective capacity is pooled.
        let gate_of = |t: &TenantId| match dedicated.get(t) {
            Some(&limit) => (GateKey::Dedicated(*t), limit),
            None => (GateKey::Pooled, pooled),
        };
        let mut desired: HashMap<QueueRef, Desired> = HashMap::new();
        let mut limits: HashMap<GateKey, u32> = HashMap::new();
        let wanted = |t: &TenantId| self.opts.tenants.is_empty() || self.opts.tenants.contains(t);
        for c in configs.iter().filter(|c| wanted(&c.tenant_id)) {
            let workers = if c.is_active() { c.workers } else { 0 };
            let labels = shared::observability::metrics::tq(&c.tenant_id, &c.queue_name);
            metrics::gauge!(shared::observability::metrics::WORKERS_DESIRED, &labels)
                .set(workers as f64);
            let (gate, limit) = gate_of(&c.tenant_id);
            // A queue that may not run holds no mapping: a consumer would only prefetch
            // messages into this process's memory and keep a channel for nothing. At capacity
            // 0 the tenant function is throttled in AWS, so none of its queues run.
            if !c.is_active() || limit == 0 {
                continue;
            }
            if let Ok(name) = QueueName::parse(&c.queue_name) {
                limits.insert(gate, limit);
                desired.insert(
                    QueueRef::new(c.tenant_id, name),
                    Desired {
                        workers: c.workers,
                        gate,
                    },
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
        for (gate, limit) in limits {
            self.size_gate(gate, limit);
        }
        for (q, d) in desired {
            if !self.running.contains_key(&q) {
                self.start(q, d).await;
            }
        }
        Ok(())
    }

    /// The effective capacity of each dedicated tenant (its function's reserved concurrency).
    async fn dedicated(&self) -> shared::Result<HashMap<TenantId, u32>> {
        Ok(db::control_state::list(&self.ctx.db, None)
            .await?
            .into_iter()
            .filter_map(|c| Some((c.tenant_id, c.effective_concurrency?)))
            .collect())
    }

    /// Sizes a gate to its function's concurrency.
    fn size_gate(&mut self, key: GateKey, limit: u32) {
        let gate = self.gates.entry(key).or_insert_with(|| Gate::new(limit));
        if gate.limit() != limit {
            tracing::info!(?key, from = gate.limit(), to = limit, "concurrency changed");
            gate.set_limit(limit);
        }
    }

    async fn start(&mut self, queue: QueueRef, desired: Desired) {
        tracing::info!(tenant_id = %queue.tenant_id, queue = %queue.queue_name, workers = desired.workers,
            tier = ?desired.gate.tier(), "consuming queue");
        // The tenant's broker; until it is known the queue waits for the next pass.
        let endpoint = match self
            .ctx
            .brokers
            .for_tenant(&self.ctx.db, queue.tenant_id)
            .await
        {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(tenant_id = %queue.tenant_id, error = %e, "cannot find the tenant's broker");
                return;
            }
        };
        let per_connection = self.opts.channels_per_connection;
        let (seat, broker) = self
            .connections
            .entry(endpoint.id.clone())
            .or_insert_with(|| {
                Connections::new(
                    &endpoint.amqp_url,
                    &format!("local-event-source@{}", endpoint.id),
                    per_connection,
                )
            })
            .take();
        let (stop, stop_rx) = watch::channel(false);
        let mapping = Mapping {
            broker,
            dispatcher: self.dispatcher.clone(),
            opts: self.opts.clone(),
            queue: queue.clone(),
            gate: self
                .gates
                .get(&desired.gate)
                .cloned()
                .expect("gates are sized before queues start"),
            stats: self.stats.clone(),
        };
        let handle = tokio::spawn(async move {
            let q = mapping.queue.clone();
            if let Err(e) = mapping.run(stop_rx).await {
                tracing::warn!(tenant_id = %q.tenant_id, queue = %q.queue_name, error = %e, "queue consumer stopped; restarting");
            }
        });
        self.record_applied(&queue, desired.workers, true).await;
        self.running.insert(
            queue,
            Running {
                desired,
                broker: endpoint.id.clone(),
                seat,
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

    /// Gives a stopped mapping's seat back to its broker's connections.
    async fn release(&mut self, broker: &str, seat: Seat) {
        if let Some(c) = self.connections.get_mut(broker) {
            c.release(seat).await;
        }
    }

    async fn stop(&mut self, queue: &QueueRef) {
        if let Some(r) = self.running.remove(queue) {
            let _ = r.stop.send(true);
            let _ = r.handle.await;
            self.release(&r.broker, r.seat).await;
            self.record_applied(queue, 0, false).await;
        }
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
