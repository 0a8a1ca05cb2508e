//! The API function: one axum Router, served by `lambda_http` inside Lambda and by a plain
//! HTTP server outside it.

pub mod error;
pub mod extract;
pub mod openapi;
pub mod routes;
pub mod state;

pub use routes::router;
pub use state::ApiState;
