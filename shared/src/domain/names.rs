//! Queue and tenant names.
//!
//! Queue names become part of RabbitMQ queue names, so their charset is narrow: 1 to 64
//! characters of lowercase ASCII letters, digits, `-` and `_`, starting with a letter or digit.
//! No dots, so `tenant.<id>.<queue>` can be split back unambiguously.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Error;

pub const QUEUE_NAME_MAX_LEN: usize = 64;
pub const TENANT_NAME_MAX_LEN: usize = 100;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct QueueName(String);

impl QueueName {
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let valid_len = (1..=QUEUE_NAME_MAX_LEN).contains(&raw.len());
        let valid_chars = raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        let valid_start = raw
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if valid_len && valid_chars && valid_start {
            Ok(Self(raw.to_string()))
        } else {
            Err(Error::invalid(
                "invalid_queue_name",
                format!(
                    "queue_name must be 1-{QUEUE_NAME_MAX_LEN} characters of a-z, 0-9, '-' and '_', \
                     starting with a letter or digit"
                ),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for QueueName {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::parse(&s)
    }
}

impl From<QueueName> for String {
    fn from(q: QueueName) -> String {
        q.0
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tenant's display name: 1 to 100 characters after trimming, no control characters.
/// Unique case-insensitively.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantName(String);

impl TenantName {
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let name = raw.trim();
        let len = name.chars().count();
        if len == 0 || len > TENANT_NAME_MAX_LEN || name.chars().any(char::is_control) {
            return Err(Error::invalid(
                "invalid_tenant_name",
                format!(
                    "name must be 1-{TENANT_NAME_MAX_LEN} characters without control characters"
                ),
            ));
        }
        Ok(Self(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantName {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::parse(&s)
    }
}

impl From<TenantName> for String {
    fn from(n: TenantName) -> String {
        n.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names() {
        for ok in ["a", "orders", "order-events_v2", "0abc", &"q".repeat(64)] {
            assert!(QueueName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "_a",
            "Orders",
            "a.b",
            "a b",
            "a/b",
            "é",
            &"q".repeat(65),
            "a*",
        ] {
            let err = QueueName::parse(bad).unwrap_err();
            assert_eq!(err.code(), "invalid_queue_name", "{bad}");
        }
    }

    #[test]
    fn tenant_names() {
        assert_eq!(
            TenantName::parse("  Acme Corp ").unwrap().as_str(),
            "Acme Corp"
        );
        assert!(TenantName::parse(&"x".repeat(100)).is_ok());
        for bad in ["", "   ", "a\nb", &"x".repeat(101)] {
            assert_eq!(
                TenantName::parse(bad).unwrap_err().code(),
                "invalid_tenant_name"
            );
        }
    }
}
