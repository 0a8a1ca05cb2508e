//! The `aws:rmq` event as Amazon MQ for RabbitMQ sends it, decoded leniently.
//!
//! Amazon MQ fills `basicProperties` from whatever the publisher set, and sends `null` for what
//! it did not: AWS's own capture (aws/aws-lambda-dotnet issue 1562) has `"priority": null`,
//! `"timestamp": null` and `"messageId": null`, where `aws_lambda_events` 1.2 declares
//! `priority: u8` and `bodySize: u64` and so fails the whole invocation before our handler runs.
//! Here every field is optional, a field of the wrong type reads as absent, unknown fields are
//! ignored, and a message that is not even an object reads as a message with nothing set: what
//! we cannot use is reported as unmapped by the handler, never an error that stalls the queue.
//!
//! Serialised, every field is written, absent ones as `null`, as Amazon MQ does (the capture
//! above), so the local event source sends nothing more forgiving than AWS.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, de::DeserializeOwned};
use serde_json::Value;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RmqEvent {
    #[serde(default, deserialize_with = "lenient")]
    pub event_source: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub event_source_arn: Option<String>,
    /// Keyed `"<queue>::<vhost>"`.
    #[serde(
        rename = "rmqMessagesByQueue",
        default,
        deserialize_with = "messages_by_queue"
    )]
    pub messages_by_queue: BTreeMap<String, Vec<RmqMessage>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RmqMessage {
    #[serde(default, deserialize_with = "lenient_or_default")]
    pub basic_properties: BasicProperties,
    #[serde(default, deserialize_with = "lenient_or_default")]
    pub redelivered: bool,
    /// The body, base64. Absent when the event carries none.
    #[serde(default, deserialize_with = "lenient")]
    pub data: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BasicProperties {
    #[serde(default, deserialize_with = "lenient")]
    pub content_type: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub content_encoding: Option<String>,
    /// String values arrive as `{"bytes": [...]}`, numbers as numbers.
    #[serde(default, deserialize_with = "lenient_or_default")]
    pub headers: BTreeMap<String, Value>,
    #[serde(default, deserialize_with = "lenient")]
    pub delivery_mode: Option<u8>,
    #[serde(default, deserialize_with = "lenient")]
    pub priority: Option<u8>,
    #[serde(default, deserialize_with = "lenient")]
    pub correlation_id: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub reply_to: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub expiration: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub message_id: Option<String>,
    /// A display string such as `"Jan 1, 1970, 12:33:41 AM"`, not a number.
    #[serde(default, deserialize_with = "lenient")]
    pub timestamp: Option<String>,
    #[serde(rename = "type", default, deserialize_with = "lenient")]
    pub type_: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub user_id: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub app_id: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub cluster_id: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub body_size: Option<u64>,
}

/// A value of the wrong type (or `null`) reads as absent instead of failing the event.
fn lenient<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(serde_json::from_value(v).ok())
}

fn lenient_or_default<'de, D: Deserializer<'de>, T: DeserializeOwned + Default>(
    d: D,
) -> Result<T, D::Error> {
    Ok(lenient(d)?.unwrap_or_default())
}

/// Each queue's list read message by message, so one malformed message cannot hide the others.
fn messages_by_queue<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Vec<RmqMessage>>, D::Error> {
    let Some(queues) = lenient::<_, BTreeMap<String, Value>>(d)? else {
        return Ok(BTreeMap::new());
    };
    Ok(queues
        .into_iter()
        .map(|(key, list)| {
            let messages = match list {
                Value::Array(items) => items
                    .into_iter()
                    .map(|m| serde_json::from_value(m).unwrap_or_default())
                    .collect(),
                _ => Vec::new(),
            };
            (key, messages)
        })
        .collect())
}

impl RmqEvent {
    /// Decodes any JSON value; what is not an `aws:rmq` event reads as an event with no messages.
    pub fn decode(v: Value) -> Self {
        serde_json::from_value(v).unwrap_or_default()
    }
}

/// Splits a `"<queue>::<vhost>"` key; a key without `::` is a queue on the default vhost.
pub fn split_queue_key(key: &str) -> (&str, &str) {
    key.rsplit_once("::").unwrap_or((key, "/"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nulls_wrong_types_and_unknown_fields_read_as_absent() {
        let event = RmqEvent::decode(json!({
            "eventSource": "aws:rmq",
            "rmqMessagesByQueue": {
                "q::/": [
                    {"basicProperties": {"priority": null, "bodySize": "x", "messageId": 7,
                                         "deliveryMode": 2, "newField": [1]},
                     "redelivered": true},
                    "not an object",
                    {"data": "e30="}
                ],
                "other::/": {"not": "a list"}
            },
            "somethingNew": true
        }));
        let q = &event.messages_by_queue["q::/"];
        assert_eq!(q.len(), 3);
        let p = &q[0].basic_properties;
        assert_eq!(
            (p.priority, p.body_size, p.delivery_mode),
            (None, None, Some(2))
        );
        assert_eq!(p.message_id, None, "a number is not a message id");
        assert!(q[0].redelivered);
        assert_eq!(q[1], RmqMessage::default());
        assert_eq!(q[2].data.as_deref(), Some("e30="));
        assert!(event.messages_by_queue["other::/"].is_empty());
        assert_eq!(RmqEvent::decode(json!("nonsense")), RmqEvent::default());
    }

    #[test]
    fn serialises_absent_fields_as_null_like_amazon_mq() {
        let v = serde_json::to_value(RmqMessage::default()).unwrap();
        let props = v["basicProperties"].as_object().unwrap();
        assert_eq!(props["priority"], Value::Null);
        assert_eq!(props["messageId"], Value::Null);
        assert_eq!(props["type"], Value::Null);
        assert_eq!(props.len(), 15, "every basicProperties field is written");
        assert_eq!(v["data"], Value::Null);
    }

    #[test]
    fn queue_keys() {
        assert_eq!(split_queue_key("t.q::/"), ("t.q", "/"));
        assert_eq!(split_queue_key("a::b::vh"), ("a::b", "vh"));
        assert_eq!(split_queue_key("plain"), ("plain", "/"));
    }
}
