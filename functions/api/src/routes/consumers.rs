use axum::{Json, extract::State};
use serde::{Deserialize, Deserializer, Serialize};
use shared::{
    domain::{ConsumerConfig, ConsumerConfigUpdate},
    services::consumers::{self, QueueStatus},
};

use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;

use super::params::{QueueNameParam, QueuePath, TenantPath};
use crate::{
    error::ApiResult,
    extract::{JsonBody, PathParams},
    route,
    scope::{AdminScope, TenantScope},
    state::ApiState,
};

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(route!(list))
        .routes(route!(configure))
        .routes(route!(status))
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn explicit<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Fields left out keep their stored value (or the default, for a new queue).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigRequest {
    /// 0 to `CONSUMER_MAX_WORKERS`; 0 pauses the queue.
    #[schema(minimum = 0)]
    workers: i64,
    #[schema(minimum = 0, maximum = 100)]
    retry_attempts: Option<i64>,
    #[schema(minimum = 10, maximum = 86_400_000)]
    retry_delay_ms: Option<i64>,
    enabled: Option<bool>,
    /// An absolute http(s) URL to deliver to; `null` clears it.
    #[serde(default, deserialize_with = "explicit")]
    #[schema(value_type = Option<String>)]
    endpoint_url: Option<Option<String>>,
}

/// Configure a queue's consumer; the change is applied without a restart.
#[utoipa::path(put, path = "/tenants/{tenant_id}/consumers/{queue_name}/config", tag = "consumers",
    params(QueuePath), request_body = ConfigRequest,
    responses((status = 200, description = "The stored config", body = ConsumerConfig),
        (status = 409, description = "Over the tenant's queue limit")))]
async fn configure(
    State(s): State<ApiState>,
    TenantScope(tenant): TenantScope,
    PathParams(QueueNameParam { queue_name: queue }): PathParams<QueueNameParam>,
    JsonBody(req): JsonBody<ConfigRequest>,
) -> ApiResult<Json<ConsumerConfig>> {
    let update = ConsumerConfigUpdate::parse(
        &queue,
        req.workers,
        req.retry_attempts,
        req.retry_delay_ms,
        req.enabled,
        req.endpoint_url,
        &s.ctx.config.consumer,
    )?;
    Ok(Json(consumers::configure(&s.ctx, tenant, &update).await?))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct StatusList {
    items: Vec<QueueStatus>,
}

/// The tenant's queues with config, desired and applied state, and live figures.
#[utoipa::path(get, path = "/tenants/{tenant_id}/consumers", tag = "consumers", params(TenantPath),
    responses((status = 200, description = "The tenant's queues", body = StatusList)))]
async fn list(
    State(s): State<ApiState>,
    TenantScope(tenant): TenantScope,
) -> ApiResult<Json<StatusList>> {
    let items = consumers::status(&s.ctx, Some(tenant)).await?;
    Ok(Json(StatusList { items }))
}

/// Every tenant queue (admin).
#[utoipa::path(get, path = "/consumers/status", tag = "consumers",
    responses((status = 200, description = "Every tenant queue", body = StatusList)))]
async fn status(State(s): State<ApiState>, _: AdminScope) -> ApiResult<Json<StatusList>> {
    let items = consumers::status(&s.ctx, None).await?;
    Ok(Json(StatusList { items }))
}
