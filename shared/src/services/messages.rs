//! The publish path. An accepted message is never lost: it is stored `pending` first, then put on
//! the broker by the outbox (`outbox::enqueue`: published persistently with a publisher confirm
//! and marked `queued`). A message whose publish was not confirmed stays `pending` and the
//! outbox relay republishes it.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::{
    AppContext,
    broker::QueueRef,
    control_plane::Job,
    db,
    domain::{
        Message, MessageId, MessageStatus, Page, PageRequest, TenantId,
        message::{DeliveryOptions, NewMessage},
        schedule,
    },
    error::{Code, Error, Result},
    services::limits::EffectiveLimits,
};

/// One message as a client asks to publish it (not yet validated).
#[derive(Clone, Debug, Default)]
pub struct PublishItem {
    pub queue_name: String,
    pub message_body: Value,
    pub headers: Option<BTreeMap<String, String>>,
    pub idempotency_key: Option<String>,
    pub ordering_key: Option<String>,
    /// A duration from now (`30s`, `15m`, `7d`); see `domain::schedule`.
    pub deliver_after: Option<String>,
    /// An RFC 3339 time.
    pub deliver_at: Option<String>,
}

/// What the API answers for an accepted message.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize)]
pub struct Accepted {
    pub id: MessageId,
    pub queue_name: String,
    pub status: MessageStatus,
    pub created_at: DateTime<Utc>,
    /// When a delayed message comes due (status `scheduled` until then); null when not delayed.
    pub deliver_at: Option<DateTime<Utc>>,
    /// True when an earlier publish with the same idempotency key is returned.
    pub idempotent_replay: bool,
}

pub async fn publish(ctx: &AppContext, tenant: TenantId, item: PublishItem) -> Result<Accepted> {
    let limits = super::limits::effective(ctx, tenant).await?;
    let msg = validate(ctx, &limits, item)?;
    super::limits::admit_publish(ctx, tenant, &limits, 1).await?;
    publish_valid(ctx, tenant, &limits, vec![msg])
        .await?
        .pop()
        .expect("one result per message")
}

/// Publishes up to `max_batch_items` messages; one result per item, in order. An invalid item
/// fails alone.
pub async fn publish_batch(
    ctx: &AppContext,
    tenant: TenantId,
    items: Vec<PublishItem>,
) -> Result<Vec<Result<Accepted>>> {
    let max = ctx.config.limits.max_batch_items;
    if items.is_empty() || items.len() > max {
        return Err(Error::invalid(
            Code::InvalidBatch,
            format!("a batch holds 1 to {max} messages"),
        ));
    }
    let limits = super::limits::effective(ctx, tenant).await?;
    let mut results: Vec<Option<Result<Accepted>>> = Vec::with_capacity(items.len());
    let mut valid = Vec::new();
    let mut slots = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match validate(ctx, &limits, item) {
            Ok(msg) => {
                valid.push(msg);
                slots.push(i);
                results.push(None);
            }
            Err(e) => results.push(Some(Err(e))),
        }
    }
    if !valid.is_empty() {
        // A batch takes one token per message, all or none.
        super::limits::admit_publish(ctx, tenant, &limits, valid.len() as u32).await?;
        for (slot, outcome) in slots
            .into_iter()
            .zip(publish_valid(ctx, tenant, &limits, valid).await?)
        {
            results[slot] = Some(outcome);
        }
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every slot filled"))
        .collect())
}

fn validate(ctx: &AppContext, limits: &EffectiveLimits, item: PublishItem) -> Result<NewMessage> {
    let deliver_at = schedule::resolve(
        item.deliver_after.as_deref(),
        item.deliver_at.as_deref(),
        Utc::now(),
        ctx.config.limits.max_delay,
    )?;
    let delivery = DeliveryOptions {
        ordering_key: item.ordering_key,
        deliver_at,
    };
    NewMessage::parse(
        &item.queue_name,
        item.message_body,
        item.headers,
        item.idempotency_key,
        delivery,
        limits.max_message_bytes as usize,
    )
}

