//! One invocation's batch, as an Amazon MQ event source mapping gathers it: records of one
//! queue, at most the mapping's batch size, and never more than Lambda's invocation payload
//! limit once serialised. A record that cannot fit an invocation even alone is one the mapping
//! drops.

use std::io;

use lapin::message::Delivery;
use serde::Serialize;
use shared::broker::QueueRef;

use crate::rmq::{RmqEvent, RmqMessage, event_from_deliveries};

/// Lambda's payload limit for a synchronous invocation: "6 MB" in the docs
/// (https://docs.aws.amazon.com/lambda/latest/dg/API_Invoke.html), 6 MiB as Lambda enforces it
/// ("Request must be smaller than 6291456 bytes for the InvokeFunction operation").
pub const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// A delivery as it appears in an event, with what it adds to the payload.
#[derive(Debug)]
pub struct Record {
    pub delivery_tag: u64,
    pub message: RmqMessage,
    /// Its serialised size, the separator excluded.
    pub bytes: usize,
}

impl Record {
    pub fn new(delivery_tag: u64, message: RmqMessage) -> Self {
        let bytes = json_len(&message);
        Self {
            delivery_tag,
            message,
            bytes,
        }
    }
}

/// Turns one queue's deliveries into records and batches.
pub struct Batcher {
    queue: QueueRef,
    vhost: String,
    max_records: usize,
}

impl Batcher {
    pub fn new(queue: QueueRef, vhost: String, max_records: usize) -> Self {
        Self {
            queue,
            vhost,
            max_records: max_records.max(1),
        }
    }

    /// The record of a delivery, exactly as `event_from_deliveries` writes it.
    pub fn record(&self, d: &Delivery) -> Record {
        let event = event_from_deliveries(&self.queue, &self.vhost, std::slice::from_ref(d));
        let message = event
            .messages_by_queue
            .into_values()
            .flatten()
            .next()
            .unwrap_or_default();
        Record::new(d.delivery_tag, message)
    }

    pub fn batch(&self) -> Batch {
        Batch::new(
            event_from_deliveries(&self.queue, &self.vhost, &[]),
            self.max_records,
        )
    }
}

/// What became of a record offered to a batch.
#[derive(Debug)]
pub enum Offer {
    Taken,
    /// Does not fit with the records already in: the batch is complete and this record starts
    /// the next one.
    Full(Record),
    /// Does not fit an invocation even alone.
    Oversized(Record),
}

#[derive(Debug)]
pub struct Batch {
    /// The event with the queue's key and no messages yet.
    envelope: RmqEvent,
    messages: Vec<RmqMessage>,
    last_tag: u64,
    max_records: usize,
    /// The serialised event's size so far.
    bytes: usize,
}

impl Batch {
    /// `envelope` holds one queue key with an empty list.
    pub fn new(envelope: RmqEvent, max_records: usize) -> Self {
        let bytes = json_len(&envelope);
        Self {
            envelope,
            messages: Vec::new(),
            last_tag: 0,
            max_records,
            bytes,
        }
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.messages.len() >= self.max_records
    }

    /// The size of the event this batch makes, in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn offer(&mut self, r: Record) -> Offer {
        if self.is_full() {
            return Offer::Full(r);
        }
        let separator = usize::from(!self.messages.is_empty());
        let bytes = self.bytes + separator + r.bytes;
        if bytes > MAX_PAYLOAD_BYTES {
            return if self.messages.is_empty() {
                Offer::Oversized(r)
            } else {
                Offer::Full(r)
            };
        }
        self.bytes = bytes;
        self.last_tag = r.delivery_tag;
        self.messages.push(r.message);
        Offer::Taken
    }

    /// The event, and the delivery tag of its last record (deliveries arrive in tag order, so
    /// settling up to it with `multiple` settles exactly this batch's records still open).
    pub fn into_event(self) -> (RmqEvent, u64) {
        let mut event = self.envelope;
        if let Some(list) = event.messages_by_queue.values_mut().next() {
            *list = self.messages;
        }
        (event, self.last_tag)
    }
}

/// The length of a value's JSON, without keeping the text.
fn json_len(v: &impl Serialize) -> usize {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, v).expect("an event always serialises");
    count.0
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn envelope() -> RmqEvent {
        RmqEvent {
            event_source: Some("aws:rmq".into()),
            event_source_arn: Some("arn:aws:mq:local:000000000000:broker:local:b-local".into()),
            messages_by_queue: BTreeMap::from([("tenant.t.q::/".to_string(), Vec::new())]),
        }
    }

    fn record(tag: u64, body_len: usize) -> Record {
        let mut m = RmqMessage {
            data: Some("A".repeat(body_len)),
            ..RmqMessage::default()
        };
        m.basic_properties.message_id = Some(format!("m{tag}"));
        Record::new(tag, m)
    }

    #[test]
    fn the_counted_size_is_the_serialised_events() {
        let mut batch = Batch::new(envelope(), 10);
        assert_eq!(
            batch.bytes(),
            serde_json::to_vec(&envelope()).unwrap().len()
        );
        for tag in 1..=4 {
            assert!(matches!(
                batch.offer(record(tag, 100 * tag as usize)),
                Offer::Taken
            ));
        }
        let bytes = batch.bytes();
        let (event, last) = batch.into_event();
        assert_eq!(serde_json::to_vec(&event).unwrap().len(), bytes);
        assert_eq!(last, 4);
        assert_eq!(event.messages_by_queue["tenant.t.q::/"].len(), 4);
    }

    #[test]
    fn a_batch_stops_at_its_size() {
        let mut batch = Batch::new(envelope(), 2);
        assert!(matches!(batch.offer(record(1, 10)), Offer::Taken));
        assert!(matches!(batch.offer(record(2, 10)), Offer::Taken));
        assert!(batch.is_full());
        assert!(matches!(batch.offer(record(3, 10)), Offer::Full(r) if r.delivery_tag == 3));
    }

    #[test]
    fn a_batch_stops_before_the_payload_limit_and_drops_what_never_fits() {
        let third = MAX_PAYLOAD_BYTES / 3;
        let mut batch = Batch::new(envelope(), 10);
        assert!(matches!(batch.offer(record(1, third)), Offer::Taken));
        assert!(matches!(batch.offer(record(2, third)), Offer::Taken));
        // The envelope and the records' properties push a third one over.
        assert!(matches!(batch.offer(record(3, third)), Offer::Full(_)));
        assert!(batch.bytes() <= MAX_PAYLOAD_BYTES);

        let mut empty = Batch::new(envelope(), 10);
        assert!(matches!(
            empty.offer(record(4, MAX_PAYLOAD_BYTES)),
            Offer::Oversized(_)
        ));
        assert!(empty.is_empty());
        // One that fits exactly is taken.
        let exact = MAX_PAYLOAD_BYTES - empty.bytes() - (record(5, 0).bytes);
        assert!(matches!(empty.offer(record(5, exact)), Offer::Taken));
        assert_eq!(empty.bytes(), MAX_PAYLOAD_BYTES);
    }
}
