//! Metrics through the `metrics` facade. Every metric is in [`CATALOG`] with its type, unit,
//! labels and the processes that export it; the README's list, the dashboards and a test are
//! checked against it. Outside Lambda a Prometheus recorder serves them as text; inside Lambda
//! they are written to stdout in CloudWatch Embedded Metric Format after each invocation.

use std::sync::OnceLock;

use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::AppContext;

pub const MESSAGES_PUBLISHED: &str = "msgsvc_messages_published_total";
pub const MESSAGES_PUBLISH_DEFERRED: &str = "msgsvc_messages_publish_deferred_total";
pub const MESSAGES_PROCESSED: &str = "msgsvc_messages_processed_total";
pub const MESSAGES_REPLAYED: &str = "msgsvc_messages_replayed_total";
pub const PROCESSING_DURATION: &str = "msgsvc_processing_duration_seconds";
pub const END_TO_END_LATENCY: &str = "msgsvc_end_to_end_latency_seconds";
pub const WORKERS_DESIRED: &str = "msgsvc_consumer_workers_desired";
pub const WORKERS_BUSY: &str = "msgsvc_consumer_workers_busy";
pub const QUEUE_READY: &str = "msgsvc_queue_messages_ready";
pub const QUEUE_UNACKED: &str = "msgsvc_queue_messages_unacked";
pub const QUEUE_OLDEST_AGE: &str = "msgsvc_queue_oldest_pending_age_seconds";
pub const RELAY_REPUBLISHED: &str = "msgsvc_relay_republished_total";
pub const RELAY_SWEEPS: &str = "msgsvc_relay_sweeps_total";
pub const MESSAGES_SCHEDULED: &str = "msgsvc_messages_scheduled";
pub const SCHEDULED_RELEASED: &str = "msgsvc_scheduled_released_total";
pub const ORDERING_DEFERRED: &str = "msgsvc_ordering_deferred_total";
pub const RETENTION_DELETED: &str = "msgsvc_retention_deleted_total";
pub const BATCHES_FAILED: &str = "msgsvc_consumer_batches_failed_total";
pub const UNMAPPED_MESSAGES: &str = "msgsvc_consumer_unmapped_messages_total";
pub const HTTP_REQUESTS: &str = "msgsvc_http_requests_total";
pub const HTTP_DURATION: &str = "msgsvc_http_request_duration_seconds";
pub const DB_POOL_CONNECTIONS: &str = "msgsvc_db_pool_connections";
pub const DB_POOL_MAX: &str = "msgsvc_db_pool_max_connections";
pub const BROKER_CONNECTED: &str = "msgsvc_broker_connected";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Process {
    Api,
    Consumer,
}

pub struct MetricDef {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Unit,
    pub labels: &'static [&'static str],
    pub exported_by: &'static [Process],
    pub help: &'static str,
}

const TQ: &[&str] = &["tenant_id", "queue"];
const API: &[Process] = &[Process::Api];
const CONSUMER: &[Process] = &[Process::Consumer];
const BOTH: &[Process] = &[Process::Api, Process::Consumer];

