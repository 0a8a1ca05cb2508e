//! One module per resource; each handler is thin and calls the domain layer in `shared`.

mod brokers;
mod consumers;
mod dead_letters;
mod health;
mod messages;
pub(crate) mod observability;
mod params;
mod replay;
mod schemas;
mod tenants;

use utoipa_axum::router::OpenApiRouter;

pub(crate) use messages::BatchItem;
pub(crate) use params::Cursor;
pub(crate) use schemas::JsonValue;

use crate::state::ApiState;

/// Largest request body accepted (a batch of messages); single messages are limited further by
/// `MESSAGE_MAX_BODY_BYTES`.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// Every documented route: the Router and the OpenAPI paths come from the same list, so a route
/// cannot go undocumented. (`/metrics` and `/api/v1/openapi.json` are added by
/// [`crate::app::router`].)
pub(crate) fn documented() -> OpenApiRouter<ApiState> {
    let api = OpenApiRouter::new()
        .merge(tenants::routes())
        .merge(messages::routes())
        .merge(dead_letters::routes())
        .merge(consumers::routes())
        .merge(replay::routes())
        .merge(brokers::routes());
    OpenApiRouter::new()
        .nest("/api/v1", api)
        .merge(health::routes())
}
