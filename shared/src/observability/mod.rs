//! What the service tells its operators: logs and traces ([`telemetry`]) and metrics
//! ([`metrics`]: Prometheus outside Lambda, CloudWatch EMF inside).

mod json_log;
pub mod metrics;
pub mod telemetry;
