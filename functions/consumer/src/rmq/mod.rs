//! The Amazon MQ for RabbitMQ event (`aws:rmq`): mapping it to our tenant queues, and building
//! it from broker deliveries (the local event source sends exactly what Amazon MQ would).

pub mod event;
pub mod unmapped;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use lapin::types::AMQPValue;
use serde::Serialize;
use serde_json::{Value, json};
use shared::{
    broker::{QueueRef, parse_work_queue},
    delivery::{BatchHandler, BatchReport, Inbound},
    error::Result,
    observability::metrics::BATCHES_FAILED,
};

pub use event::{BasicProperties, RmqEvent, RmqMessage};
pub use unmapped::{Reason, Unmapped};

/// What the function returns for an event: a report per queue.
#[derive(Debug, Default, Serialize)]
pub struct EventReport {
    pub queues: Vec<QueueReport>,
}

#[derive(Debug, Serialize)]
pub struct QueueReport {
    pub queue: String,
    #[serde(flatten)]
    pub report: BatchReport,
    /// The deliveries counted in `unknown`, by reason (see [`unmapped`]).
    pub unmapped: Unmapped,
}

/// Starts the consumer's counters at zero, so a dashboard or alarm sees "none" rather than
/// "no data".
pub fn register_metrics() {
    metrics::counter!(BATCHES_FAILED).absolute(0);
    unmapped::register_metrics();
}

/// Handles one event, finishing before `deadline` (the invocation's). An `Err` (infrastructure
/// fault) makes Lambda fail the invocation, so Amazon MQ redelivers the batch. Deliveries that
/// are none of ours never do: they are counted and acknowledged (see [`unmapped`]).
pub async fn handle_event(
    handler: &BatchHandler,
    event: &RmqEvent,
    deadline: Instant,
) -> Result<EventReport> {
    let mut out = EventReport::default();
    for (key, messages) in &event.messages_by_queue {
        let (queue_name, _vhost) = event::split_queue_key(key);
        let Some(queue) = parse_work_queue(queue_name) else {
            let unmapped = Unmapped::not_a_tenant_queue(messages.len());
            unmapped.record(handler.context(), queue_name, None).await?;
            out.queues.push(QueueReport {
                queue: queue_name.to_string(),
                report: BatchReport {
                    unknown: messages.len(),
                    ..BatchReport::default()
                },
                unmapped,
            });
            continue;
        };
        let inbound: Vec<Inbound> = messages
            .iter()
            .map(|m| Inbound {
                message_id: m.basic_properties.message_id.clone(),
                redelivered: m.redelivered,
            })
            .collect();
        let report = handler
            .handle(&queue, &inbound, deadline)
            .await
            .inspect_err(|_| metrics::counter!(BATCHES_FAILED).increment(1))?;
        let unmapped = Unmapped::of_batch(&inbound, &report);
        unmapped
            .record(handler.context(), queue_name, Some(&queue))
            .await
            .inspect_err(|_| metrics::counter!(BATCHES_FAILED).increment(1))?;
        tracing::info!(tenant_id = %queue.tenant_id, queue = %queue.queue_name, ?report, "batch processed");
        out.queues.push(QueueReport {
            queue: queue_name.to_string(),
            report,
            unmapped,
        });
    }
    Ok(out)
}

/// The monotonic instant of the invocation's deadline (Lambda gives it as epoch milliseconds in
/// `Lambda-Runtime-Deadline-Ms`). A deadline that is not in the future cannot come from Lambda,
/// which invokes a function only with time left; `cargo lambda watch` sends the constant
/// `600000` (1970). Such a deadline is replaced with `fallback` from now, the configured function
/// timeout, rather than putting every message back.
pub fn invocation_deadline(deadline: std::time::SystemTime, fallback: Duration) -> Instant {
    match deadline.duration_since(std::time::SystemTime::now()) {
        Ok(left) if !left.is_zero() => Instant::now() + left,
        _ => {
            tracing::warn!(
                ?deadline,
                "the invocation's deadline is not in the future; using CONSUMER_FUNCTION_TIMEOUT"
            );
            Instant::now() + fallback
        }
    }
}

