//! One module per resource; each handler is thin and calls the domain layer in `shared`.

mod consumers;
mod dead_letters;
mod health;
mod messages;
pub(crate) mod observability;
mod tenants;

use std::time::Duration;

use axum::{Json, Router, extract::DefaultBodyLimit, middleware};
use tower_http::{
    cors::{AllowOrigin, Any, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::{DefaultOnResponse, TraceLayer},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::state::ApiState;

/// Largest request body accepted (a batch of messages); single messages are limited further by
/// `MESSAGE_MAX_BODY_BYTES`.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// Every documented route: the Router and the OpenAPI paths come from the same list, so a route
/// cannot go undocumented. (`/metrics` is added by [`router`] at its configured path.)
pub(crate) fn documented() -> OpenApiRouter<ApiState> {
    let api = OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .merge(tenants::routes())
        .merge(messages::routes())
        .merge(dead_letters::routes())
        .merge(consumers::routes());
    OpenApiRouter::new()
        .nest("/api/v1", api)
        .merge(health::routes())
}

/// This API's OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3 document", body = Object)))]
async fn openapi_json() -> Json<&'static serde_json::Value> {
    Json(crate::openapi::document_json())
}

pub fn router(state: ApiState) -> Router {
    let config = state.ctx.config.clone();
    let (mut app, _) = documented().split_for_parts();
    if config.metrics_enabled {
        app = app.merge(observability::routes(&config.metrics_path));
    }
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

async fn not_found() -> crate::error::ApiError {
    crate::error::ApiError(shared::Error::NotFound(shared::error::Code::NotFound))
}
