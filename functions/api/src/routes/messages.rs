use std::collections::BTreeMap;

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::error::Code;
use shared::{
    Error,
    db::{attempts::Attempt, messages::MessageFilter},
    domain::{Message, MessageId, MessageStatus, Page, message::check_form, schedule},
    services::messages::{self, Accepted, MessageView, PublishItem},
};

use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use super::params::{MessageIdParam, MessagePath, PageQuery, TenantPath};
use crate::{
    deployment::MessageBatch,
    error::{ApiResult, ErrorBody, body_of},
    extract::{JsonBody, PathParams, QueryParams},
    route,
    scope::TenantScope,
    state::ApiState,
};

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(route!(publish))
        .routes(route!(list))
        .routes(route!(publish_batch))
        .routes(route!(show))
        .routes(route!(cancel))
        .routes(route!(attempts))
}

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PublishRequest {
    #[schema(value_type = shared::domain::QueueName)]
    queue_name: String,
    #[serde(default)]
    #[schema(schema_with = super::schemas::message_body_schema, required = true)]
    message_body: Value,
    #[serde(default)]
    #[schema(schema_with = super::schemas::headers_schema)]
    headers: Option<BTreeMap<String, String>>,
    /// Messages of one key in one queue are processed one at a time, in publish order.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128, pattern = "^[!-~]+$")]
    ordering_key: Option<String>,
    /// Deliver no sooner than this long from now (`30s`, `15m`, `2h`, `7d`; at most
    /// `MESSAGE_MAX_DELAY`); not with `deliver_at`.
    #[serde(default)]
    #[schema(pattern = "^[0-9]+(ms|s|m|h|d)?$")]
    deliver_after: Option<String>,
    /// Deliver no sooner than this time (RFC 3339; at most `MESSAGE_MAX_DELAY` ahead, a past
    /// time is now); not with `deliver_after`.
    #[serde(default)]
    #[schema(format = DateTime)]
    deliver_at: Option<String>,
}

/// Publish one message. With an `Idempotency-Key` header, a repeated publish returns the first
/// message (and the `Idempotent-Replayed: true` header) instead of storing another.
#[utoipa::path(post, path = "/tenants/{tenant_id}/messages", tag = "messages", params(TenantPath,
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$",
            description = "1-255 visible ASCII characters")),
    request_body = PublishRequest,
    responses((status = 202, description = "Stored and queued (or to be republished by the outbox relay)",
        body = Accepted, headers(("Idempotent-Replayed" = String,
            description = "`true` when an earlier message with this key is returned"))),
        (status = 409, description = "The tenant is deactivated, or the key names another message"),
        (status = 429, description = "Over the tenant's publish rate or backlog")))]
