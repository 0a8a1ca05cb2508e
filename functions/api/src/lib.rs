//! The API function: one axum Router, served by `lambda_http` inside Lambda and by a plain
//! HTTP server outside it.

mod app;
pub mod cli;
pub mod contract;
pub mod deployment;
pub mod error;
pub mod extract;
pub mod lambda;
pub mod openapi;
pub mod routes;
pub mod scope;
pub mod server;
pub mod state;

use axum::{
    Router,
    extract::Request,
    http::HeaderValue,
    middleware::{self, Next},
    response::Response,
};
use lambda_http::request::RequestContext;

pub use app::router;
pub use state::ApiState;

/// Inside Lambda, the request's id is API Gateway's (`requestContext.requestId`, which its
/// access logs and `$context.requestId` show): it replaces any `x-request-id` the client sent, so
/// the request span's `request_id` and the echoed `x-request-id` header carry it. Outside Lambda
/// (no request context) the router keeps its own ids.
pub fn with_gateway_request_id(router: Router) -> Router {
    router.layer(middleware::from_fn(gateway_request_id))
}

async fn gateway_request_id(mut req: Request, next: Next) -> Response {
    let id = match req.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(c)) => c.request_id.clone(),
        Some(RequestContext::ApiGatewayV1(c)) => c.request_id.clone(),
        _ => None,
    };
    if let Some(id) = id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        req.headers_mut().insert("x-request-id", id);
    }
    next.run(req).await
}
