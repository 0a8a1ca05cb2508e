//! Messages: their lifecycle and the rules a publish request must meet.

use std::{collections::BTreeMap, fmt, str::FromStr};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{MessageId, QueueName, TenantId, headers};
use crate::error::{Code, Error};

/// `pending -> queued -> processing -> completed`, or `-> retrying -> ... -> dead_lettered`;
/// a delayed message starts `scheduled` (then `pending` when due, or `cancelled`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Stored until its `deliver_at`; only PostgreSQL holds it, the broker nothing.
    Scheduled,
    /// Stored, not yet confirmed by the broker; the outbox relay republishes it.
    Pending,
    Queued,
    Processing,
    Retrying,
    Completed,
    DeadLettered,
    /// Cancelled while scheduled; never delivered.
    Cancelled,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 8] = [
        MessageStatus::Scheduled,
        MessageStatus::Pending,
        MessageStatus::Queued,
        MessageStatus::Processing,
        MessageStatus::Retrying,
        MessageStatus::Completed,
        MessageStatus::DeadLettered,
        MessageStatus::Cancelled,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            MessageStatus::Scheduled => "scheduled",
            MessageStatus::Pending => "pending",
            MessageStatus::Queued => "queued",
            MessageStatus::Processing => "processing",
            MessageStatus::Retrying => "retrying",
            MessageStatus::Completed => "completed",
            MessageStatus::DeadLettered => "dead_lettered",
            MessageStatus::Cancelled => "cancelled",
        }
    }

    /// No further processing happens in these states (until a redrive).
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            MessageStatus::Completed | MessageStatus::DeadLettered | MessageStatus::Cancelled
        )
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(
                    Code::InvalidStatus,
                    "status must be one of scheduled, pending, queued, processing, retrying, completed, dead_lettered, cancelled",
                )
            })
    }
}

/// A stored message as the API reports it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize)]
pub struct Message {
    pub id: MessageId,
    pub tenant_id: TenantId,
    pub queue_name: String,
    pub status: MessageStatus,
    /// Any JSON value except null, as published.
    pub message_body: Value,
    pub headers: BTreeMap<String, String>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub idempotency_key: Option<String>,
    /// Messages of one key in one queue run one at a time, in order.
    pub ordering_key: Option<String>,
    /// When a delayed message may first be delivered; null for one published undelayed.
    pub deliver_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub queued_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub dead_lettered_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

pub const MAX_HEADERS: usize = 32;
pub const MAX_HEADER_NAME_LEN: usize = 128;
pub const MAX_HEADER_VALUE_LEN: usize = 1024;
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
pub use super::headers::header_name_pattern;

/// A publish request that passed every rule; the only way to build one is `NewMessage::parse`.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub id: MessageId,
    pub queue_name: QueueName,
    pub body: Value,
    /// The body serialised once, as sent to the broker and counted against the size limit.
    pub body_bytes: Vec<u8>,
    pub headers: BTreeMap<String, String>,
    pub idempotency_key: Option<String>,
    pub ordering_key: Option<String>,
    /// Stored `scheduled` when this is still ahead at insert.
    pub deliver_at: Option<DateTime<Utc>>,
}

/// How a message is to be delivered besides its content: its ordering key and delay.
#[derive(Clone, Debug, Default)]
pub struct DeliveryOptions {
    pub ordering_key: Option<String>,
    /// Already resolved (`schedule::resolve`).
    pub deliver_at: Option<DateTime<Utc>>,
}

impl NewMessage {
    pub fn parse(
        queue_name: &str,
        body: Value,
        headers: Option<BTreeMap<String, String>>,
        idempotency_key: Option<String>,
        delivery: DeliveryOptions,
        max_body_bytes: usize,
    ) -> Result<Self, Error> {
        let queue_name = check_form(
            queue_name,
            &body,
            headers.as_ref(),
            idempotency_key.as_deref(),
            delivery.ordering_key.as_deref(),
        )?;
        let body_bytes = serde_json::to_vec(&body).map_err(|e| Error::Internal(e.into()))?;
        if body_bytes.len() > max_body_bytes {
            return Err(Error::TooLarge {
                code: Code::MessageTooLarge,
                message: format!(
                    "message_body is {} bytes; the limit is {max_body_bytes}",
                    body_bytes.len()
                ),
            });
        }
        Ok(Self {
            id: MessageId::generate(),
            queue_name,
            body,
            body_bytes,
            headers: headers.unwrap_or_default(),
            idempotency_key,
            ordering_key: delivery.ordering_key,
            deliver_at: delivery.deliver_at,
        })
    }
}

/// The rules of a publish request's form, which the document states: everything but the
/// body's size, which is the tenant's limit. A batch is refused whole when an item breaks
/// one of these, and answered item by item for the rest.
pub fn check_form(
    queue_name: &str,
    body: &Value,
    headers: Option<&BTreeMap<String, String>>,
    idempotency_key: Option<&str>,
    ordering_key: Option<&str>,
) -> Result<QueueName, Error> {
    let queue_name = QueueName::parse(queue_name)?;
    if body.is_null() {
        return Err(Error::invalid(
            Code::InvalidMessageBody,
            "message_body is required and must not be null",
        ));
    }
    if contains_nul(body) {
        // PostgreSQL's jsonb cannot store it.
        return Err(Error::invalid(
            Code::InvalidMessageBody,
            "message_body must not contain the NUL character (\\u0000)",
        ));
    }
    if let Some(headers) = headers {
        validate_headers(headers)?;
    }
    if let Some(key) = idempotency_key {
        validate_idempotency_key(key)?;
    }
    if let Some(key) = ordering_key {
        super::ordering::validate_ordering_key(key)?;
    }
    Ok(queue_name)
}