/// Every metric the service exports. Tenant and queue labels are bounded by the number of
/// tenant queues; HTTP routes are templates, never raw paths.
pub const CATALOG: &[MetricDef] = &[
    MetricDef {
        name: MESSAGES_PUBLISHED,
        kind: Kind::Counter,
        unit: Unit::Count,
        labels: TQ,
        exported_by: API,
        help: "Messages published and confirmed by the broker (API publishes and redrives).",
    },
    MetricDef {
        name: MESSAGES_PUBLISH_DEFERRED,
        kind: Kind::Counter,
        unit: Unit::Count,
        labels: TQ,
        exported_by: API,
        help: "Accepted messages whose publish was not confirmed; left pending for the outbox relay.",
    },
    MetricDef {
        name: MESSAGES_PROCESSED,
        kind: Kind::Counter,
        unit: Unit::Count,
        labels: &["tenant_id", "queue", "outcome"],
        exported_by: CONSUMER,
        help: "Processing attempts by outcome: completed, retried or dead_lettered.",
    },
    MetricDef {
        name: MESSAGES_REPLAYED,
        kind: Kind::Counter,
        unit: Unit::Count,
        labels: TQ,
        exported_by: API,
        help: "Settled messages put back for delivery by a replay request.",
    },
    MetricDef {
        name: PROCESSING_DURATION,
        kind: Kind::Histogram,
        unit: Unit::Seconds,
        labels: TQ,
        exported_by: CONSUMER,
        help: "Time one processing attempt took.",
    },
    MetricDef {
        name: END_TO_END_LATENCY,
        kind: Kind::Histogram,
        unit: Unit::Seconds,
        labels: TQ,
        exported_by: CONSUMER,
        help: "Time from publish to completion of a message.",
    },
    MetricDef {
        name: BATCHES_FAILED,
        kind: Kind::Counter,
        unit: Unit::Count,
        labels: &[],
        exported_by: CONSUMER,
        help: "Batches failed for an infrastructure fault (database or broker); the broker redelivers them.",
    },
    MetricDef {
        name: UNMAPPED_MESSAGES,
        kind: Kind::Counter,
        unit: Unit::Count,
        // tenant_id only on a tenant work queue; queue is then the tenant's queue name, else
        // the broker queue's own name.
        labels: &["tenant_id", "queue", "reason"],
        exported_by: CONSUMER,
        help: "Deliveries acknowledged without processing because they are none of ours, by reason: no_message_id, invalid_message_id, unknown_message or not_a_tenant_queue.",
    },
    MetricDef {
        name: WORKERS_DESIRED,
        kind: Kind::Gauge,
        unit: Unit::Count,
        labels: TQ,
        exported_by: CONSUMER,
        help: "Configured workers of a tenant queue (0 when paused).",
    },
    MetricDef {
        name: WORKERS_BUSY,
        kind: Kind::Gauge,
        unit: Unit::Count,
        labels: TQ,
        exported_by: CONSUMER,
        help: "Messages of a tenant queue being processed right now.",
    },
    MetricDef {
        name: QUEUE_READY,
        kind: Kind::Gauge,
        unit: Unit::Count,
        labels: TQ,
        exported_by: CONSUMER,
        help: "Messages ready on the tenant queue's work queue (from the broker).",
    },
    MetricDef {
        name: QUEUE_UNACKED,
        kind: Kind::Gauge,
        unit: Unit::Count,
        labels: TQ,
        exported_by: CONSUMER,
        help: "Messages delivered but not yet acknowledged on the work queue (from the broker).",
    },
    MetricDef {
        name: QUEUE_OLDEST_AGE,
        kind: Kind::Gauge,
        unit: Unit::Seconds,
        labels: TQ,
        exported_by: CONSUMER,
        help: "Age of the oldest message still waiting (pending, queued or retrying); 0 when none waits.",
    },
    MetricDef {
        name: RELAY_REPUBLISHED,
        kind: Kind::Counter,
        unit: Unit::Count,
        labels: &[],
        exported_by: API,
        help: "Messages the outbox relay put back on the broker.",
    },
    MetricDef {
        name: RELAY_SWEEPS,
        kind: Kind::Counter,
        unit: Unit::Count,
        labels: &[],
        exported_by: API,
        help: "Outbox relay sweeps run.",
    },
    MetricDef {
        name: MESSAGES_SCHEDULED,
        kind: Kind::Gauge,
        unit: Unit::Count,
        labels: &[],
        exported_by: API,
        help: "Messages stored scheduled for later delivery, all tenants, as of the relay's last tick.",
    },
    MetricDef {
        name: SCHEDULED_RELEASED,
        kind: Kind::Counter,
        unit: Unit::Count,
        labels: &[],
        exported_by: API,
        help: "Scheduled messages the relay released to their queues when they came due.",
    },
    MetricDef {
        name: ORDERING_DEFERRED,
        kind: Kind::Counter,
        unit: Unit::Count,
        labels: TQ,
        exported_by: CONSUMER,
        help: "Deliveries put aside behind an earlier unsettled message of their ordering key (no attempt used).",
    },
    MetricDef {
        name: RETENTION_DELETED,
        kind: Kind::Counter,
        unit: Unit::Count,
        labels: &["table"],
        exported_by: API,
        help: "Rows the retention sweep deleted, by table: messages past their tenant's retention and their message_attempts.",
    },
    MetricDef {
        name: HTTP_REQUESTS,
        kind: Kind::Counter,
        unit: Unit::Count,
        labels: &["method", "route", "status"],
        exported_by: API,
        help: "HTTP requests by method, route template and status.",
    },
    MetricDef {
        name: HTTP_DURATION,
        kind: Kind::Histogram,
        unit: Unit::Seconds,
        labels: &["method", "route", "status"],
        exported_by: API,
        help: "HTTP request duration.",
    },
    MetricDef {
        name: DB_POOL_CONNECTIONS,
        kind: Kind::Gauge,
        unit: Unit::Count,
        labels: &["state"],
        exported_by: BOTH,
        help: "Database pool connections by state: idle or in_use.",
    },
    MetricDef {
        name: DB_POOL_MAX,
        kind: Kind::Gauge,
        unit: Unit::Count,
        labels: &[],
        exported_by: BOTH,
        help: "Database pool size limit.",
    },
    MetricDef {
        name: BROKER_CONNECTED,
        kind: Kind::Gauge,
        unit: Unit::Count,
        labels: &[],
        exported_by: BOTH,
        help: "1 while the process holds an open RabbitMQ connection, else 0.",
    },
];

