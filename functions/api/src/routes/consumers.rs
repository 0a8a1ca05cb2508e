use axum::{Json, extract::State};
use serde::{Deserialize, Deserializer, Serialize};
use shared::{
    domain::{
        ConsumerConfig, ConsumerConfigUpdate,
        bounds::{json_integer, json_integer_opt, nullable},
        consumer_config::{
            ENDPOINT_URL_PATTERN, MAX_ENDPOINT_URL_LEN, RETRY_ATTEMPTS, RETRY_DELAY_MS,
        },
    },
    services::consumers::{self, QueueStatus},
};

use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;

use super::params::{QueueNameParam, QueuePath, TenantPath};
use crate::{
    deployment::WorkerCount,
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
    #[serde(deserialize_with = "json_integer")]
    #[schema(value_type = WorkerCount)]
    workers: i64,
    #[serde(default, deserialize_with = "json_integer_opt")]
    #[schema(schema_with = retry_attempts_schema)]
    retry_attempts: Option<i64>,
    #[serde(default, deserialize_with = "json_integer_opt")]
    #[schema(schema_with = retry_delay_ms_schema)]
    retry_delay_ms: Option<i64>,
    enabled: Option<bool>,
    /// An absolute http(s) URL to deliver to; `null` clears it.
    #[serde(default, deserialize_with = "explicit")]
    #[schema(schema_with = endpoint_url_schema)]
    endpoint_url: Option<Option<String>>,
    /// What the later messages of an ordering key do once one of them is dead-lettered:
    /// `continue` (the default) or `block` (they wait until it is redriven and completes).
    #[schema(value_type = Option<shared::domain::OnDeadLetter>)]
    on_dead_letter: Option<String>,
}

fn retry_attempts_schema() -> utoipa::openapi::Object {
    RETRY_ATTEMPTS.nullable_schema()
}

fn retry_delay_ms_schema() -> utoipa::openapi::Object {
    RETRY_DELAY_MS.nullable_schema()
}

fn endpoint_url_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::{ObjectBuilder, Type, schema::SchemaFormat};
    nullable(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::Custom("uri".into())))
            .max_length(Some(MAX_ENDPOINT_URL_LEN))
            .pattern(Some(ENDPOINT_URL_PATTERN))
            .build(),
    )
}

/// Configure a queue's consumer; the change is applied without a restart.
#[utoipa::path(put, path = "/tenants/{tenant_id}/consumers/{queue_name}/config", tag = "consumers",
    params(QueuePath), request_body = ConfigRequest,
    responses((status = 200, description = "The stored config", body = ConsumerConfig),
        (status = 409, description = "Over the tenant's queue limit, or the tenant is deactivated")))]
async fn configure(
    State(s): State<ApiState>,
    TenantScope(tenant): TenantScope,
    PathParams(QueueNameParam { queue_name: queue }): PathParams<QueueNameParam>,
    JsonBody(req): JsonBody<ConfigRequest>,
) -> ApiResult<Json<ConsumerConfig>> {
    let mut update = ConsumerConfigUpdate::parse(
        &queue,
        req.workers,
        req.retry_attempts,
        req.retry_delay_ms,
        req.enabled,
        req.endpoint_url,
        &s.ctx.config.consumer,
    )?;
    update.on_dead_letter = req.on_dead_letter.as_deref().map(str::parse).transpose()?;
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
