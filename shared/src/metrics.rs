//! Metric names (the `metrics` facade) and the Prometheus recorder used outside Lambda.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const MESSAGES_PUBLISHED: &str = "msgsvc_messages_published_total";
pub const MESSAGES_PUBLISH_DEFERRED: &str = "msgsvc_messages_publish_deferred_total";
pub const MESSAGES_PROCESSED: &str = "msgsvc_messages_processed_total";
pub const PROCESSING_DURATION: &str = "msgsvc_processing_duration_seconds";
pub const END_TO_END_LATENCY: &str = "msgsvc_end_to_end_latency_seconds";
pub const WORKERS_BUSY: &str = "msgsvc_consumer_workers_busy";
pub const WORKERS_DESIRED: &str = "msgsvc_consumer_workers_desired";
pub const RELAY_REPUBLISHED: &str = "msgsvc_relay_republished_total";
pub const HTTP_REQUESTS: &str = "msgsvc_http_requests_total";
pub const HTTP_DURATION: &str = "msgsvc_http_request_duration_seconds";

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder once per process and returns its handle.
pub fn prometheus() -> &'static PrometheusHandle {
    PROMETHEUS.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only when another recorder is installed already; keep that one.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}