pub fn find(name: &str) -> Option<&'static MetricDef> {
    CATALOG.iter().find(|m| m.name == name)
}

fn describe_all() {
    for m in CATALOG {
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, m.unit, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.name, m.unit, m.help),
            Kind::Histogram => metrics::describe_histogram!(m.name, m.unit, m.help),
        }
    }
}

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder once per process and returns its handle.
pub fn prometheus() -> &'static PrometheusHandle {
    PROMETHEUS.get_or_init(|| {
        const BUCKETS: &[f64] = &[
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            60.0, 300.0,
        ];
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .expect("valid buckets")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only when another recorder is installed already; keep that one.
        let _ = metrics::set_global_recorder(recorder);
        describe_all();
        handle
    })
}

/// Installs the CloudWatch EMF collector (inside Lambda). Metrics go to namespace
/// `METRICS_NAMESPACE` (default `msgsvc`) with the function name as a dimension.
pub fn cloudwatch() -> anyhow::Result<&'static metrics_cloudwatch_embedded::Collector> {
    let namespace = std::env::var("METRICS_NAMESPACE").unwrap_or_else(|_| "msgsvc".into());
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".into());
    let collector = metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(namespace)
        .with_dimension("function", function)
        .with_lambda_request_id("RequestId")
        .init()
        .map_err(|e| anyhow::anyhow!("cannot install the EMF recorder: {e}"))?;
    describe_all();
    Ok(collector)
}

/// Samples the process's own gauges: database pool and broker connection.
pub fn record_process_gauges(ctx: &AppContext) {
    let status = ctx.db.status();
    let idle = status.available;
    metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "idle").set(idle as f64);
    metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "in_use")
        .set(status.size.saturating_sub(idle) as f64);
    metrics::gauge!(DB_POOL_MAX).set(status.max_size as f64);
    metrics::gauge!(BROKER_CONNECTED).set(if ctx.brokers.home().broker.is_connected() {
        1.0
    } else {
        0.0
    });
}

/// Samples the process gauges every few seconds (long-running processes).
pub fn spawn_process_gauges(ctx: AppContext) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            record_process_gauges(&ctx);
        }
    })
}

/// `tenant_id` and `queue` labels.
pub fn tq(tenant: &crate::domain::TenantId, queue: &str) -> [(&'static str, String); 2] {
    [
        ("tenant_id", tenant.to_string()),
        ("queue", queue.to_string()),
    ]
}

/// Samples per-queue gauges for every active tenant queue: broker depth (when the management
/// API answers) and the oldest waiting message's age.
pub async fn record_queue_gauges(ctx: &AppContext) -> crate::Result<()> {
    let configs = crate::db::consumer_configs::list_all_of_active_tenants(&ctx.db).await?;
    let ages = crate::db::queue_stats::oldest_waiting_ages(&ctx.db).await?;
    let mut depths = Vec::new();
    for e in ctx.brokers.all(&ctx.db).await? {
        let Some(url) = e.management_url.as_deref() else {
            continue;
        };
        match crate::broker::stats::queue_depths(&ctx.http, url, &e.vhost, None).await {
            Ok(d) => depths.extend(d),
            Err(err) => {
                tracing::debug!(broker = %e.id, error = %err, "RabbitMQ management API unreachable")
            }
        }
    }
    for c in &configs {
        let key = (c.tenant_id, c.queue_name.clone());
        let labels = tq(&c.tenant_id, &c.queue_name);
        metrics::gauge!(QUEUE_OLDEST_AGE, &labels).set(ages.get(&key).copied().unwrap_or(0.0));
    }
    // The broker may hold queues of tenants this database does not know (another deployment
    // or environment on the same vhost); only ours are exported.
    let ours: std::collections::HashSet<_> = configs
        .iter()
        .map(|c| (c.tenant_id, c.queue_name.as_str()))
        .collect();
    for d in depths
        .iter()
        .filter(|d| ours.contains(&(d.queue.tenant_id, d.queue.queue_name.as_str())))
    {
        let labels = tq(&d.queue.tenant_id, d.queue.queue_name.as_str());
        metrics::gauge!(QUEUE_READY, &labels).set(d.ready as f64);
        metrics::gauge!(QUEUE_UNACKED, &labels).set(d.unacked as f64);
    }
    Ok(())
}

pub use metrics_cloudwatch_embedded::lambda as emf_lambda;
