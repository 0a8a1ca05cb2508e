use axum::{
    Json, Router,
    extract::State,
    routing::{get, put},
};
use serde::{Deserialize, Deserializer, Serialize};
use shared::{
    consumers::{self, QueueStatus},
    control_plane::{self, Job},
    domain::{ConsumerConfig, ConsumerConfigUpdate, TenantId},
};

use crate::{
    error::ApiResult,
    extract::{Caller, JsonBody, PathParams},
    state::ApiState,
};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/tenants/{tenant_id}/consumers", get(list))
        .route(
            "/tenants/{tenant_id}/consumers/{queue_name}/config",
            put(configure),
        )
        .route("/consumers/status", get(status))
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn explicit<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigRequest {
    workers: i64,
    retry_attempts: Option<i64>,
    retry_delay_ms: Option<i64>,
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "explicit")]
    endpoint_url: Option<Option<String>>,
}

async fn configure(
    State(s): State<ApiState>,
    Caller(caller): Caller,
    PathParams((tenant, queue)): PathParams<(String, String)>,
    JsonBody(req): JsonBody<ConfigRequest>,
) -> ApiResult<Json<ConsumerConfig>> {
    let tenant: TenantId = tenant.parse()?;
    caller.require_tenant(tenant)?;
    let update = ConsumerConfigUpdate::parse(
        &queue,
        req.workers,
        req.retry_attempts,
        req.retry_delay_ms,
        req.enabled,
        req.endpoint_url,
        &s.ctx.config.consumer,
    )?;
    let config = consumers::configure(&s.ctx, tenant, &update).await?;
    let job = Job::ApplyConsumer {
        tenant_id: tenant,
        queue_name: config.queue_name.clone(),
    };
    control_plane::request(s.control.as_ref(), job).await;
    Ok(Json(config))
}

#[derive(Serialize)]
struct StatusList {
    items: Vec<QueueStatus>,
}

/// The tenant's queues with config, desired and applied state, and live figures.
async fn list(
    State(s): State<ApiState>,
    Caller(caller): Caller,
    PathParams(tenant): PathParams<String>,
) -> ApiResult<Json<StatusList>> {
    let tenant: TenantId = tenant.parse()?;
    caller.require_tenant(tenant)?;
    let items = consumers::status(&s.ctx, Some(tenant)).await?;
    Ok(Json(StatusList { items }))
}

/// Every tenant queue (admin).
async fn status(State(s): State<ApiState>, Caller(caller): Caller) -> ApiResult<Json<StatusList>> {
    caller.require_admin()?;
    let items = consumers::status(&s.ctx, None).await?;
    Ok(Json(StatusList { items }))
}
