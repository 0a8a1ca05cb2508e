//! The outbox: getting a stored message onto the broker. PostgreSQL holds every accepted message
//! first; this module publishes it persistently with a publisher confirm and marks it `queued`.
//! A message whose publish was not confirmed stays `pending` and the relay (`relay`) republishes
//! it later. Publishing, redriving, retry parking and the relay all go through here.

pub mod relay;

use std::collections::{BTreeMap, HashSet};

use uuid::Uuid;

use crate::{
    AppContext,
    broker::{Broker, Outbound, QueueRef, headers, work_queue},
    domain::{TenantId, message::NewMessage},
    error::Result,
    observability::metrics as m,
};

/// A stored message as the broker carries it.
pub struct Envelope<'a> {
    pub id: Uuid,
    pub queue: QueueRef,
    pub body: &'a [u8],
    pub headers: &'a BTreeMap<String, String>,
}

impl<'a> Envelope<'a> {
    pub fn of(tenant: TenantId, msg: &'a NewMessage) -> Self {
        Self {
            id: msg.id.0,
            queue: QueueRef::new(tenant, msg.queue_name.clone()),
            body: &msg.body_bytes,
            headers: &msg.headers,
        }
    }
}

/// Publishes stored (new or redriven) messages and marks the confirmed ones `queued`; returns
/// the ids now stored as `queued`. The messages are stored before this is called, so nothing
/// here fails the caller: a broker fault leaves them `pending`, and so does a database fault
/// while marking them (the broker has a copy, the relay adds another later; consumers are
/// idempotent). Either way the caller answers with what is stored.
pub async fn enqueue(ctx: &AppContext, tenant: TenantId, messages: &[&NewMessage]) -> Vec<Uuid> {
    let envelopes: Vec<Envelope> = messages.iter().map(|m| Envelope::of(tenant, m)).collect();
    let confirmed = publish(ctx, &envelopes).await;
    count_published(&envelopes, &confirmed);
    let marked = ctx
        .writers()
        .mark_queued
        .submit(confirmed.iter().map(|id| (tenant, *id)).collect())
        .await;
    match marked {
        Ok(_) => confirmed,
        Err(e) => {
            tracing::warn!(error = %e, %tenant, confirmed = confirmed.len(),
                "published but not marked queued; the messages stay pending for the relay");
            Vec::new()
        }
    }
}

/// Publishes the messages to their work queues, each on its tenant's broker, declaring each
/// queue once; returns the ids the broker confirmed. Broker faults are logged, not returned.
pub async fn publish(ctx: &AppContext, messages: &[Envelope<'_>]) -> Vec<Uuid> {
    let mut by_tenant: BTreeMap<TenantId, Vec<&Envelope>> = BTreeMap::new();
    for m in messages {
        by_tenant.entry(m.queue.tenant_id).or_default().push(m);
    }
    let mut confirmed = Vec::with_capacity(messages.len());
    for (tenant, envelopes) in by_tenant {
        match ctx.brokers.for_tenant(&ctx.db, tenant).await {
            Ok(endpoint) => confirmed.extend(publish_to(&endpoint.broker, &envelopes).await),
            Err(e) => tracing::warn!(error = %e, %tenant, "cannot find the tenant's broker"),
        }
    }
    confirmed
}

/// [`publish`] on one broker.
async fn publish_to(broker: &Broker, messages: &[&Envelope<'_>]) -> Vec<Uuid> {
    let mut queues: Vec<&QueueRef> = messages.iter().map(|m| &m.queue).collect();
    queues.sort();
    queues.dedup();
    let mut declared = HashSet::new();
    for q in queues {
        match broker.ensure_queue(q).await {
            Ok(()) => {
                declared.insert(q);
            }
            Err(e) => tracing::warn!(error = %e, queue = %q.queue_name, "cannot declare queue"),
        }
    }
    let publishable: Vec<&&Envelope> = messages
        .iter()
        .filter(|m| declared.contains(&m.queue))
        .collect();
    let names: Vec<String> = publishable.iter().map(|m| work_queue(&m.queue)).collect();
    let outbound: Vec<Outbound> = publishable
        .iter()
        .zip(&names)
        .map(|(m, queue)| Outbound {
            exchange: "",
            queue,
            message_id: m.id.to_string(),
            body: m.body,
            headers: broker_headers(&m.queue, m.headers),
            expiration_ms: None,
        })
        .collect();
    let results = broker.publish_confirmed(&outbound).await;
    publishable
        .iter()
        .zip(results)
        .filter_map(|(m, r)| match r {
            Ok(()) => Some(m.id),
            Err(e) => {
                tracing::warn!(error = %e, message_id = %m.id, "publish failed");
                None
            }
        })
        .collect()
}

/// Puts id-only copies of the queue's messages, routed by its work queue's name, on
/// `exchange` of `broker` (the tenant's, `Brokers::for_tenant`): a retry exchange (see
/// `broker::topology`), or `""` for the work queue itself;
/// each expiring after `expiration` if given. The consumer reads bodies from PostgreSQL, so
/// the copy carries only the id. A broker fault is an error: the caller's batch must then be
/// redelivered.
pub async fn republish_ids(
    broker: &Broker,
    queue: &QueueRef,
    exchange: &str,
    ids: &[Uuid],
    expiration: Option<std::time::Duration>,
) -> Result<()> {
    let no_headers = BTreeMap::new();
    let to = work_queue(queue);
    let outbound: Vec<Outbound> = ids
        .iter()
        .map(|id| Outbound {
            exchange,
            queue: &to,
            message_id: id.to_string(),
            body: b"{}",
            headers: broker_headers(queue, &no_headers),
            expiration_ms: expiration.map(|d| d.as_millis() as u64),
        })
        .collect();
    for r in broker.publish_confirmed(&outbound).await {
        r?;
    }
    Ok(())
}

/// The tenant's own headers plus the service's tenant and queue headers.
fn broker_headers(queue: &QueueRef, own: &BTreeMap<String, String>) -> lapin::types::FieldTable {
    let tenant = queue.tenant_id.to_string();
    Outbound::string_headers(own.iter().map(|(k, v)| (k.as_str(), v.as_str())).chain([
        (headers::TENANT_ID, tenant.as_str()),
        (headers::QUEUE_NAME, queue.queue_name.as_str()),
    ]))
}

/// Counts confirmed and deferred publishes per queue.
fn count_published(sent: &[Envelope], confirmed: &[Uuid]) {
    let mut per_queue: BTreeMap<&QueueRef, (u64, u64)> = BTreeMap::new();
    for msg in sent {
        let e = per_queue.entry(&msg.queue).or_default();
        if confirmed.contains(&msg.id) {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    for (q, (ok, deferred)) in per_queue {
        let labels = m::tq(&q.tenant_id, q.queue_name.as_str());
        metrics::counter!(m::MESSAGES_PUBLISHED, &labels).increment(ok);
        metrics::counter!(m::MESSAGES_PUBLISH_DEFERRED, &labels).increment(deferred);
        if deferred > 0 {
            tracing::warn!(tenant_id = %q.tenant_id, queue = %q.queue_name, deferred,
                "publish not confirmed; messages stay pending for the relay");
        }
    }
}
