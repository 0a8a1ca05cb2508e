//! Replay of settled messages (see `shared::services::replay`).

use axum::{Json, extract::State};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use shared::{
    domain::{MessageId, QueueName},
    services::replay::{self, MAX_REPLAY, REPLAYABLE, ReplayReport, ReplaySelector},
};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;

use super::params::TenantPath;
use crate::{error::ApiResult, extract::JsonBody, route, scope::TenantScope, state::ApiState};

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(route!(replay))
}

/// Either `message_ids`, or `queue_name` with `from` and `to` (and optionally `statuses`,
/// `after`, `limit`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplayRequest {
    /// Up to 1000 messages to replay by id; those not settled are skipped, with the reason.
    #[schema(value_type = Option<Vec<uuid::Uuid>>)]
    message_ids: Option<Vec<String>>,
    /// The queue whose messages published in [`from`, `to`) are replayed, oldest first.
    #[schema(value_type = Option<QueueName>)]
    queue_name: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    /// `completed`, `dead_lettered` or both (the default).
    statuses: Option<Vec<String>>,
    /// A previous report's `next_cursor`: continue the range after it.
    #[schema(value_type = Option<uuid::Uuid>)]
    after: Option<String>,
    /// The most messages this request replays (1 to 1000, the default).
    limit: Option<u32>,
}

fn invalid(message: &str) -> shared::Error {
    shared::Error::invalid(shared::error::Code::InvalidReplay, message)
}

impl ReplayRequest {
    fn selector(self) -> shared::Result<ReplaySelector> {
        let range = self.queue_name.is_some()
            || self.from.is_some()
            || self.to.is_some()
            || self.statuses.is_some()
            || self.after.is_some()
            || self.limit.is_some();
        match (self.message_ids, range) {
            (Some(ids), false) => Ok(ReplaySelector::Ids(
                ids.iter()
                    .map(|i| i.parse::<MessageId>())
                    .collect::<Result<_, _>>()?,
            )),
            (None, true) => {
                let (Some(queue), Some(from), Some(to)) = (self.queue_name, self.from, self.to)
                else {
                    return Err(invalid("a range replay needs queue_name, from and to"));
                };
                let statuses = match self.statuses {
                    None => REPLAYABLE.to_vec(),
                    Some(given) => given
                        .iter()
                        .map(|s| {
                            REPLAYABLE.iter().copied().find(|r| r == s).ok_or_else(|| {
                                invalid("statuses holds completed and/or dead_lettered")
                            })
                        })
                        .collect::<Result<_, _>>()?,
                };
                Ok(ReplaySelector::Range {
                    queue: QueueName::parse(&queue)?,
                    from,
                    to,
                    statuses,
                    after: self.after.map(|a| a.parse()).transpose()?,
                    limit: self.limit.map_or(MAX_REPLAY, |l| l as usize),
                })
            }
            _ => Err(invalid(
                "name either message_ids, or queue_name with from and to",
            )),
        }
    }
}

/// Deliver settled (completed or dead-lettered) messages again, as new attempts of the same
/// messages: same id (and so the same `webhook-id`), a fresh retry budget, the attempt history
/// kept. At most 1000 per request; a range answers `next_cursor` while it may hold more.
#[utoipa::path(post, path = "/tenants/{tenant_id}/messages/replay", tag = "messages",
    params(TenantPath), request_body = ReplayRequest,
    responses((status = 200, description = "What was replayed and skipped", body = ReplayReport),
        (status = 409, description = "The tenant is deactivated")))]
async fn replay(
    State(s): State<ApiState>,
    TenantScope(tenant): TenantScope,
    JsonBody(req): JsonBody<ReplayRequest>,
) -> ApiResult<Json<ReplayReport>> {
    let selector = req.selector()?;
    Ok(Json(replay::replay(&s.ctx, tenant, &selector).await?))
}
