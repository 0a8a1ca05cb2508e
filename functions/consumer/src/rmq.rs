//! The Amazon MQ for RabbitMQ event (`aws:rmq`): mapping it to our tenant queues, and building
//! it from broker deliveries (the local event source sends exactly what Amazon MQ would).

use std::collections::HashMap;

use aws_lambda_events::event::rabbitmq::{RabbitMqBasicProperties, RabbitMqEvent, RabbitMqMessage};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use lapin::types::AMQPValue;
use serde::Serialize;
use serde_json::{Value, json};
use shared::{
    broker::{QueueRef, parse_work_queue},
    delivery::{BatchHandler, BatchReport, Inbound},
    error::Result,
    metrics::BATCHES_FAILED,
};

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
}

/// Starts the failed-batch counter at zero, so a dashboard or alarm sees "none" rather than
/// "no data".
pub fn register_metrics() {
    metrics::counter!(BATCHES_FAILED).absolute(0);
}

/// Handles one event. An `Err` (infrastructure fault) makes Lambda fail the invocation, so
/// Amazon MQ redelivers the batch.
pub async fn handle_event(handler: &BatchHandler, event: &RabbitMqEvent) -> Result<EventReport> {
    let mut out = EventReport::default();
    for (key, messages) in &event.messages_by_queue {
        // Keys are "<queue>::<vhost>".
        let queue_name = key.rsplit_once("::").map_or(key.as_str(), |(q, _)| q);
        let Some(queue) = parse_work_queue(queue_name) else {
            tracing::warn!(
                queue = queue_name,
                count = messages.len(),
                "event for a queue that is not a tenant work queue; ignored"
            );
            out.queues.push(QueueReport {
                queue: queue_name.to_string(),
                report: BatchReport {
                    unknown: messages.len(),
                    ..BatchReport::default()
                },
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
            .handle(&queue, &inbound)
            .await
            .inspect_err(|_| metrics::counter!(BATCHES_FAILED).increment(1))?;
        tracing::info!(tenant_id = %queue.tenant_id, queue = %queue.queue_name, ?report, "batch processed");
        out.queues.push(QueueReport {
            queue: queue_name.to_string(),
            report,
        });
    }
    Ok(out)
}

/// Builds the event Amazon MQ would send for these deliveries of one queue.
pub fn event_from_deliveries(
    queue: &QueueRef,
    vhost: &str,
    deliveries: &[lapin::message::Delivery],
) -> RabbitMqEvent {
    let key = format!("{}::{}", shared::broker::work_queue(queue), vhost);
    let messages = deliveries.iter().map(message_from_delivery).collect();
    let mut event = RabbitMqEvent::default();
    event.event_source = Some("aws:rmq".into());
    event.event_source_arn = Some("arn:aws:mq:local:000000000000:broker:local:b-local".into());
    event.messages_by_queue = HashMap::from([(key, messages)]);
    event
}

fn message_from_delivery(d: &lapin::message::Delivery) -> RabbitMqMessage {
    let p = &d.properties;
    let mut props = RabbitMqBasicProperties::default();
    props.content_type = p.content_type().as_ref().map(|s| s.to_string());
    props.content_encoding = p.content_encoding().as_ref().map(|s| s.to_string());
    props.headers = p
        .headers()
        .as_ref()
        .map(|h| {
            h.inner()
                .iter()
                .map(|(k, v)| (k.to_string(), header_value(v)))
                .collect()
        })
        .unwrap_or_default();
    props.delivery_mode = p.delivery_mode().unwrap_or(2);
    props.priority = p.priority().unwrap_or(0);
    props.correlation_id = p.correlation_id().as_ref().map(|s| s.to_string());
    props.reply_to = p.reply_to().as_ref().map(|s| s.to_string());
    props.expiration = p.expiration().as_ref().map(|s| s.to_string());
    props.message_id = p.message_id().as_ref().map(|s| s.to_string());
    // Amazon MQ formats the timestamp as a display string, e.g. "Jan 1, 1970, 12:33:41 AM".
    props.timestamp = p.timestamp().and_then(|t| {
        chrono::DateTime::from_timestamp(t as i64, 0)
            .map(|dt| dt.format("%b %-d, %Y, %-I:%M:%S %p").to_string())
    });
    props.app_id = p.app_id().as_ref().map(|s| s.to_string());
    props.body_size = d.data.len() as u64;
    let mut msg = RabbitMqMessage::default();
    msg.basic_properties = props;
    msg.redelivered = d.redelivered;
    msg.data = Some(STANDARD.encode(&d.data));
    msg
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
