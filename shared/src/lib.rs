//! Code every function shares: configuration, domain types, repositories, the broker, auth,
//! metrics and the one domain error type.

pub mod auth;
pub mod broker;
pub mod config;
pub mod config_file;
pub mod context;
pub mod control_plane;
pub mod db;
pub mod delivery;
pub mod domain;
pub mod error;
pub mod local;
pub mod observability;
pub mod outbox;
pub mod services;
pub mod shutdown;

pub use config::Config;
pub use context::AppContext;
pub use error::{Error, Result};

/// True when a Lambda runtime drives this process (in AWS or under `cargo lambda watch`).
pub fn running_in_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
}

#[cfg(feature = "testkit")]
pub mod testkit;
