//! Test support shared by the function crates' integration tests (feature `testkit`): a
//! configuration pointing at the test database, a one-time migration, and a TCP proxy that can
//! cut a dependency off for one test without touching the shared services; and a stand-in
//! Lambda Runtime API ([`runtime_api`]) to run a function binary in Lambda mode.

pub mod runtime_api;

pub use runtime_api::{
    Invocation, InvokeOptions, LAMBDA_JWT_SECRET, RuntimeApi, json_lines, shut_down, terminate,
};

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Mutex, OnceCell},
    task::JoinHandle,
};

use serde_json::Value;

use crate::{
    AppContext, Config,
    domain::{Message, MessageId, MessageStatus, TenantId, TenantName},
    services::messages::PublishItem,
};

/// The test database (`TEST_DATABASE_URL`, default `msgsvc_test` on the local server).
pub fn test_config() -> Config {
    let mut config = Config::from_env().expect("test configuration");
    config.database_url = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/msgsvc_test".into());
    config.relay.enabled = false;
    config.webhook.allow_http = true;
    config.webhook.allow_private = true;
    // The test database is shared and keeps every run's tenants, whose capacities would use
    // up a real account's budget; the budget tests use a database of their own.
    config.control.account_concurrency = Some(u32::MAX / 2);
    config
}

static MIGRATED: OnceCell<()> = OnceCell::const_new();

/// Creates and migrates the test database once per test binary.
pub async fn prepare_database(config: &Config) {
    MIGRATED
        .get_or_init(|| async {
            crate::db::ensure_database(config)
                .await
                .expect("create test database");
            crate::db::migrate(config)
                .await
                .expect("migrate test database");
        })
        .await;
}

/// The test configuration on a database of its own, created and migrated, for a test whose
/// subject spans every tenant (the concurrency budget sums all tenants' capacities), so other
/// tests' tenants in the shared database cannot move its figures. Drop it with
/// `db::drop_database` at the end.
pub async fn own_database(prefix: &str) -> Config {
    let mut config = test_config();
    let mut url = url::Url::parse(&config.database_url).expect("TEST_DATABASE_URL");
    url.set_path(&format!(
        "msgsvc_test_{prefix}_{}",
        uuid::Uuid::new_v4().simple()
    ));
    config.database_url = url.to_string();
    crate::db::ensure_database(&config)
        .await
        .expect("create own database");
    crate::db::migrate(&config)
        .await
        .expect("migrate own database");
    config
}

pub async fn context(config: Config, name: &str) -> AppContext {
    prepare_database(&config).await;
    AppContext::new(config, name).expect("context")
}

/// A port free on 127.0.0.1 right now, for a process a test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A unique suffix for names, so parallel tests never share data.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A TCP proxy in front of a service. `cut()` drops every open connection and refuses new
/// ones, as if the service went down; `freeze()` keeps the connections open but passes no byte
/// either way, as a service that stops answering (a broker under a resource alarm); `restore()`
/// brings it back.
pub struct TcpProxy {
    pub addr: SocketAddr,
    down: Arc<AtomicBool>,
    frozen: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let down = Arc::new(AtomicBool::new(false));
        let frozen = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let (down, frozen, conns) = (down.clone(), frozen.clone(), conns.clone());
            tokio::spawn(async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    if down.load(Ordering::SeqCst) {
                        continue; // dropped: connection reset
                    }
                    let frozen = frozen.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(outbound) = TcpStream::connect(target).await {
                            let (from_client, to_client) = inbound.into_split();
                            let (from_service, to_service) = outbound.into_split();
                            tokio::join!(
                                pump(from_client, to_service, frozen.clone()),
                                pump(from_service, to_client, frozen),
                            );
                        }
                    });
                    conns.lock().await.push(task);
                }
            })
        };
        Self {
            addr,
            down,
            frozen,
            conns,
            accept,
        }
    }

    /// Passes no byte either way until `restore()`; connections stay open.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    pub async fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for c in self.conns.lock().await.drain(..) {
            c.abort();
        }
    }

    pub fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
        self.frozen.store(false, Ordering::SeqCst);
    }
}

/// Copies one direction of a proxied connection, holding every byte while `frozen`.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    let thawed = || async {
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    loop {
        thawed().await;
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Bytes read just as the freeze began wait for the thaw too.
        thawed().await;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// The consumer tests' configuration: batches of 20 with a 30 ms window, a fast config poll and
/// a 5 s processing timeout.
pub fn consumer_config() -> Config {
    let mut c = test_config();
    c.consumer.batch_size = 20;
    c.consumer.batch_window = Duration::from_millis(30);
    c.consumer.config_poll_interval = Duration::from_millis(200);
    c.consumer.processing_timeout = Duration::from_secs(5);
    c
}

/// A context on [`consumer_config`], with tracing set up.
pub async fn consumer_context() -> AppContext {
    let config = consumer_config();
    crate::observability::telemetry::init(&config);
    context(config, "consumer-test").await
}

/// A new tenant with a unique name.
pub async fn tenant(ctx: &AppContext) -> TenantId {
    let name = TenantName::parse(&unique("tenant")).unwrap();
    crate::services::tenants::create(ctx, &name, None)
        .await
        .unwrap()
        .id
}

/// Publishes one message and checks it reached the broker.
pub async fn publish(ctx: &AppContext, t: TenantId, queue: &str, body: Value) -> MessageId {
    let item = PublishItem {
        queue_name: queue.into(),
        message_body: body,
        headers: None,
        idempotency_key: None,
        ..Default::default()
    };
    let accepted = crate::services::messages::publish(ctx, t, item)
        .await
        .unwrap();
    assert_eq!(accepted.status, MessageStatus::Queued);
    accepted.id
}

pub async fn message(ctx: &AppContext, t: TenantId, id: MessageId) -> Message {
    crate::services::messages::get(ctx, t, id).await.unwrap()
}
