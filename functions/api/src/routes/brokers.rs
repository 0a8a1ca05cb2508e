//! The broker registry (admin): which brokers tenants are put on.

use axum::{Json, extract::State, http::StatusCode};
use serde::Deserialize;
use shared::services::brokers::{self, BrokerRequest, BrokerView};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use crate::{
    error::ApiResult,
    extract::{JsonBody, PathParams},
    route,
    scope::AdminScope,
    state::ApiState,
};

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(route!(list))
        .routes(route!(register))
        .routes(route!(show))
        .routes(route!(update))
}

/// The `{broker_id}` path parameter.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct BrokerPath {
    /// The broker's id in the registry (`default`: the deployment's own).
    #[param(pattern = "^[a-z0-9][a-z0-9-]{0,31}$")]
    broker_id: String,
}

/// A broker to register: its id and the settings of [`BrokerRequest`].
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterBroker {
    /// 1 to 32 lowercase letters, digits or `-`.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,31}$")]
    id: String,
    #[schema(
        pattern = "^amqps?://[a-z0-9.-]+(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?(/[A-Za-z0-9%._-]*)?$"
    )]
    amqp_url: Option<String>,
    #[schema(
        pattern = "^https?://[a-z0-9.-]+(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?/?$"
    )]
    management_url: Option<String>,
    #[schema(pattern = "^arn:[^:]+:[^:]+:[^:]*:[^:]*:.+$")]
    mq_broker_arn: Option<String>,
    #[schema(pattern = "^arn:[^:]+:[^:]+:[^:]*:[^:]*:.+$")]
    mq_secret_arn: Option<String>,
    #[schema(minimum = 0, maximum = 1000000)]
    #[serde(default, deserialize_with = "shared::domain::bounds::json_integer_opt")]
    max_queues: Option<i64>,
    accepting: Option<bool>,
}

impl RegisterBroker {
    fn settings(self) -> (String, BrokerRequest) {
        (
            self.id,
            BrokerRequest {
                amqp_url: self.amqp_url,
                management_url: self.management_url,
                mq_broker_arn: self.mq_broker_arn,
                mq_secret_arn: self.mq_secret_arn,
                max_queues: self.max_queues,
                accepting: self.accepting,
            },
        )
    }
}

/// List the registered brokers with the tenants and tenant queues on each.
#[utoipa::path(get, path = "/brokers", tag = "brokers",
    responses((status = 200, description = "Every registered broker", body = Vec<BrokerView>)))]
async fn list(State(s): State<ApiState>, _: AdminScope) -> ApiResult<Json<Vec<BrokerView>>> {
    Ok(Json(brokers::list(&s.ctx).await?))
}

/// Register a broker. New tenants are assigned to the accepting broker with the most room for
/// queues, or to the one `POST /tenants` names; a tenant stays on its broker for good.
#[utoipa::path(post, path = "/brokers", tag = "brokers", request_body = RegisterBroker,
    responses((status = 201, description = "The registered broker", body = BrokerView),
        (status = 409, description = "A broker with this id exists")))]
async fn register(
    State(s): State<ApiState>,
    _: AdminScope,
    JsonBody(req): JsonBody<RegisterBroker>,
) -> ApiResult<(StatusCode, Json<BrokerView>)> {
    let (id, settings) = req.settings();
    let view = brokers::register(&s.ctx, &id, &settings).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Get a broker, with whether it answers this API instance now.
#[utoipa::path(get, path = "/brokers/{broker_id}", tag = "brokers", params(BrokerPath),
    responses((status = 200, description = "The broker", body = BrokerView),
        (status = 404, description = "No broker has this id")))]
async fn show(
    State(s): State<ApiState>,
    _: AdminScope,
    PathParams(p): PathParams<BrokerPath>,
) -> ApiResult<Json<BrokerView>> {
    Ok(Json(brokers::view(&s.ctx, &p.broker_id, true).await?))
}

/// Change a broker's settings (absent or null fields keep their value). `default` takes only
/// `max_queues` and `accepting`; its URLs come from the deployment's configuration (409
/// `broker_configured`).
#[utoipa::path(put, path = "/brokers/{broker_id}", tag = "brokers", params(BrokerPath),
    request_body = BrokerRequest,
    responses((status = 200, description = "The broker now", body = BrokerView),
        (status = 404, description = "No broker has this id"),
        (status = 409, description = "URLs or ARNs given for the default broker")))]
async fn update(
    State(s): State<ApiState>,
    _: AdminScope,
    PathParams(p): PathParams<BrokerPath>,
    JsonBody(req): JsonBody<BrokerRequest>,
) -> ApiResult<Json<BrokerView>> {
    Ok(Json(brokers::update(&s.ctx, &p.broker_id, &req).await?))
}