async fn publish(
    State(s): State<ApiState>,
    TenantScope(tenant): TenantScope,
    headers: HeaderMap,
    JsonBody(req): JsonBody<PublishRequest>,
) -> ApiResult<Response> {
    let idempotency_key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(v) => Some(v.to_str().map(str::to_string).map_err(|_| {
            Error::invalid(
                Code::InvalidIdempotencyKey,
                "Idempotency-Key must be visible ASCII",
            )
        })?),
    };
    let item = PublishItem {
        queue_name: req.queue_name,
        message_body: req.message_body,
        headers: req.headers,
        idempotency_key,
        ordering_key: req.ordering_key,
        deliver_after: req.deliver_after,
        deliver_at: req.deliver_at,
    };
    let accepted = messages::publish(&s.ctx, tenant, item).await?;
    let replay = accepted.idempotent_replay;
    let mut resp = (StatusCode::ACCEPTED, Json(accepted)).into_response();
    if replay {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchRequest {
    /// An item that breaks the item schema refuses the whole batch (400, its message naming
    /// `messages[i]`); what depends on the tenant (its size limit, its queue limit, a reused
    /// idempotency key) is answered item by item.
    #[schema(value_type = MessageBatch)]
    messages: Vec<Value>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchItem {
    #[schema(value_type = shared::domain::QueueName)]
    queue_name: String,
    #[serde(default)]
    #[schema(schema_with = super::schemas::message_body_schema, required = true)]
    message_body: Value,
    #[serde(default)]
    #[schema(schema_with = super::schemas::headers_schema)]
    headers: Option<BTreeMap<String, String>>,
    /// 1-255 visible ASCII characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255, pattern = "^[!-~]+$")]
    idempotency_key: Option<String>,
    /// Messages of one key in one queue are processed one at a time, in publish order.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128, pattern = "^[!-~]+$")]
    ordering_key: Option<String>,
    /// Deliver no sooner than this long from now (`30s`, `15m`, `2h`, `7d`; at most
    /// `MESSAGE_MAX_DELAY`); not with `deliver_at`.
    #[serde(default)]
    #[schema(pattern = "^[0-9]+(ms|s|m|h|d)?$")]
    deliver_after: Option<String>,
    /// Deliver no sooner than this time (RFC 3339; at most `MESSAGE_MAX_DELAY` ahead, a past
    /// time is now); not with `deliver_after`.
    #[serde(default)]
    #[schema(format = DateTime)]
    deliver_at: Option<String>,
}

impl BatchItem {
    /// The item at `index`, when it meets the document's item schema (a delay beyond
    /// `max_delay` included: it is the deployment's, not the tenant's).
    fn read(
        index: usize,
        raw: Value,
        max_delay: std::time::Duration,
    ) -> Result<PublishItem, Error> {
        let place = format!("messages[{index}]");
        let item: Self = crate::extract::from_json_object(raw).map_err(|e| e.at(&place))?;
        check_form(
            &item.queue_name,
            &item.message_body,
            item.headers.as_ref(),
            item.idempotency_key.as_deref(),
            item.ordering_key.as_deref(),
        )
        .map_err(|e| e.at(&place))?;
        schedule::resolve(
            item.deliver_after.as_deref(),
            item.deliver_at.as_deref(),
            chrono::Utc::now(),
            max_delay,
        )
        .map_err(|e| e.at(&place))?;
        Ok(PublishItem {
            queue_name: item.queue_name,
            message_body: item.message_body,
            headers: item.headers,
            idempotency_key: item.idempotency_key,
            ordering_key: item.ordering_key,
            deliver_after: item.deliver_after,
            deliver_at: item.deliver_at,
        })
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct BatchResponse {
    accepted: usize,
    rejected: usize,
    /// One result per item, in request order.
    results: Vec<BatchResult>,
}

/// An item's outcome: the accepted message, or its error.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum BatchResult {
    Accepted {
        index: usize,
        #[serde(flatten)]
        message: Accepted,
    },
    Rejected {
        index: usize,
        error: ErrorBody,
    },
}

/// Publish up to `MESSAGE_MAX_BATCH_ITEMS` messages; each item is accepted or rejected on its own.
#[utoipa::path(post, path = "/tenants/{tenant_id}/messages/batch", tag = "messages",
    params(TenantPath), request_body = BatchRequest,
    responses((status = 202, description = "Per-item results", body = BatchResponse),
        (status = 409, description = "The tenant is deactivated"),
        (status = 429, description = "Over the tenant's publish rate or backlog")))]
async fn publish_batch(
    State(s): State<ApiState>,
    TenantScope(tenant): TenantScope,
    JsonBody(req): JsonBody<BatchRequest>,
) -> ApiResult<(StatusCode, Json<BatchResponse>)> {
    let items = req
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, raw)| BatchItem::read(i, raw, s.ctx.config.limits.max_delay))
        .collect::<Result<Vec<_>, _>>()?;
    let results: Vec<BatchResult> = messages::publish_batch(&s.ctx, tenant, items)
        .await?
        .into_iter()
        .enumerate()
        .map(|(index, outcome)| match outcome {
            Ok(message) => BatchResult::Accepted { index, message },
            Err(e) => BatchResult::Rejected {
                index,
                error: body_of(&e),
            },
        })
        .collect();
    let accepted = results
        .iter()
        .filter(|r| matches!(r, BatchResult::Accepted { .. }))
        .count();
    Ok((
        StatusCode::ACCEPTED,
        Json(BatchResponse {
            accepted,
            rejected: results.len() - accepted,
            results,
        }),
    ))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only messages in this status.
    #[param(value_type = Option<MessageStatus>)]
    status: Option<String>,
    /// Only messages of this queue.
    #[param(value_type = Option<shared::domain::QueueName>)]
    queue_name: Option<String>,
    #[param(value_type = Option<crate::deployment::PageLimit>)]
    limit: Option<u32>,
    #[param(value_type = Option<super::params::Cursor>)]
    cursor: Option<String>,
}

