//! The resources a function builds once per execution environment and shares across requests.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use crate::{
    Config,
    broker::{Broker, QueueRef},
    db,
};

#[derive(Clone)]
pub struct AppContext {
    pub config: Arc<Config>,
    pub db: db::Pool,
    pub broker: Arc<Broker>,
    /// Tenant queues whose consumer config is known to exist, so publishing does not upsert it
    /// every time.
    pub known_queues: Arc<Mutex<HashSet<QueueRef>>>,
    /// For the RabbitMQ management API.
    pub http: reqwest::Client,
    queued_marker: Arc<std::sync::OnceLock<crate::queued_marker::QueuedMarker>>,
}

impl AppContext {
    /// Builds the pool and the broker handle; neither connects until first use, so a function
    /// starts fast and a dependency that is down at start-up is retried later.
    pub fn new(config: Config, process_name: &str) -> anyhow::Result<Self> {
        let db = db::pool(&config)?;
        let broker = Broker::new(config.rabbitmq_url.clone(), process_name);
        Ok(Self {
            config: Arc::new(config),
            db,
            broker,
            known_queues: Arc::default(),
            queued_marker: Arc::default(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(3))
                .build()?,
        })
    }

    /// The group-commit marker for `pending -> queued`, started on first use.
    pub fn queued_marker(&self) -> &crate::queued_marker::QueuedMarker {
        self.queued_marker
            .get_or_init(|| crate::queued_marker::QueuedMarker::start(self.db.clone()))
    }

    /// Opens the database and broker connections now (Lambda's init phase), so the first
    /// invocation does not pay for them. Failures are logged; both reconnect on demand.
    pub async fn warm_up(&self) {
        let timeout = std::time::Duration::from_secs(3);
        let (db, broker) = tokio::join!(
            tokio::time::timeout(timeout, self.db.get()),
            tokio::time::timeout(timeout, self.broker.connection()),
        );
        if !matches!(db, Ok(Ok(_))) {
            tracing::warn!("database not reachable at start-up; will retry on demand");
        }
        if !matches!(broker, Ok(Ok(_))) {
            tracing::warn!("broker not reachable at start-up; will retry on demand");
        }
    }
}
