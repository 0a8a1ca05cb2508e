use std::time::Instant;

use axum::{
    Router,
    extract::{MatchedPath, Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use shared::{Config, observability::metrics as m};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{route, scope::AdminScope, state::ApiState};

/// `/metrics` as the configuration says: absent unless `METRICS_ENABLED` (off in Lambda, where
/// metrics go to CloudWatch as EMF and the route would be public through API Gateway), and
/// behind an admin token when `METRICS_REQUIRE_AUTH` (its labels name every tenant and queue).
pub fn routes(config: &Config) -> Router<ApiState> {
    if !config.metrics_enabled {
        return Router::new();
    }
    // Install the recorder now, so metrics recorded before the first scrape are kept.
    m::prometheus();
    let handler = if config.metrics_require_auth {
        get(render_for_admin)
    } else {
        get(render)
    };
    Router::new().route(&config.metrics_path, handler)
}

/// The route's documentation, as [`routes`] serves it (`None` when it is not served).
pub fn documented(config: &Config) -> Option<utoipa::openapi::OpenApi> {
    if !config.metrics_enabled {
        return None;
    }
    let router: OpenApiRouter<ApiState> = if config.metrics_require_auth {
        OpenApiRouter::new().routes(route!(render_for_admin))
    } else {
        OpenApiRouter::new().routes(routes!(render))
    };
    let mut doc = router.into_openapi();
    if let Some(item) = doc.paths.paths.shift_remove("/metrics") {
        doc.paths.paths.insert(config.metrics_path.clone(), item);
    }
    Some(doc)
}

/// Prometheus metrics (text exposition format). Served at `METRICS_PATH` when
/// `METRICS_ENABLED` (default outside Lambda only; inside, metrics go to CloudWatch as EMF);
/// needs an admin token when `METRICS_REQUIRE_AUTH`.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
async fn render(State(s): State<ApiState>) -> impl IntoResponse {
    // Process gauges are sampled at scrape time too, so a scrape never shows a state older
    // than itself (the background sampler serves the EMF path and long gaps between scrapes).
    m::record_process_gauges(&s.ctx);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        m::prometheus().render(),
    )
}

/// Prometheus metrics (text exposition format). Served at `METRICS_PATH` when
/// `METRICS_ENABLED` (default outside Lambda only; inside, metrics go to CloudWatch as EMF);
/// needs an admin token when `METRICS_REQUIRE_AUTH`.
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "render", responses(
    (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
async fn render_for_admin(_: AdminScope, state: State<ApiState>) -> impl IntoResponse {
    render(state).await
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