/// Stores, publishes and marks queued. Errors of the whole operation (database down) fail the
/// call; per-message outcomes are in the list.
async fn publish_valid(
    ctx: &AppContext,
    tenant: TenantId,
    limits: &EffectiveLimits,
    messages: Vec<NewMessage>,
) -> Result<Vec<Result<Accepted>>> {
    ensure_consumer_configs(ctx, tenant, limits, &messages).await?;

    let refs: Vec<&NewMessage> = messages.iter().collect();
    let client = ctx.db.get().await?;
    let stored = db::messages::insert_pending(&client, tenant, &refs).await?;
    let inserted: std::collections::HashSet<uuid::Uuid> = stored.iter().map(|s| s.0).collect();
    // Scheduled messages stay in PostgreSQL until the relay releases them.
    let scheduled: std::collections::HashSet<uuid::Uuid> = stored
        .iter()
        .filter(|s| s.1 == MessageStatus::Scheduled)
        .map(|s| s.0)
        .collect();
    ctx.limits.add_backlog(tenant, inserted.len() as u64);
    // From here on some messages may be stored: a fault must not fail the call, or a client
    // retrying without an idempotency key would store them twice. It answers for the items it
    // concerns, and the stored ones are answered as stored.
    let replays = find_replays(&client, tenant, &messages, &inserted).await;
    drop(client);
    if inserted.is_empty() && replays.as_ref().map_or(0, HashMap::len) < messages.len() {
        // Nothing else keeps every message out: the tenant is unknown or inactive (this names
        // which).
        super::tenants::get_active(ctx, tenant).await?;
    }

    let fresh: Vec<&NewMessage> = messages
        .iter()
        .filter(|m| inserted.contains(&m.id.0) && !scheduled.contains(&m.id.0))
        .collect();
    let confirmed = crate::outbox::enqueue(ctx, tenant, &fresh).await;

    let now = Utc::now();
    Ok(messages
        .iter()
        .map(|msg| {
            if inserted.contains(&msg.id.0) {
                let status = if scheduled.contains(&msg.id.0) {
                    MessageStatus::Scheduled
                } else if confirmed.contains(&msg.id.0) {
                    MessageStatus::Queued
                } else {
                    MessageStatus::Pending
                };
                return Ok(Accepted {
                    id: msg.id,
                    queue_name: msg.queue_name.to_string(),
                    status,
                    created_at: now,
                    deliver_at: msg.deliver_at,
                    idempotent_replay: false,
                });
            }
            let key = msg.idempotency_key.as_deref().unwrap_or_default();
            let replays = match &replays {
                Ok(found) => found,
                Err(e) => return Err(e.same_again()),
            };
            match replays.get(key) {
                Some(prior) if same_request(prior, msg) => Ok(Accepted {
                    id: prior.id,
                    queue_name: prior.queue_name.clone(),
                    status: prior.status,
                    created_at: prior.created_at,
                    deliver_at: prior.deliver_at,
                    idempotent_replay: true,
                }),
                Some(_) => Err(Error::conflict(
                    Code::IdempotencyKeyReused,
                    "this idempotency key was used for a different message",
                )),
                None => Err(Error::Internal(anyhow::anyhow!(
                    "message neither inserted nor found by idempotency key"
                ))),
            }
        })
        .collect())
}

async fn find_replays(
    client: &db::Client,
    tenant: TenantId,
    messages: &[NewMessage],
    inserted: &std::collections::HashSet<uuid::Uuid>,
) -> Result<HashMap<String, Message>> {
    let keys: Vec<&str> = messages
        .iter()
        .filter(|m| !inserted.contains(&m.id.0))
        .filter_map(|m| m.idempotency_key.as_deref())
        .collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let found = db::messages::find_by_idempotency_keys(client, tenant, &keys).await?;
    Ok(found
        .into_iter()
        .filter_map(|m| m.idempotency_key.clone().map(|k| (k, m)))
        .collect())
}

/// The delay is not compared: `deliver_after` is relative, so a retried publish asks for a
/// later time than the first; the first message's time stands.
fn same_request(prior: &Message, msg: &NewMessage) -> bool {
    prior.queue_name == msg.queue_name.as_str()
        && prior.message_body == msg.body
        && prior.headers == msg.headers
        && prior.ordering_key == msg.ordering_key
}