/// List the tenant's messages, newest first, optionally by status and queue.
#[utoipa::path(get, path = "/tenants/{tenant_id}/messages", tag = "messages",
    params(TenantPath, ListQuery),
    responses((status = 200, description = "One page of messages", body = Page<Message>)))]
async fn list(
    State(s): State<ApiState>,
    TenantScope(tenant): TenantScope,
    QueryParams(q): QueryParams<ListQuery>,
) -> ApiResult<Json<Page<Message>>> {
    let filter = MessageFilter {
        status: q.status.as_deref().map(str::parse).transpose()?,
        queue_name: q
            .queue_name
            .as_deref()
            .map(shared::domain::QueueName::parse)
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

/// Get a message with its status and its latest attempt.
#[utoipa::path(get, path = "/tenants/{tenant_id}/messages/{message_id}", tag = "messages",
    params(MessagePath),
    responses((status = 200, description = "The message", body = MessageView)))]
async fn show(
    State(s): State<ApiState>,
    TenantScope(tenant): TenantScope,
    PathParams(MessageIdParam { message_id: id }): PathParams<MessageIdParam>,
) -> ApiResult<Json<MessageView>> {
    let id: MessageId = id.parse()?;
    Ok(Json(messages::view(&s.ctx, tenant, id).await?))
}

/// Cancel a scheduled message: it is never delivered, and shows status `cancelled`. A message
/// no longer scheduled (released to its queue, or cancelled) answers 409
/// `message_not_scheduled`.
#[utoipa::path(post, path = "/tenants/{tenant_id}/messages/{message_id}/cancel", tag = "messages",
    params(MessagePath),
    responses((status = 200, description = "The cancelled message", body = Message),
        (status = 409, description = "The message is not scheduled (`message_not_scheduled`)")))]
async fn cancel(
    State(s): State<ApiState>,
    TenantScope(tenant): TenantScope,
    PathParams(MessageIdParam { message_id: id }): PathParams<MessageIdParam>,
) -> ApiResult<Json<Message>> {
    let id: MessageId = id.parse()?;
    Ok(Json(messages::cancel(&s.ctx, tenant, id).await?))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AttemptList {
    message_id: MessageId,
    items: Vec<Attempt>,
}

/// A message's processing attempts, oldest first.
#[utoipa::path(get, path = "/tenants/{tenant_id}/messages/{message_id}/attempts", tag = "messages",
    params(MessagePath),
    responses((status = 200, description = "The message's attempts", body = AttemptList)))]
async fn attempts(
    State(s): State<ApiState>,
    TenantScope(tenant): TenantScope,
    PathParams(MessageIdParam { message_id: id }): PathParams<MessageIdParam>,
) -> ApiResult<Json<AttemptList>> {
    let id: MessageId = id.parse()?;
    // 404 for a message of another tenant, like any unknown id.
    messages::get(&s.ctx, tenant, id).await?;
    let items = shared::db::attempts::list(&s.ctx.db, tenant, id).await?;
    Ok(Json(AttemptList {
        message_id: id,
        items,
    }))
}
