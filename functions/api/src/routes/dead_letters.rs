use axum::{Json, extract::State};
use serde::Deserialize;
use shared::{
    db::messages::MessageFilter,
    domain::{Message, MessageId, MessageStatus, Page, QueueName},
    services::dead_letters::{self, RedriveReport, RedriveSelector},
    services::messages,
};

use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use super::params::{PageQuery, TenantPath};
use crate::{
    error::ApiResult,
    extract::{JsonBody, QueryParams},
    route,
    scope::TenantScope,
    state::ApiState,
};

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(route!(list))
        .routes(route!(redrive))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only dead letters of this queue.
    #[param(value_type = Option<QueueName>)]
    queue_name: Option<String>,
    #[param(value_type = Option<crate::deployment::PageLimit>)]
    limit: Option<u32>,
    #[param(value_type = Option<super::params::Cursor>)]
    cursor: Option<String>,
}

/// List the tenant's dead-lettered messages, newest first.
#[utoipa::path(get, path = "/tenants/{tenant_id}/dead-letters", tag = "dead letters",
    params(TenantPath, ListQuery),
    responses((status = 200, description = "One page of dead letters", body = Page<Message>)))]
async fn list(
    State(s): State<ApiState>,
    TenantScope(tenant): TenantScope,
    QueryParams(q): QueryParams<ListQuery>,
) -> ApiResult<Json<Page<Message>>> {
    let filter = MessageFilter {
        status: Some(MessageStatus::DeadLettered),
        queue_name: q
            .queue_name
            .as_deref()
            .map(QueueName::parse)
            .transpose()?
            .map(String::from),
    };
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .page(&s)?;
    Ok(Json(messages::list(&s.ctx, tenant, &filter, &page).await?))
}

/// `{}` redrives every dead letter; `{"queue_name"}` one queue's; `{"message_ids": [...]}` those.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedriveRequest {
    #[schema(value_type = Option<QueueName>)]
    queue_name: Option<String>,
    #[schema(value_type = Option<Vec<uuid::Uuid>>)]
    message_ids: Option<Vec<String>>,
}

/// Send dead letters back to their queues with fresh attempts.
#[utoipa::path(post, path = "/tenants/{tenant_id}/dead-letters/redrive", tag = "dead letters",
    params(TenantPath), request_body = RedriveRequest,
    responses((status = 200, description = "How many were redriven", body = RedriveReport),
        (status = 409, description = "The tenant is deactivated")))]
async fn redrive(
    State(s): State<ApiState>,
    TenantScope(tenant): TenantScope,
    JsonBody(req): JsonBody<RedriveRequest>,
) -> ApiResult<Json<RedriveReport>> {
    let selector = RedriveSelector {
        queue_name: req
            .queue_name
            .as_deref()
            .map(QueueName::parse)
            .transpose()?,
        ids: req
            .message_ids
            .map(|ids| ids.iter().map(|i| i.parse::<MessageId>()).collect())
            .transpose()?,
    };
    Ok(Json(
        dead_letters::redrive(&s.ctx, tenant, &selector).await?,
    ))
}
