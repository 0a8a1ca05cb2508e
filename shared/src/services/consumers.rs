//! Consumer configuration per tenant queue, and its status: desired next to applied state,
//! message counts, recent throughput and failures, queue depth on the broker.

use crate::control_plane::{self, Job};
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{
    AppContext,
    broker::stats,
    db::{
        self,
        consumer_runtime::Applied,
        control_state::{Capacity, Mapping},
        unmapped::UnmappedMessages,
    },
    domain::{ConsumerConfig, ConsumerConfigUpdate, TenantId, Tier},
    error::{Code, Error, Result},
};

/// The window of the status API's recent figures.
pub const RECENT_WINDOW_SECS: f64 = 300.0;

pub async fn configure(
    ctx: &AppContext,
    tenant: TenantId,
    update: &ConsumerConfigUpdate,
) -> Result<ConsumerConfig> {
    let standing = db::limits::standing(&ctx.db, tenant)
        .await?
        .ok_or(Error::NotFound(Code::TenantNotFound))?;
    let limits = standing.overrides.resolve(&ctx.config.limits.tenant);
    let mut client = ctx.db.get().await?;
    let tx = client.transaction().await?;
    super::tenants::lock_active(&tx, tenant).await?;
    super::limits::check_new_queue(&tx, tenant, update.queue_name.as_str(), &limits).await?;
    let config = db::consumer_configs::upsert(&tx, tenant, update, &ctx.config.consumer).await?;
    tx.commit().await?;
    tracing::info!(tenant_id = %tenant, queue = %config.queue_name, workers = config.workers,
        enabled = config.enabled, "consumer config changed");
    let job = Job::ApplyConsumer {
        tenant_id: tenant,
        queue_name: config.queue_name.clone(),
    };
    control_plane::request(ctx, job).await;
    Ok(config)
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Serialize)]
pub struct QueueStatus {
    pub tenant_id: TenantId,
    pub queue_name: String,
    /// The tenant's tier: `pooled` (the shared consumer function) or `dedicated` (its own).
    pub tier: Tier,
    /// The desired state, as configured.
    pub config: ConsumerConfig,
    /// What a consumer applied (absent until one has).
    pub applied: Option<Applied>,
    /// The tenant's capacity: tier, requested, effective and applied reserved concurrency, and
    /// the function its queues map to (absent until the control plane handled the tenant).
    pub capacity: Option<Capacity>,
    /// The queue's event source mapping as the control plane last applied it.
    pub mapping: Option<Mapping>,
    /// Messages being processed right now.
    pub busy_workers: i64,
    /// Messages by status, completed ones excepted.
    pub messages: HashMap<String, i64>,
    /// Ready and unacknowledged on the broker's work queue (absent when the management API is
    /// unreachable).
    pub broker: Option<BrokerDepth>,
    /// Attempts finished in the last five minutes, by outcome.
    pub recent: HashMap<String, i64>,
    pub completed_per_second: f64,
    /// Share of recent attempts that failed (retried or dead-lettered).
    pub failure_rate: f64,
    pub oldest_waiting_age_seconds: Option<f64>,
    pub last_error: Option<LastError>,
    /// Deliveries on the queue that were none of ours (no message id, not a UUID, or an id
    /// this service never issued): acknowledged without processing and counted here.
    pub unmapped: UnmappedMessages,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Serialize)]
pub struct BrokerDepth {
    pub ready: u64,
    pub unacked: u64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Serialize)]
pub struct LastError {
    pub at: DateTime<Utc>,
    pub error: String,
}