/// The first time this instance sees one of the tenant's queues: creates its consumer config
/// (with the defaults) unless it exists, and asks the control plane for its consumer unless
/// one is recorded, since in AWS nothing consumes a new queue until its event source mapping
/// exists. One query per queue per instance; the job is idempotent, so instances racing on a
/// new queue are harmless. A queue whose mapping could not be requested is looked at again on
/// its next publish.
async fn ensure_consumer_configs(
    ctx: &AppContext,
    tenant: TenantId,
    limits: &EffectiveLimits,
    messages: &[NewMessage],
) -> Result<()> {
    let unknown: Vec<QueueRef> = {
        let known = ctx.known_queues.lock().expect("known queues lock");
        let mut refs: Vec<QueueRef> = messages
            .iter()
            .map(|m| QueueRef::new(tenant, m.queue_name.clone()))
            .filter(|q| !known.contains(q))
            .collect();
        refs.sort();
        refs.dedup();
        refs
    };
    if unknown.is_empty() {
        return Ok(());
    }
    // The tenant is checked here, the first time one of its queues is seen, because the
    // config row needs it; afterwards the insert itself checks it.
    // Under the tenant's row lock, as every queue change is (`consumers::configure`): two
    // first publishes to new queues cannot both pass `max_queues`, and none outlives a
    // concurrent deactivation.
    let mut client = ctx.db.get().await?;
    let tx = client.transaction().await?;
    super::tenants::lock_active(&tx, tenant).await?;
    for q in &unknown {
        super::limits::check_new_queue(&tx, tenant, q.queue_name.as_str(), limits).await?;
        db::consumer_configs::ensure_default(&tx, tenant, &q.queue_name, &ctx.config.consumer)
            .await?;
    }
    tx.commit().await?;
    drop(client);
    let consumed = request_consumers(ctx, tenant, unknown).await;
    ctx.known_queues
        .lock()
        .expect("known queues lock")
        .extend(consumed);
    Ok(())
}

/// Asks the control plane for each queue's consumer unless a mapping is recorded; returns the
/// queues that have one now (requested or recorded).
async fn request_consumers(
    ctx: &AppContext,
    tenant: TenantId,
    queues: Vec<QueueRef>,
) -> Vec<QueueRef> {
    let mapped: std::collections::HashSet<String> =
        match db::control_state::list_mappings(&ctx.db, Some(tenant)).await {
            Ok(m) => m.into_iter().map(|m| m.queue_name).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read consumer mappings");
                return Vec::new();
            }
        };
    let mut consumed = Vec::with_capacity(queues.len());
    for q in queues {
        if !mapped.contains(q.queue_name.as_str()) {
            let job = Job::ApplyConsumer {
                tenant_id: tenant,
                queue_name: q.queue_name.to_string(),
            };
            if let Err(e) = ctx.control.submit(ctx, job).await {
                tracing::warn!(error = %e, queue = %q.queue_name, "consumer mapping not requested");
                continue;
            }
        }
        consumed.push(q);
    }
    consumed
}

pub async fn get(ctx: &AppContext, tenant: TenantId, id: MessageId) -> Result<Message> {
    db::messages::get(&ctx.db, tenant, id)
        .await?
        .ok_or(Error::NotFound(Code::MessageNotFound))
}

/// A message with its latest attempt, as `GET .../messages/{message_id}` shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize)]
pub struct MessageView {
    #[serde(flatten)]
    pub message: Message,
    /// The latest attempt: what the endpoint answered last (all of them under `/attempts`);
    /// null before the first.
    pub last_attempt: Option<db::attempts::Attempt>,
}

pub async fn view(ctx: &AppContext, tenant: TenantId, id: MessageId) -> Result<MessageView> {
    let message = get(ctx, tenant, id).await?;
    let last_attempt = db::attempts::latest(&ctx.db, tenant, id).await?;
    Ok(MessageView {
        message,
        last_attempt,
    })
}

pub async fn list(
    ctx: &AppContext,
    tenant: TenantId,
    filter: &db::messages::MessageFilter,
    page: &PageRequest,
) -> Result<Page<Message>> {
    let rows = db::messages::list(&ctx.db, tenant, filter, page).await?;
    Ok(Page::from_rows(rows, page, |m| m.id.0))
}

/// Cancels a scheduled message: it is never delivered. 409 `message_not_scheduled` once it is
/// no longer scheduled (released, or cancelled before).
pub async fn cancel(ctx: &AppContext, tenant: TenantId, id: MessageId) -> Result<Message> {
    if let Some(cancelled) = db::schedule::cancel(&ctx.db, tenant, id).await? {
        return Ok(cancelled);
    }
    let current = get(ctx, tenant, id).await?;
    Err(Error::conflict(
        Code::MessageNotScheduled,
        format!(
            "the message is {}; only a scheduled message can be cancelled",
            current.status
        ),
    ))
}
