//! Ending a process cleanly: its broker connection closed with an AMQP close and its database
//! connections released, rather than dropped with the process.
//!
//! - Long-running processes stop on SIGTERM or Ctrl-C ([`signal`]).
//! - Inside Lambda, the runtime's graceful-shutdown support ([`close_on_lambda_shutdown`]):
//!   Lambda sends SIGTERM to the runtime when it shuts an execution environment down, but only
//!   when an extension is registered, which `lambda_runtime` does for us with a no-op internal
//!   extension; the runtime then has about 500 ms before SIGKILL
//!   (<https://docs.aws.amazon.com/lambda/latest/dg/runtimes-extensions-api.html>, shutdown
//!   phase; <https://github.com/aws-samples/graceful-shutdown-with-aws-lambda>).

use std::time::Duration;

use crate::AppContext;

/// Within Lambda's shutdown budget for a runtime with an internal extension (500 ms).
const LAMBDA_CLOSE_BUDGET: Duration = Duration::from_millis(400);

/// Resolves on SIGTERM or Ctrl-C.
pub async fn signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
}

/// Closes the broker connections and the database pool.
pub async fn close(ctx: &AppContext) {
    ctx.brokers.close().await;
    ctx.db.close();
    tracing::info!("closed the broker and database connections");
}

/// Inside Lambda: closes `ctx`'s connections when Lambda shuts the environment down, then exits.
/// Call before the runtime starts (extensions register during the Init phase). Where the
/// Runtime API has no Extensions API, the function runs on without it.
pub async fn close_on_lambda_shutdown(ctx: AppContext) {
    let registered = tokio::spawn(lambda_runtime::spawn_graceful_shutdown_handler(
        move || async move {
            if tokio::time::timeout(LAMBDA_CLOSE_BUDGET, close(&ctx))
                .await
                .is_err()
            {
                tracing::warn!("connections not closed within the shutdown budget");
            }
        },
    ))
    .await;
    // It panics when the extension cannot register.
    if registered.is_err() {
        tracing::warn!("no graceful shutdown: the Lambda extension could not register");
    }
}