/// Status of the tenant's queues, or of every tenant's (admin) when `tenant` is `None`.
pub async fn status(ctx: &AppContext, tenant: Option<TenantId>) -> Result<Vec<QueueStatus>> {
    let configs = match tenant {
        Some(t) => {
            super::tenants::get(ctx, t).await?;
            db::consumer_configs::list_for_tenant(&ctx.db, t).await?
        }
        None => db::consumer_configs::list_all(&ctx.db).await?,
    };
    let (figures, applied, depths, capacities, mappings, unmapped) = tokio::join!(
        db::queue_stats::figures(&ctx.db, tenant, RECENT_WINDOW_SECS),
        db::consumer_runtime::list(&ctx.db, tenant),
        broker_depths(ctx, tenant),
        db::control_state::list(&ctx.db, tenant),
        db::control_state::list_mappings(&ctx.db, tenant),
        db::unmapped::list(&ctx.db, tenant),
    );
    let mut unmapped = unmapped?;
    let capacities: HashMap<_, _> = capacities?.into_iter().map(|c| (c.tenant_id, c)).collect();
    let mut mappings: HashMap<_, _> = mappings?
        .into_iter()
        .map(|m| ((m.tenant_id, m.queue_name.clone()), m))
        .collect();
    let mut figures = figures?;
    let mut applied: HashMap<_, _> = applied?
        .into_iter()
        .map(|a| ((a.tenant_id, a.queue_name.clone()), a))
        .collect();
    let now = Utc::now();
    Ok(configs
        .into_iter()
        .map(|config| {
            let key = (config.tenant_id, config.queue_name.clone());
            let f = figures.remove(&key).unwrap_or_default();
            let recent_total: i64 = f.recent.values().sum();
            let failed = f.recent.get("retrying").copied().unwrap_or(0)
                + f.recent.get("dead_lettered").copied().unwrap_or(0);
            QueueStatus {
                tenant_id: config.tenant_id,
                queue_name: config.queue_name.clone(),
                applied: applied.remove(&key),
                tier: capacities
                    .get(&config.tenant_id)
                    .map_or(Tier::Pooled, |c| c.tier),
                capacity: capacities.get(&config.tenant_id).cloned(),
                mapping: mappings.remove(&key),
                busy_workers: f.by_status.get("processing").copied().unwrap_or(0),
                broker: depths
                    .as_ref()
                    .and_then(|d| d.get(&key))
                    .map(|&(ready, unacked)| BrokerDepth { ready, unacked }),
                completed_per_second: f.recent.get("completed").copied().unwrap_or(0) as f64
                    / RECENT_WINDOW_SECS,
                failure_rate: if recent_total == 0 {
                    0.0
                } else {
                    failed as f64 / recent_total as f64
                },
                oldest_waiting_age_seconds: f
                    .oldest_waiting
                    .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0),
                last_error: f.last_error.map(|(at, error)| LastError { at, error }),
                unmapped: unmapped.remove(&key).unwrap_or_default(),
                messages: f.by_status,
                recent: f.recent,
                config,
            }
        })
        .collect())
}

/// Depths of the tenant's work queues on its broker, or of every tenant's on every broker
/// (admin); `None` when a management API does not answer.
async fn broker_depths(
    ctx: &AppContext,
    tenant: Option<TenantId>,
) -> Option<HashMap<(TenantId, String), (u64, u64)>> {
    let endpoints = match tenant {
        Some(t) => ctx.brokers.for_tenant(&ctx.db, t).await.map(|e| vec![e]),
        None => ctx.brokers.all(&ctx.db).await,
    };
    let endpoints = endpoints
        .inspect_err(|e| tracing::warn!(error = %e, "cannot read the broker registry"))
        .ok()?;
    let mut out = HashMap::new();
    for e in endpoints {
        let Some(url) = e.management_url.as_deref() else {
            continue;
        };
        match stats::queue_depths(&ctx.http, url, &e.vhost, tenant).await {
            Ok(depths) => out.extend(depths.into_iter().map(|d| {
                (
                    (d.queue.tenant_id, d.queue.queue_name.to_string()),
                    (d.ready, d.unacked),
                )
            })),
            Err(err) if tenant.is_some() => {
                tracing::warn!(broker = %e.id, error = %err,
                    "RabbitMQ management API unreachable; queue depths omitted");
                return None;
            }
            // The admin view: one broker not answering omits only its queues' depths.
            Err(err) => tracing::warn!(broker = %e.id, error = %err,
                "RabbitMQ management API unreachable; its queue depths omitted"),
        }
    }
    Some(out)
}
