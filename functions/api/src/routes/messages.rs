use std::collections::BTreeMap;

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::{
    Error,
    db::{attempts::Attempt, messages::MessageFilter},
    domain::{Message, MessageId, Page, TenantId},
    messages::{self, Accepted, PublishItem},
};

use super::tenants::PageQuery;
use crate::{
    error::{ApiResult, ErrorBody, body_of},
    extract::{Caller, JsonBody, PathParams, QueryParams},
    state::ApiState,
};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/tenants/{tenant_id}/messages", post(publish).get(list))
        .route("/tenants/{tenant_id}/messages/batch", post(publish_batch))
        .route("/tenants/{tenant_id}/messages/{message_id}", get(show))
        .route(
            "/tenants/{tenant_id}/messages/{message_id}/attempts",
            get(attempts),
        )
}

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    queue_name: String,
    #[serde(default)]
    message_body: Value,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
}

async fn publish(
    State(s): State<ApiState>,
    Caller(caller): Caller,
    PathParams(tenant): PathParams<String>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<PublishRequest>,
) -> ApiResult<Response> {
    let tenant: TenantId = tenant.parse()?;
    caller.require_tenant(tenant)?;
    let idempotency_key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(v) => Some(v.to_str().map(str::to_string).map_err(|_| {
            Error::invalid(
                "invalid_idempotency_key",
                "Idempotency-Key must be visible ASCII",
            )
        })?),
    };
    let item = PublishItem {
        queue_name: req.queue_name,
        message_body: req.message_body,
        headers: req.headers,
        idempotency_key,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    /// Items are parsed one by one, so a malformed item fails alone.
    messages: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchItem {
    queue_name: String,
    #[serde(default)]
    message_body: Value,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

#[derive(Serialize)]
struct BatchResponse {
    accepted: usize,
    rejected: usize,
    results: Vec<BatchResult>,
}

#[derive(Serialize)]
struct BatchResult {
    index: usize,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    message: Option<Accepted>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody>,
}

async fn publish_batch(
    State(s): State<ApiState>,
    Caller(caller): Caller,
    PathParams(tenant): PathParams<String>,
    JsonBody(req): JsonBody<BatchRequest>,
) -> ApiResult<(StatusCode, Json<BatchResponse>)> {
    let tenant: TenantId = tenant.parse()?;
    caller.require_tenant(tenant)?;
    // Items that are not even the right shape get their error here; the rest go to the domain.
    let mut parse_errors: Vec<Option<Error>> = Vec::with_capacity(req.messages.len());
    let mut items = Vec::new();
    for raw in req.messages {
        match serde_json::from_value::<BatchItem>(raw) {
            Ok(item) => {
                parse_errors.push(None);
                items.push(PublishItem {
                    queue_name: item.queue_name,
                    message_body: item.message_body,
                    headers: item.headers,
                    idempotency_key: item.idempotency_key,
                });
            }
            Err(e) => parse_errors.push(Some(Error::invalid("invalid_json", e.to_string()))),
        }
    }
    let mut outcomes = if items.is_empty() {
        if parse_errors.is_empty() {
            // Let the domain report the empty batch.
            messages::publish_batch(&s.ctx, tenant, Vec::new()).await?
        } else {
            Vec::new()
        }
    } else {
        messages::publish_batch(&s.ctx, tenant, items).await?
    }
    .into_iter();
    let results: Vec<BatchResult> = parse_errors
        .into_iter()
        .enumerate()
        .map(|(index, parse_error)| {
            let outcome = match parse_error {
                Some(e) => Err(e),
                None => outcomes.next().expect("one outcome per parsed item"),
            };
            match outcome {
                Ok(m) => BatchResult {
                    index,
                    message: Some(m),
                    error: None,
                },
                Err(e) => BatchResult {
                    index,
                    message: None,
                    error: Some(body_of(&e)),
                },
            }
        })
        .collect();
    let accepted = results.iter().filter(|r| r.message.is_some()).count();
    Ok((
        StatusCode::ACCEPTED,
        Json(BatchResponse {
            accepted,
            rejected: results.len() - accepted,
            results,
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
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

async fn show(
    State(s): State<ApiState>,
    Caller(caller): Caller,
    PathParams((tenant, id)): PathParams<(String, String)>,
) -> ApiResult<Json<Message>> {
    let tenant: TenantId = tenant.parse()?;
    caller.require_tenant(tenant)?;
    let id: MessageId = id.parse()?;
    Ok(Json(messages::get(&s.ctx, tenant, id).await?))
}

#[derive(Serialize)]
struct AttemptList {
    message_id: MessageId,
    items: Vec<Attempt>,
}

async fn attempts(
    State(s): State<ApiState>,
    Caller(caller): Caller,
    PathParams((tenant, id)): PathParams<(String, String)>,
) -> ApiResult<Json<AttemptList>> {
    let tenant: TenantId = tenant.parse()?;
    caller.require_tenant(tenant)?;
    let id: MessageId = id.parse()?;
    // 404 for a message of another tenant, like any unknown id.
    messages::get(&s.ctx, tenant, id).await?;
    let items = shared::db::attempts::list(&s.ctx.db, tenant, id).await?;
    Ok(Json(AttemptList {
        message_id: id,
        items,
    }))
}
