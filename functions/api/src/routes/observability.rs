use std::time::Instant;

use axum::{
    Router,
    extract::{MatchedPath, Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use shared::observability::metrics as m;

use crate::state::ApiState;

pub fn routes(path: &str) -> Router<ApiState> {
    // Install the recorder now, so metrics recorded before the first scrape are kept.
    shared::observability::metrics::prometheus();
    Router::new().route(path, get(render))
}

/// Prometheus metrics (text exposition format). Served at `METRICS_PATH` when
/// `METRICS_ENABLED`; inside Lambda metrics go to CloudWatch instead.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub(crate) async fn render(State(s): State<ApiState>) -> impl IntoResponse {
    // Process gauges are sampled at scrape time too, so a scrape never shows a state older
    // than itself (the background sampler serves the EMF path and long gaps between scrapes).
    shared::observability::metrics::record_process_gauges(&s.ctx);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared::observability::metrics::prometheus().render(),
    )
}

/// Counts requests by route template (bounded cardinality) and status, and times them.
pub async fn track_http(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!(m::HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(m::HTTP_DURATION, &labels).record(start.elapsed().as_secs_f64());
    resp
}

/// One span per request with the request id and, read from the path, the tenant and message
/// ids, so every log line of the request carries them. Headers (tokens) are never recorded.
pub fn request_span(req: &Request) -> tracing::Span {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let path = req.uri().path();
    let after = |key: &str| {
        let mut segments = path.split('/');
        segments.by_ref().find(|s| *s == key);
        segments
            .next()
            .filter(|s| uuid::Uuid::parse_str(s).is_ok())
            .unwrap_or_default()
            .to_string()
    };
    tracing::info_span!(
        "request",
        method = %req.method(),
        path,
        request_id,
        tenant_id = %after("tenants"),
        message_id = %after("messages"),
    )
}
