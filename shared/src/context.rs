//! The resources a function builds once per execution environment and shares across requests.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use uuid::Uuid;

use crate::{
    Config,
    broker::{Brokers, QueueRef},
    db,
    db::group_commit::GroupCommit,
    domain::TenantId,
};

#[derive(Clone)]
pub struct AppContext {
    pub config: Arc<Config>,
    pub db: db::Pool,
    /// The broker registry's brokers: every tenant's traffic goes to its own broker
    /// (`brokers.for_tenant`).
    pub brokers: Arc<Brokers>,
    /// Tenant queues whose consumer config is known to exist, so publishing does not upsert it
    /// every time.
    pub known_queues: Arc<Mutex<HashSet<QueueRef>>>,
    /// Tenants' limits and backlog counts, read from PostgreSQL at most once per TTL.
    pub limits: Arc<crate::services::limits::LimitsCache>,
    /// Applies capacity and consumer changes (`CONTROL_PLANE`: local or aws). Services submit
    /// jobs through `control_plane::request` after storing the desired state.
    pub control: Arc<dyn crate::control_plane::ControlPlane>,
    /// For the RabbitMQ management API.
    pub http: reqwest::Client,
    writers: Arc<std::sync::OnceLock<Writers>>,
}

/// Group-commit writers, started on first use.
pub struct Writers {
    /// `pending -> queued` after the broker confirmed.
    pub mark_queued: GroupCommit<(TenantId, Uuid), ()>,
    /// `processing -> completed`; each result says whether the attempt was still current.
    pub complete: GroupCommit<db::messages::Completion, bool>,
}

impl AppContext {
    /// Builds the pool and the broker handle; neither connects until first use, so a function
    /// starts fast and a dependency that is down at start-up is retried later.
    pub fn new(config: Config, process_name: &str) -> anyhow::Result<Self> {
        let db = db::pool(&config)?;
        let brokers = Arc::new(Brokers::new(&config, process_name));
        let control = crate::control_plane::from_config(&config);
        Ok(Self {
            control,
            config: Arc::new(config),
            db,
            brokers,
            known_queues: Arc::default(),
            limits: Arc::default(),
            writers: Arc::default(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(3))
                .build()?,
        })
    }

    /// The group-commit writers (started on first use, inside the runtime).
    pub fn writers(&self) -> &Writers {
        self.writers.get_or_init(|| {
            let pool = self.db.clone();
            let mark_queued = GroupCommit::start(2000, move |pairs: Vec<(TenantId, Uuid)>| {
                let pool = pool.clone();
                async move {
                    db::messages::mark_queued(&pool, &pairs).await?;
                    Ok(vec![(); pairs.len()])
                }
            });
            let pool = self.db.clone();
            let complete = GroupCommit::start(2000, move |items: Vec<db::messages::Completion>| {
                let pool = pool.clone();
                async move {
                    let done = db::messages::complete_many(&pool, &items).await?;
                    Ok(items.iter().map(|c| done.contains(&c.id)).collect())
                }
            });
            Writers {
                mark_queued,
                complete,
            }
        })
    }

    /// Opens the database and home broker connections now (Lambda's init phase), so the first
    /// invocation does not pay for them (a registered broker connects on first use). Failures are logged; both reconnect on demand.
    pub async fn warm_up(&self) {
        let timeout = std::time::Duration::from_secs(3);
        let (db, broker) = tokio::join!(
            tokio::time::timeout(timeout, self.db.get()),
            tokio::time::timeout(timeout, self.brokers.home().broker.connection()),
        );
        if !matches!(db, Ok(Ok(_))) {
            tracing::warn!("database not reachable at start-up; will retry on demand");
        }
        if !matches!(broker, Ok(Ok(_))) {
            tracing::warn!("broker not reachable at start-up; will retry on demand");
        }
    }
}
