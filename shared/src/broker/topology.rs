//! Broker names, derived from the tenant id and a validated queue name only:
//!
//! | what | name | per |
//! |---|---|---|
//! | work queue (quorum) | `tenant.<tenant_id>.<queue>` | tenant queue |
//! | retry exchange (fanout) | `msgsvc.retry.<delay_ms>` | broker, delay tier |
//! | retry wait queue (classic, TTL) | `msgsvc.wait.<delay_ms>` | broker, delay tier |
//!
//! A tenant queue costs the broker one queue. A retry is published to its tier's exchange with
//! the work queue's name as routing key; the tier's wait queue holds it for its TTL, then
//! dead-letters it to the default exchange. The wait queue sets no `x-dead-letter-routing-key`,
//! so the message keeps the routing key it was published with and lands on its own work queue
//! ("If the routing key is not set, the message's own routing keys are used",
//! https://www.rabbitmq.com/docs/dlx). Unused tiers expire (`x-expires`); a queue that expires
//! does not dead-letter what it holds, so a tier in use is declared again, renewing its lease,
//! long before (see `Broker::ensure_wait_tier`). A retry is a new publish with no `x-death`
//! history, so parking a message on the same tier again is no dead-letter cycle.
//!
//! Messages expire only at the head of a queue ("expired messages can queue up behind
//! non-expired ones", https://www.rabbitmq.com/docs/ttl), and a tier's messages carry per-message
//! expirations of 90-100% of the tier (retry jitter), so a retry can wait behind one published
//! before it: it comes back no earlier than its own delay and no later than the tier after it
//! was parked (test: `topology::a_shared_tier_returns_each_retry_to_its_own_work_queue_within_the_tier`).
//!
//! There is no broker dead-letter queue: dead letters live in PostgreSQL. A work queue's
//! `x-delivery-limit` (poison protection for a consumer that crashes on a message) drops the
//! broker copy; the message is still stored, and the relay gives it a new copy (see
//! `outbox::relay`).
//!
//! Deployments from before this layout have per-queue `.dlq` and `.wait.<ms>` queues and work
//! queues declared with other arguments. A work queue that exists is used as it is (see
//! `Broker::ensure_queue`); the old wait queues still dead-letter to their work queues by
//! name and expire once unused.

use std::time::Duration;

use lapin::types::{AMQPValue, FieldTable, LongString};

use crate::domain::{QueueName, TenantId};

const PREFIX: &str = "tenant.";
const RETRY_EXCHANGE_PREFIX: &str = "msgsvc.retry.";
const WAIT_QUEUE_PREFIX: &str = "msgsvc.wait.";

/// Quorum queues' broker-level poison protection only (our consumer settles every message
/// itself); set explicitly because RabbitMQ 4 defaults quorum queues to 20.
pub const DELIVERY_LIMIT: i32 = 1000;

/// A tenant queue, the unit of consumption.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueRef {
    pub tenant_id: TenantId,
    pub queue_name: QueueName,
}

impl QueueRef {
    pub fn new(tenant_id: TenantId, queue_name: QueueName) -> Self {
        Self {
            tenant_id,
            queue_name,
        }
    }
}

pub fn work_queue(q: &QueueRef) -> String {
    format!("{PREFIX}{}.{}", q.tenant_id, q.queue_name)
}

/// The exchange a retry for `delay` is published to (routing key: the work queue's name).
pub fn retry_exchange(delay: Duration) -> String {
    format!("{RETRY_EXCHANGE_PREFIX}{}", delay.as_millis())
}

/// The broker's wait queue for `delay`, shared by every tenant queue.
pub fn wait_queue(delay: Duration) -> String {
    format!("{WAIT_QUEUE_PREFIX}{}", delay.as_millis())
}

/// A regular expression matching the work queues of `tenant`, or of every tenant (for the
/// management API's name filter).
pub fn work_queue_pattern(tenant: Option<TenantId>) -> String {
    let prefix = PREFIX.replace('.', "\\.");
    match tenant {
        Some(t) => format!("^{prefix}{t}\\."),
        None => format!("^{prefix}"),
    }
}

/// Maps a work queue name back to its tenant queue; `None` for anything that is not one.
pub fn parse_work_queue(name: &str) -> Option<QueueRef> {
    let rest = name.strip_prefix(PREFIX)?;
    let (tenant, queue) = rest.split_once('.')?;
    Some(QueueRef {
        tenant_id: tenant.parse().ok()?,
        queue_name: QueueName::parse(queue).ok()?,
    })
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

/// Quorum: `x-delivery-limit` exists only for quorum queues, and a replicated copy survives
/// the loss of a node in a cluster deployment. No dead-letter exchange: at the limit the copy
/// is dropped and PostgreSQL's is relayed again.
pub(crate) fn work_queue_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text("quorum"));
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongInt(DELIVERY_LIMIT),
    );
    args
}

/// Classic, named explicitly: Amazon MQ for RabbitMQ 4 creates a quorum queue when no type is
/// given. A tier is one queue per broker, so its type costs nothing per tenant; classic keeps
/// per-message TTL and dead-lettering as on every RabbitMQ version we run. A copy lost with a
/// node is relayed from PostgreSQL (`retrying` messages past their due time).
pub(crate) fn wait_queue_args(delay: Duration) -> FieldTable {
    let ttl = delay.as_millis().min(i64::MAX as u128) as i64;
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text("classic"));
    args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
    // Back through the default exchange with the routing key the retry was published with.
    args.insert("x-dead-letter-exchange".into(), text(""));
    // Redeclared while in use (see `Broker::ensure_wait_tier`), which renews the lease; a tier
    // unused for this long goes away, after its last message expired.
    args.insert(
        "x-expires".into(),
        AMQPValue::LongLongInt(wait_expires(ttl)),
    );
    args
}

pub(crate) fn wait_expires(ttl_ms: i64) -> i64 {
    ttl_ms.saturating_mul(2).saturating_add(600_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let q = QueueRef::new(TenantId::generate(), QueueName::parse("orders-v2").unwrap());
        let work = work_queue(&q);
        assert_eq!(parse_work_queue(&work), Some(q.clone()));
        assert_eq!(wait_queue(Duration::from_millis(5000)), "msgsvc.wait.5000");
        assert_eq!(
            retry_exchange(Duration::from_millis(5000)),
            "msgsvc.retry.5000"
        );
        assert_eq!(parse_work_queue(&wait_queue(Duration::from_secs(1))), None);
        assert_eq!(parse_work_queue(&format!("{work}.dlq")), None);
        assert_eq!(parse_work_queue("orders"), None);
        assert_eq!(parse_work_queue("tenant.not-a-uuid.orders"), None);
    }

    #[test]
    fn a_wait_tier_keeps_the_routing_key_it_was_published_with() {
        let args = wait_queue_args(Duration::from_secs(4));
        let inner = args.inner();
        assert!(inner.contains_key("x-dead-letter-exchange"));
        assert!(!inner.contains_key("x-dead-letter-routing-key"));
    }
}