/// Builds the event Amazon MQ would send for these deliveries of one queue.
pub fn event_from_deliveries(
    queue: &QueueRef,
    vhost: &str,
    deliveries: &[lapin::message::Delivery],
) -> RmqEvent {
    let key = format!("{}::{}", shared::broker::work_queue(queue), vhost);
    let messages = deliveries.iter().map(message_from_delivery).collect();
    RmqEvent {
        event_source: Some("aws:rmq".into()),
        event_source_arn: Some("arn:aws:mq:local:000000000000:broker:local:b-local".into()),
        messages_by_queue: BTreeMap::from([(key, messages)]),
    }
}

fn message_from_delivery(d: &lapin::message::Delivery) -> RmqMessage {
    let p = &d.properties;
    let text = |s: &Option<lapin::types::ShortString>| s.as_ref().map(|s| s.to_string());
    // What the publisher did not set is null, as Amazon MQ sends it.
    let basic_properties = BasicProperties {
        content_type: text(p.content_type()),
        content_encoding: text(p.content_encoding()),
        headers: p
            .headers()
            .as_ref()
            .map(|h| {
                h.inner()
                    .iter()
                    .map(|(k, v)| (k.to_string(), header_value(v)))
                    .collect()
            })
            .unwrap_or_default(),
        delivery_mode: *p.delivery_mode(),
        priority: *p.priority(),
        correlation_id: text(p.correlation_id()),
        reply_to: text(p.reply_to()),
        expiration: text(p.expiration()),
        message_id: text(p.message_id()),
        // Amazon MQ formats the timestamp as a display string, e.g. "Jan 1, 1970, 12:33:41 AM".
        timestamp: p.timestamp().and_then(|t| {
            chrono::DateTime::from_timestamp(t as i64, 0)
                .map(|dt| dt.format("%b %-d, %Y, %-I:%M:%S %p").to_string())
        }),
        type_: text(p.kind()),
        user_id: text(p.user_id()),
        app_id: text(p.app_id()),
        cluster_id: text(p.cluster_id()),
        body_size: Some(d.data.len() as u64),
    };
    RmqMessage {
        basic_properties,
        redelivered: d.redelivered,
        data: Some(STANDARD.encode(&d.data)),
    }
}

/// Amazon MQ's JSON for a header value: strings as `{"bytes": [...]}`, numbers as numbers.
fn header_value(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::LongString(s) => json!({ "bytes": s.as_bytes() }),
        AMQPValue::ShortString(s) => json!({ "bytes": s.as_str().as_bytes() }),
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::ShortShortInt(n) => json!(n),
        AMQPValue::ShortShortUInt(n) => json!(n),
        AMQPValue::ShortInt(n) => json!(n),
        AMQPValue::ShortUInt(n) => json!(n),
        AMQPValue::LongInt(n) => json!(n),
        AMQPValue::LongUInt(n) => json!(n),
        AMQPValue::LongLongInt(n) => json!(n),
        AMQPValue::Float(n) => json!(n),
        AMQPValue::Double(n) => json!(n),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    #[test]
    fn a_deadline_in_the_past_falls_back_to_the_function_timeout() {
        let fallback = Duration::from_secs(900);
        let soon = invocation_deadline(SystemTime::now() + Duration::from_secs(10), fallback);
        assert!(soon <= Instant::now() + Duration::from_secs(10));
        assert!(soon > Instant::now() + Duration::from_secs(9));
        // What `cargo lambda watch` sends: Lambda-Runtime-Deadline-Ms: 600000.
        let watch = SystemTime::UNIX_EPOCH + Duration::from_millis(600_000);
        let later = invocation_deadline(watch, fallback);
        assert!(later > Instant::now() + Duration::from_secs(899));
    }
}
