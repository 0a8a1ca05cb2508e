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
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(3))
                .build()?,
        })
    }
}
