use std::time::Duration;

use axum::{Json, extract::State, http::StatusCode};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::state::ApiState;

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(health))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Health {
    #[schema(value_type = CheckState)]
    status: &'static str,
    checks: Checks,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Checks {
    #[schema(value_type = CheckState)]
    database: &'static str,
    #[schema(value_type = CheckState)]
    broker: &'static str,
}

/// `ok`, or `unavailable` when the dependency does not answer.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
enum CheckState {
    Ok,
    Unavailable,
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// 200 when PostgreSQL and RabbitMQ both answer; 503 naming the one that does not.
#[utoipa::path(get, path = "/health", tag = "operations", responses(
    (status = 200, description = "Both dependencies answer", body = Health),
    (status = 503, description = "A dependency does not answer", body = Health)))]
async fn health(State(s): State<ApiState>) -> (StatusCode, Json<Health>) {
    let db = async {
        let client = s.ctx.db.get().await.ok()?;
        client.simple_query("SELECT 1").await.ok().map(|_| ())
    };
    let broker = s.ctx.brokers.home().broker.ping();
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