/// True when a string or an object key anywhere in the value holds U+0000.
fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

fn validate_headers(headers: &BTreeMap<String, String>) -> Result<(), Error> {
    if headers.len() > MAX_HEADERS {
        return Err(Error::invalid(
            Code::InvalidHeaders,
            format!("at most {MAX_HEADERS} headers are allowed"),
        ));
    }
    for (name, value) in headers {
        let name_ok = (1..=MAX_HEADER_NAME_LEN).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !name_ok {
            return Err(Error::invalid(
                Code::InvalidHeaders,
                format!(
                    "header name {name:?} must be 1-{MAX_HEADER_NAME_LEN} characters of A-Z, a-z, 0-9, '-', '_' and '.'"
                ),
            ));
        }
        if headers::is_reserved(name) {
            return Err(Error::invalid(
                Code::InvalidHeaders,
                format!(
                    "header name {name:?} is reserved for the service: {}",
                    headers::reserved_description()
                ),
            ));
        }
        // In characters, as JSON Schema's `maxLength` counts.
        if value.chars().count() > MAX_HEADER_VALUE_LEN || value.chars().any(char::is_control) {
            return Err(Error::invalid(
                Code::InvalidHeaders,
                format!(
                    "header {name:?}: values are at most {MAX_HEADER_VALUE_LEN} characters without control characters"
                ),
            ));
        }
    }
    Ok(())
}

fn validate_idempotency_key(key: &str) -> Result<(), Error> {
    let ok = (1..=MAX_IDEMPOTENCY_KEY_LEN).contains(&key.len())
        && key.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            Code::InvalidIdempotencyKey,
            format!("idempotency keys are 1-{MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: Value, headers: &[(&str, &str)]) -> Result<NewMessage, Error> {
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        NewMessage::parse(
            "orders",
            body,
            Some(headers),
            None,
            DeliveryOptions::default(),
            64,
        )
    }

    #[test]
    fn body_limit_counts_serialised_bytes() {
        assert!(parse(json!("x".repeat(62)), &[]).is_ok()); // 62 + 2 quotes
        let err = parse(json!("x".repeat(63)), &[]).unwrap_err();
        assert_eq!(err.code(), "message_too_large");
        assert_eq!(
            parse(Value::Null, &[]).unwrap_err().code(),
            "invalid_message_body"
        );
        for nul in [
            json!("a\u{0}"),
            json!({"k\u{0}": 1}),
            json!([{"k": ["\u{0}"]}]),
        ] {
            assert_eq!(parse(nul, &[]).unwrap_err().code(), "invalid_message_body");
        }
    }

    /// The document's header-name pattern accepts exactly the names the parser takes.
    #[test]
    fn header_name_pattern_is_the_rule() {
        let pattern = lookahead::compile(&header_name_pattern());
        for name in [
            "trace-id",
            "X-Msg",
            "x-msgs",
            "a.b_c",
            "X-MSG-x",
            "x-msg-",
            "",
            "a b",
            "é",
            "webhook-id",
            "WebHook-Signature",
            "webhook-",
            "webhook",
            "webhooks-id",
            "Host",
            "hostname",
            "my-host",
            "content-length",
            "Content-Lengths",
            "TE",
            "tea",
            "Transfer-Encoding",
            "connection",
            "user-agent",
            "user-agents",
            "expect.1",
        ] {
            let parsed = parse(json!(1), &[(name, "v")]).is_ok();
            assert_eq!(pattern(name), parsed, "{name:?}");
        }
        let long = "h".repeat(MAX_HEADER_NAME_LEN + 1);
        assert!(!pattern(&long) && parse(json!(1), &[(long.as_str(), "v")]).is_err());
    }

    /// Lookahead is beyond the `regex` crate: the leading `(?!...)`, up to its matching
    /// parenthesis, becomes a regex of its own that must not match at the start, and the rest
    /// is matched as it stands.
    mod lookahead {
        pub fn compile(pattern: &str) -> impl Fn(&str) -> bool + use<> {
            let inner = pattern
                .strip_prefix("^(?!")
                .expect("a leading negative lookahead");
            let mut depth = 1;
            let end = inner
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .expect("a closed lookahead")
                .0;
            let refused = regex::Regex::new(&format!("^(?:{})", &inner[..end])).unwrap();
            let body = regex::Regex::new(&format!("^{}", &inner[end + 1..])).unwrap();
            move |s| !refused.is_match(s) && body.is_match(s)
        }
    }

    #[test]
    fn headers_are_checked() {
        assert!(parse(json!(1), &[("trace-id", "abc")]).is_ok());
        for bad in [("x-msg-tenant-id", "x"), ("bad name", "x"), ("k", "a\nb")] {
            assert_eq!(
                parse(json!(1), &[bad]).unwrap_err().code(),
                "invalid_headers"
            );
        }
        // What the webhook delivery sets or HTTP framing reads, in any case.
        for name in [
            "webhook-signature",
            "Webhook-Id",
            "HOST",
            "Content-Length",
            "connection",
        ] {
            let err = parse(json!(1), &[(name, "x")]).unwrap_err();
            assert_eq!(err.code(), "invalid_headers", "{name}");
            let text = err.to_string();
            assert!(
                text.contains("`webhook-`") && text.contains("`host`"),
                "{text}"
            );
        }
    }

    #[test]
    fn statuses_round_trip() {
        for s in MessageStatus::ALL {
            assert_eq!(s.as_str().parse::<MessageStatus>().unwrap(), s);
        }
        assert!("done".parse::<MessageStatus>().is_err());
    }
}
