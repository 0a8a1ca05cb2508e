//! Deliveries that are none of ours: no message id, an id that is not a UUID, a UUID this
//! service never issued (another publisher's message on a tenant queue), or any message of a
//! queue that is not a tenant work queue. They are acknowledged with the batch (processing
//! them is not ours to do, and failing the invocation would only make Amazon MQ redeliver them
//! forever, stalling the queue), and made visible: a warning per batch and reason with the
//! count, the `msgsvc_consumer_unmapped_messages_total` counter, and for a tenant work queue a
//! per-queue count in PostgreSQL that the status API shows.
//!
//! The body in the event is never read (PostgreSQL holds the message), so a foreign body is
//! recognised by its message id alone.

use serde::Serialize;
use shared::{
    AppContext,
    broker::QueueRef,
    delivery::{BatchReport, Inbound},
    domain::MessageId,
    error::Result,
    observability::metrics::UNMAPPED_MESSAGES,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    NoMessageId,
    InvalidMessageId,
    UnknownMessage,
    NotATenantQueue,
}

impl Reason {
    pub const ALL: [Reason; 4] = [
        Reason::NoMessageId,
        Reason::InvalidMessageId,
        Reason::UnknownMessage,
        Reason::NotATenantQueue,
    ];

    /// The metric label, status API and log value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoMessageId => "no_message_id",
            Reason::InvalidMessageId => "invalid_message_id",
            Reason::UnknownMessage => "unknown_message",
            Reason::NotATenantQueue => "not_a_tenant_queue",
        }
    }

    /// The warning logged per batch and reason.
    fn warning(self) -> &'static str {
        match self {
            Reason::NoMessageId => "deliveries without a message id acknowledged unprocessed",
            Reason::InvalidMessageId => {
                "deliveries whose message id is not a UUID acknowledged unprocessed"
            }
            Reason::UnknownMessage => {
                "deliveries whose message id is none of ours acknowledged unprocessed"
            }
            // The wording log searches and the runtime tests already know.
            Reason::NotATenantQueue => "event for a queue that is not a tenant work queue; ignored",
        }
    }
}

/// One queue's unmapped deliveries in one event, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Unmapped {
    pub no_message_id: usize,
    pub invalid_message_id: usize,
    pub unknown_message: usize,
    pub not_a_tenant_queue: usize,
}

impl Unmapped {
    /// Every delivery of a queue that is not a tenant work queue.
    pub fn not_a_tenant_queue(count: usize) -> Self {
        Self {
            not_a_tenant_queue: count,
            ..Self::default()
        }
    }

    /// A tenant work queue's batch: deliveries without an id or with one that is not a UUID
    /// are told by the id alone; the handler's `unknown` holds those plus the UUIDs it found
    /// in no message of ours.
    pub fn of_batch(inbound: &[Inbound], report: &BatchReport) -> Self {
        let mut u = Self::default();
        for d in inbound {
            match d.message_id.as_deref() {
                None => u.no_message_id += 1,
                Some(id) if id.parse::<MessageId>().is_err() => u.invalid_message_id += 1,
                Some(_) => {}
            }
        }
        u.unknown_message = report
            .unknown
            .saturating_sub(u.no_message_id + u.invalid_message_id);
        u
    }

    pub fn count(&self, reason: Reason) -> usize {
        match reason {
            Reason::NoMessageId => self.no_message_id,
            Reason::InvalidMessageId => self.invalid_message_id,
            Reason::UnknownMessage => self.unknown_message,
            Reason::NotATenantQueue => self.not_a_tenant_queue,
        }
    }

    pub fn total(&self) -> usize {
        Reason::ALL.iter().map(|r| self.count(*r)).sum()
    }

    /// The most frequent reason (the first of [`Reason::ALL`] on a tie); `None` when empty.
    pub fn main_reason(&self) -> Option<Reason> {
        Reason::ALL
            .iter()
            .copied()
            .filter(|r| self.count(*r) > 0)
            .max_by_key(|r| (self.count(*r), std::cmp::Reverse(*r as u8)))
    }

    /// Records them: for a tenant work queue first the per-queue count in PostgreSQL (one
    /// upsert; its failure is an infrastructure fault and fails the invocation, so the batch
    /// comes back and is counted then), then one warning per reason and the counter.
    /// `queue_name` is the broker queue's name as the event keyed it.
    pub async fn record(
        &self,
        ctx: &AppContext,
        queue_name: &str,
        tenant_queue: Option<&QueueRef>,
    ) -> Result<()> {
        let Some(main) = self.main_reason() else {
            return Ok(());
        };
        if let Some(q) = tenant_queue {
            shared::db::unmapped::record(
                &ctx.db,
                q.tenant_id,
                q.queue_name.as_str(),
                self.total() as u64,
                main.as_str(),
            )
            .await?;
        }
        for reason in Reason::ALL {
            let count = self.count(reason);
            if count == 0 {
                continue;
            }
            match tenant_queue {
                Some(q) => {
                    tracing::warn!(tenant_id = %q.tenant_id, queue = %q.queue_name,
                        reason = reason.as_str(), count, "{}", reason.warning());
                    metrics::counter!(UNMAPPED_MESSAGES,
                        "tenant_id" => q.tenant_id.to_string(),
                        "queue" => q.queue_name.to_string(),
                        "reason" => reason.as_str())
                    .increment(count as u64);
                }
                None => {
                    tracing::warn!(
                        queue = queue_name,
                        reason = reason.as_str(),
                        count,
                        "{}",
                        reason.warning()
                    );
                    metrics::counter!(UNMAPPED_MESSAGES,
                        "queue" => queue_name.to_string(),
                        "reason" => reason.as_str())
                    .increment(count as u64);
                }
            }
        }
        Ok(())
    }
}

/// Starts the counter at zero for each reason, so a dashboard or alarm sees "none" rather than
/// "no data".
pub fn register_metrics() {
    for reason in Reason::ALL {
        metrics::counter!(UNMAPPED_MESSAGES, "reason" => reason.as_str()).absolute(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbound(id: Option<&str>) -> Inbound {
        Inbound {
            message_id: id.map(str::to_string),
            redelivered: false,
        }
    }

    #[test]
    fn a_batch_is_split_by_reason() {
        let batch = [
            inbound(None),
            inbound(Some("order-17")),
            inbound(Some("")),
            inbound(Some("0190a5c2-7e1f-7000-8000-000000000001")),
            inbound(Some("0190a5c2-7e1f-7000-8000-000000000002")),
        ];
        // The handler found neither UUID, and counted the other three as unknown too.
        let report = BatchReport {
            unknown: 5,
            ..BatchReport::default()
        };
        let u = Unmapped::of_batch(&batch, &report);
        assert_eq!(
            u,
            Unmapped {
                no_message_id: 1,
                invalid_message_id: 2,
                unknown_message: 2,
                not_a_tenant_queue: 0,
            }
        );
        assert_eq!(u.total(), 5);
        assert_eq!(
            u.main_reason(),
            Some(Reason::InvalidMessageId),
            "2 ties 2: first wins"
        );
    }

    #[test]
    fn ours_are_not_unmapped() {
        let batch = [inbound(Some("0190a5c2-7e1f-7000-8000-000000000001"))];
        let u = Unmapped::of_batch(&batch, &BatchReport::default());
        assert_eq!(u.total(), 0);
        assert_eq!(u.main_reason(), None);
        assert_eq!(
            Unmapped::not_a_tenant_queue(3).main_reason(),
            Some(Reason::NotATenantQueue)
        );
    }
}
