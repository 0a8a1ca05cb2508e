//! Queue and tenant names.
//!
//! Queue names become part of RabbitMQ queue names, so their charset is narrow: 1 to 64
//! characters of lowercase ASCII letters, digits, `-` and `_`, starting with a letter or digit.
//! No dots, so `tenant.<id>.<queue>` can be split back unambiguously.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Code, Error};

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
                Code::InvalidQueueName,
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
                Code::InvalidTenantName,
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

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        /// The rule, written independently of the parser.
        fn is_queue_name(s: &str) -> bool {
            let b = s.as_bytes();
            (1..=QUEUE_NAME_MAX_LEN).contains(&b.len())
                && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"-_".contains(c))
        }

        proptest! {
            #[test]
            fn valid_queue_names_parse_unchanged(s in "[a-z0-9][a-z0-9_-]{0,63}") {
                let q = QueueName::parse(&s).unwrap();
                prop_assert_eq!(q.as_str(), s.as_str());
                prop_assert_eq!(String::from(q.clone()), s.clone());
                prop_assert_eq!(QueueName::try_from(q.to_string()).unwrap(), q);
            }

            #[test]
            fn queue_names_follow_the_rule(s in "\\PC{0,70}|[a-zA-Z0-9._ /*-]{0,70}") {
                match QueueName::parse(&s) {
                    Ok(q) => {
                        prop_assert!(is_queue_name(&s), "accepted {:?}", s);
                        // No dots: the broker name `tenant.<id>.<queue>` splits back.
                        prop_assert!(!q.as_str().contains('.'));
                    }
                    Err(e) => {
                        prop_assert!(!is_queue_name(&s), "refused {:?}", s);
                        prop_assert_eq!(e.code(), "invalid_queue_name");
                    }
                }
            }

            #[test]
            fn tenant_names_are_trimmed_bounded_and_stable(s in "\\PC{0,120}|[ a-z\\t\\n]{0,110}") {
                let trimmed = s.trim();
                let ok = (1..=TENANT_NAME_MAX_LEN).contains(&trimmed.chars().count())
                    && !trimmed.chars().any(char::is_control);
                match TenantName::parse(&s) {
                    Ok(n) => {
                        prop_assert!(ok, "accepted {:?}", s);
                        prop_assert_eq!(n.as_str(), trimmed);
                        // Parsing a parsed name changes nothing.
                        prop_assert_eq!(TenantName::parse(n.as_str()).unwrap(), n);
                    }
                    Err(e) => {
                        prop_assert!(!ok, "refused {:?}", s);
                        prop_assert_eq!(e.code(), "invalid_tenant_name");
                    }
                }
            }
        }
    }
}
