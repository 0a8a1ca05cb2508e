//! Replay: delivering settled messages again, by id or by a queue's span of publish time, as
//! new attempts of the same messages (same id, so the same `webhook-id`; fresh retry budget;
//! the attempt history goes on). Bounded per request; the report says what was replayed, what
//! was skipped and why, and where a range continues.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::{
    AppContext, db,
    domain::{MessageId, QueueName, TenantId},
    error::{Code, Error, Result},
    observability::metrics as m,
};

/// The most messages one replay request takes.
pub const MAX_REPLAY: usize = 1000;

/// The statuses a message can be replayed from.
pub const REPLAYABLE: [&str; 2] = ["completed", "dead_lettered"];

#[derive(Clone, Debug)]
pub enum ReplaySelector {
    /// These messages (at most [`MAX_REPLAY`]).
    Ids(Vec<MessageId>),
    /// The queue's messages published in [`from`, `to`) with one of `statuses`, oldest first,
    /// after `after` (a previous report's `next_cursor`), at most `limit`.
    Range {
        queue: QueueName,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        statuses: Vec<&'static str>,
        after: Option<MessageId>,
        limit: usize,
    },
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Serialize)]
pub struct ReplayReport {
    pub replayed: usize,
    /// Of those, the ones the broker confirmed now; the rest the relay republishes.
    pub queued: usize,
    /// Replayed messages by the status they had.
    pub by_status: BTreeMap<String, usize>,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub message_ids: Vec<MessageId>,
    /// Requested ids not replayed: `not_found`, or the status that is not settled.
    pub skipped: Vec<Skipped>,
    /// A range that may hold more: pass it back as `after`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub next_cursor: Option<MessageId>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Serialize)]
pub struct Skipped {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: MessageId,
    pub reason: String,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::invalid(Code::InvalidReplay, message)
}

impl ReplaySelector {
    /// Checks the selector's bounds (the route builds it from the request).
    pub fn validate(&self) -> Result<()> {
        match self {
            ReplaySelector::Ids(ids) if ids.is_empty() || ids.len() > MAX_REPLAY => {
                Err(invalid(format!("message_ids holds 1 to {MAX_REPLAY} ids")))
            }
            ReplaySelector::Range { from, to, .. } if from >= to => {
                Err(invalid("`from` must be before `to`"))
            }
            ReplaySelector::Range {
                statuses, limit, ..
            } if statuses.is_empty() || *limit == 0 || *limit > MAX_REPLAY => {
                Err(invalid(format!(
                    "statuses is one or both of completed, dead_lettered; limit is 1 to {MAX_REPLAY}"
                )))
            }
            _ => Ok(()),
        }
    }
}

pub async fn replay(
    ctx: &AppContext,
    tenant: TenantId,
    selector: &ReplaySelector,
) -> Result<ReplayReport> {
    selector.validate()?;
    super::tenants::get_active(ctx, tenant).await?;
    let (taken, skipped, next_cursor) = match selector {
        ReplaySelector::Ids(ids) => {
            let mut wanted: Vec<Uuid> = ids.iter().map(|i| i.0).collect();
            wanted.sort();
            wanted.dedup();
            let taken = db::replay::by_ids(&ctx.db, tenant, &wanted).await?;
            let skipped = skipped(ctx, tenant, &wanted, &taken).await?;
            (taken, skipped, None)
        }
        ReplaySelector::Range {
            queue,
            from,
            to,
            statuses,
            after,
            limit,
        } => {
            let floor = db::replay::v7_floor(*from);
            // Exclusive below: the floor itself is no message's id (its random bits are zero).
            let lower = after.map_or(floor, |a| a.0.max(floor));
            let upper = db::replay::v7_floor(*to);
            let taken = db::replay::by_range(
                &ctx.db,
                tenant,
                queue,
                (lower, upper),
                statuses,
                *limit as i64,
            )
            .await?;
            let next = (taken.len() == *limit)
                .then(|| taken.iter().map(|r| r.message.id.0).max())
                .flatten()
                .map(MessageId);
            (taken, Vec::new(), next)
        }
    };
    let messages: Vec<_> = taken.iter().map(|r| &r.message).collect();
    let confirmed = crate::outbox::enqueue(ctx, tenant, &messages).await;
    let mut by_status = BTreeMap::new();
    for r in &taken {
        *by_status.entry(r.was.clone()).or_insert(0) += 1;
        metrics::counter!(
            m::MESSAGES_REPLAYED,
            &m::tq(&tenant, r.message.queue_name.as_str())
        )
        .increment(1);
    }
    tracing::info!(%tenant, replayed = taken.len(), "messages replayed");
    Ok(ReplayReport {
        replayed: taken.len(),
        queued: confirmed.len(),
        by_status,
        message_ids: taken.iter().map(|r| r.message.id).collect(),
        skipped,
        next_cursor,
    })
}

/// Why each wanted id was not taken.
async fn skipped(
    ctx: &AppContext,
    tenant: TenantId,
    wanted: &[Uuid],
    taken: &[db::replay::Replayed],
) -> Result<Vec<Skipped>> {
    let taken: std::collections::HashSet<Uuid> = taken.iter().map(|r| r.message.id.0).collect();
    let rest: Vec<Uuid> = wanted
        .iter()
        .filter(|id| !taken.contains(id))
        .copied()
        .collect();
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let found: HashMap<Uuid, String> = db::replay::statuses(&ctx.db, tenant, &rest)
        .await?
        .into_iter()
        .collect();
    Ok(rest
        .into_iter()
        .map(|id| Skipped {
            id: MessageId(id),
            reason: found
                .get(&id)
                .cloned()
                .unwrap_or_else(|| "not_found".into()),
        })
        .collect())
}
