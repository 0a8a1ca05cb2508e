use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use consumer::local::{
    Stats,
    dispatch::Dispatcher,
    event_source::{EventSource, Options},
};

use shared::{
    AppContext, Config,
    delivery::BatchHandler,
    delivery::{Outcome, Processor, Task},
    domain::{ConsumerConfigUpdate, MessageId, MessageStatus, TenantId},
    services::messages::{self, PublishItem},
    testkit,
};
use tokio::{sync::watch, task::JoinHandle};

pub use shared::testkit::{message, publish, tenant};

/// The consumer tests' configuration: small batches, short windows.
pub fn config() -> Config {
    testkit::consumer_config()
}

pub async fn context() -> AppContext {
    testkit::consumer_context().await
}

pub async fn configure(
    ctx: &AppContext,
    t: TenantId,
    queue: &str,
    workers: i64,
    retries: i64,
    delay_ms: i64,
    endpoint: Option<String>,
) {
    let update = ConsumerConfigUpdate::parse(
        queue,
        workers,
        Some(retries),
        Some(delay_ms),
        Some(true),
        Some(endpoint),
        &ctx.config.consumer,
    )
    .unwrap();
    shared::services::consumers::configure(ctx, t, &update)
        .await
        .unwrap();
}

pub async fn publish_many(ctx: &AppContext, t: TenantId, queue: &str, n: usize) -> Vec<MessageId> {
    let items = (0..n)
        .map(|i| PublishItem {
            queue_name: queue.into(),
            message_body: serde_json::json!({ "i": i }),
            headers: None,
            idempotency_key: None,
            ..Default::default()
        })
        .collect();
    messages::publish_batch(ctx, t, items)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().id)
        .collect()
}

/// Waits until every message reached `status`; panics with the stragglers after `timeout`.
pub async fn wait_all(
    ctx: &AppContext,
    t: TenantId,
    ids: &[MessageId],
    status: MessageStatus,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let mut behind = Vec::new();
        for id in ids {
            let m = message(ctx, t, *id).await;
            if m.status != status {
                behind.push((m.id, m.status));
            }
        }
        if behind.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} not {status} after {timeout:?}: {:?}",
            behind.len(),
            &behind[..behind.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An in-process event source for these tenants only.
pub struct Running {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
    pub stats: Arc<Stats>,
}

impl Running {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
    }
}

pub fn start_event_source(
    ctx: &AppContext,
    processor: Arc<dyn Processor>,
    tenants: Vec<TenantId>,
) -> Running {
    let handler = Arc::new(BatchHandler::new(ctx.clone(), processor));
    let mut opts = Options::from_config(&ctx.config);
    opts.tenants = tenants;
    start_dispatching(ctx, Dispatcher::InProcess(handler), opts)
}

/// An event source with its own dispatcher and options (`opts.tenants` should name the test's).
pub fn start_dispatching(ctx: &AppContext, dispatcher: Dispatcher, opts: Options) -> Running {
    let source = EventSource::new(ctx.clone(), dispatcher, opts);
    let stats = source.stats();
    let (stop, rx) = watch::channel(false);
    let handle = tokio::spawn(source.run(rx));
    Running {
        stop,
        handle,
        stats,
    }
}

/// Fails each message's first `n` attempts, then succeeds; counts calls.
#[derive(Default)]
pub struct FailTimes {
    pub n: u32,
    pub calls: AtomicUsize,
}

#[async_trait::async_trait]
impl Processor for FailTimes {
    async fn process(&self, job: &Task<'_>) -> Outcome {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if job.attempt <= self.n {
            Outcome::retry(format!("failure {}", job.attempt))
        } else {
            Outcome::Completed
        }
    }
}

/// Sleeps per message (per tenant) and records the highest concurrency it saw.
#[derive(Default)]
pub struct Slow {
    pub delay: HashMap<TenantId, Duration>,
    pub running: AtomicUsize,
    pub peak: AtomicUsize,
    pub done: Mutex<Vec<MessageId>>,
}

impl Slow {
    pub fn reset_peak(&self) {
        self.peak.store(0, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl Processor for Slow {
    async fn process(&self, job: &Task<'_>) -> Outcome {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay.get(&job.tenant_id).copied().unwrap_or_default()).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.done.lock().unwrap().push(job.message_id);
        Outcome::Completed
    }
}

/// Serves `app` on a free local port (an endpoint for webhook tests); its base URL.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// The consumer binary in local mode on `tenant`'s queues, with the tests' short batches and
/// timeouts; killed when dropped.
pub fn spawn_consumer(db_url: &str, tenant: &str) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_consumer"))
        .env("DATABASE_URL", db_url)
        .env("CONSUMER_TENANTS", tenant)
        // Its own metrics port: another test's consumer process may hold the default one.
        .env(
            "CONSUMER_METRICS_PORT",
            shared::testkit::free_port().to_string(),
        )
        .env("CONSUMER_BATCH_SIZE", "10")
        .env("CONSUMER_PROCESSING_TIMEOUT", "2s")
        .env("CONSUMER_CONFIG_POLL_INTERVAL", "200ms")
        .env("WEBHOOK_ALLOW_PRIVATE", "true")
        .env("WEBHOOK_ALLOW_HTTP", "true")
        .env("LOG_LEVEL", "warn")
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the consumer binary")
}
