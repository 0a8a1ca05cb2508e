use std::time::Duration;

use axum::{Json, Router, extract::State, http::StatusCode, routing::get};
use serde::Serialize;

use crate::state::ApiState;

pub fn routes() -> Router<ApiState> {
    Router::new().route("/health", get(health))
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    checks: Checks,
}

#[derive(Serialize)]
struct Checks {
    database: &'static str,
    broker: &'static str,
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// 200 when PostgreSQL and RabbitMQ both answer; 503 naming the one that does not.
async fn health(State(s): State<ApiState>) -> (StatusCode, Json<Health>) {
    let db = async {
        let client = s.ctx.db.get().await.ok()?;
        client.simple_query("SELECT 1").await.ok().map(|_| ())
    };
    let broker = s.ctx.broker.ping();
    let (db, broker) = tokio::join!(
        tokio::time::timeout(CHECK_TIMEOUT, db),
        tokio::time::timeout(CHECK_TIMEOUT, broker)
    );
    let database = if matches!(db, Ok(Some(()))) {
        "ok"
    } else {
        "unavailable"
    };
    let broker = if matches!(broker, Ok(Ok(()))) {
        "ok"
    } else {
        "unavailable"
    };
    let healthy = database == "ok" && broker == "ok";
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Health {
            status: if healthy { "ok" } else { "unavailable" },
            checks: Checks { database, broker },
        }),
    )
}
