use axum::{
    Json, Router,
    extract::State,
    routing::{get, post},
};
use serde::Deserialize;
use shared::{
    db::messages::MessageFilter,
    dead_letters::{self, RedriveReport, RedriveSelector},
    domain::{Message, MessageId, MessageStatus, Page, QueueName, TenantId},
    messages,
};

use super::tenants::PageQuery;
use crate::{
    error::ApiResult,
    extract::{Caller, JsonBody, PathParams, QueryParams},
    state::ApiState,
};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/tenants/{tenant_id}/dead-letters", get(list))
        .route("/tenants/{tenant_id}/dead-letters/redrive", post(redrive))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    queue_name: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn list(
    State(s): State<ApiState>,
    Caller(caller): Caller,
    PathParams(tenant): PathParams<String>,
    QueryParams(q): QueryParams<ListQuery>,
) -> ApiResult<Json<Page<Message>>> {
    let tenant: TenantId = tenant.parse()?;
    caller.require_tenant(tenant)?;
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
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RedriveRequest {
    queue_name: Option<String>,
    message_ids: Option<Vec<String>>,
}

async fn redrive(
    State(s): State<ApiState>,
    Caller(caller): Caller,
    PathParams(tenant): PathParams<String>,
    JsonBody(req): JsonBody<RedriveRequest>,
) -> ApiResult<Json<RedriveReport>> {
    let tenant: TenantId = tenant.parse()?;
    caller.require_tenant(tenant)?;
    shared::tenants::get(&s.ctx, tenant).await?;
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
