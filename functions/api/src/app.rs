//! The whole Router: the documented routes, `/metrics`, the document itself, and the layers
//! every request passes (request ids, tracing, timeouts, body limit, CORS).

use std::time::Duration;

use axum::{Router, extract::DefaultBodyLimit, middleware, routing::get};
use tower_http::{
    cors::{AllowOrigin, Any, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::{DefaultOnResponse, TraceLayer},
};

use crate::{
    error::ApiError,
    openapi,
    routes::{self, MAX_REQUEST_BYTES, observability},
    state::ApiState,
};

pub fn router(state: ApiState) -> Router {
    let config = state.ctx.config.clone();
    let (mut app, _) = routes::documented().split_for_parts();
    app = app.route("/api/v1/openapi.json", get(openapi::serve));
    app = app.merge(observability::routes(&config));
    app.fallback(not_found)
        .layer(middleware::from_fn(observability::track_http))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            Duration::from_secs(29),
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(observability::request_span)
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(cors(&config.cors_allowed_origins))
        .with_state(state)
}

fn cors(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new().allow_methods(Any).allow_headers(Any);
    if origins.iter().any(|o| o == "*") {
        layer.allow_origin(Any)
    } else {
        let list = origins
            .iter()
            .filter_map(|o| o.parse().ok())
            .collect::<Vec<_>>();
        layer.allow_origin(AllowOrigin::list(list))
    }
}

async fn not_found() -> ApiError {
    ApiError(shared::Error::NotFound(shared::error::Code::NotFound))
}
