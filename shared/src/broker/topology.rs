//! Broker names, derived from the tenant id and a validated queue name only:
//!
//! | what | name |
//! |---|---|
//! | work queue (quorum) | `tenant.<tenant_id>.<queue>` |
//! | dead-letter queue (quorum) | `tenant.<tenant_id>.<queue>.dlq` |
//! | retry wait queue (classic, TTL) | `tenant.<tenant_id>.<queue>.wait.<delay_ms>` |
//!
//! A wait queue holds a failed message for its queue-level TTL, then dead-letters it through
//! the default exchange back to the work queue. Its delay is in its name, so changing a queue's
//! `retry_delay` creates new tiers instead of clashing with the old arguments; unused tiers
//! expire (`x-expires`).

use std::time::Duration;

use lapin::types::{AMQPValue, FieldTable, LongString};

use crate::domain::{QueueName, TenantId};

const PREFIX: &str = "tenant.";

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

pub fn dead_letter_queue(q: &QueueRef) -> String {
    format!("{}.dlq", work_queue(q))
}

pub fn wait_queue(q: &QueueRef, delay: Duration) -> String {
    format!("{}.wait.{}", work_queue(q), delay.as_millis())
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

pub(crate) fn work_queue_args(q: &QueueRef) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text("quorum"));
    // Broker-level poison protection only (our consumer settles every message itself); set
    // explicitly because RabbitMQ 4 defaults quorum queues to 20.
    args.insert("x-delivery-limit".into(), AMQPValue::LongInt(1000));
    args.insert("x-dead-letter-exchange".into(), text(""));
    args.insert(
        "x-dead-letter-routing-key".into(),
        text(&dead_letter_queue(q)),
    );
    args
}

pub(crate) fn dead_letter_queue_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text("quorum"));
    args
}

pub(crate) fn wait_queue_args(q: &QueueRef, delay: Duration) -> FieldTable {
    let ttl = delay.as_millis().min(i64::MAX as u128) as i64;
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
    args.insert("x-dead-letter-exchange".into(), text(""));
    args.insert("x-dead-letter-routing-key".into(), text(&work_queue(q)));
    // Redeclared before every use, which renews the lease; an unused tier goes away.
    args.insert(
        "x-expires".into(),
        AMQPValue::LongLongInt(ttl.saturating_mul(2).saturating_add(600_000)),
    );
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let q = QueueRef::new(TenantId::generate(), QueueName::parse("orders-v2").unwrap());
        let work = work_queue(&q);
        assert_eq!(parse_work_queue(&work), Some(q.clone()));
        assert_eq!(dead_letter_queue(&q), format!("{work}.dlq"));
        assert_eq!(
            wait_queue(&q, Duration::from_millis(5000)),
            format!("{work}.wait.5000")
        );
        assert_eq!(parse_work_queue(&dead_letter_queue(&q)), None);
        assert_eq!(parse_work_queue("orders"), None);
        assert_eq!(parse_work_queue("tenant.not-a-uuid.orders"), None);
    }
}
