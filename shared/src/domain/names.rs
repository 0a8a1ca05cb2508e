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

/// The queue name rule as the document states it (ECMA-262, as JSON Schema reads patterns);
/// a property test holds the parser to it.
pub const QUEUE_NAME_PATTERN: &str = "^[a-z0-9][a-z0-9_-]{0,63}$";

/// The tenant name rule as the document states it: no control characters (Unicode `Cc`:
/// U+0000-U+001F, U+007F-U+009F) anywhere, and no white space (Unicode `White_Space`) at
/// either end. Classes are spelled out rather than written `\s`, which ECMA-262, Python and
/// Rust each read differently.
pub const TENANT_NAME_PATTERN: &str = concat!(
    "^[^\\x00-\\x20\\x7f-\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]",
    "(?:[^\\x00-\\x1f\\x7f-\\x9f]*",
    "[^\\x00-\\x20\\x7f-\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000])?$"
);

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

/// A tenant's display name: 1 to 100 characters, no control characters, no white space at
/// either end (refused, not trimmed: the document can state a rule, not a rewrite). Unique
/// case-insensitively.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantName(String);

impl TenantName {
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let len = raw.chars().count();
        if len == 0
            || len > TENANT_NAME_MAX_LEN
            || raw.chars().any(char::is_control)
            || raw.trim() != raw
        {
            return Err(Error::invalid(
                Code::InvalidTenantName,
                format!(
                    "name must be 1-{TENANT_NAME_MAX_LEN} characters without control characters, \
                     not starting or ending with white space"
                ),
            ));
        }
        Ok(Self(raw.to_string()))
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

#[cfg(feature = "openapi")]
mod schema {
    use std::borrow::Cow;

    use utoipa::{
        PartialSchema, ToSchema,
        openapi::{ObjectBuilder, RefOr, Type, schema::Schema},
    };

    use super::*;

    impl PartialSchema for QueueName {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(QUEUE_NAME_MAX_LEN))
                .pattern(Some(QUEUE_NAME_PATTERN))
                .description(Some(
                    "1-64 characters of a-z, 0-9, '-' and '_', starting with a letter or digit",
                ))
                .into()
        }
    }

    impl ToSchema for QueueName {
        fn name() -> Cow<'static, str> {
            Cow::Borrowed("QueueName")
        }
    }

    impl PartialSchema for TenantName {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(TENANT_NAME_MAX_LEN))
                .pattern(Some(TENANT_NAME_PATTERN))
                .description(Some(
                    "1-100 characters, no control characters, no white space at either end; \
                     unique case-insensitively",
                ))
                .into()
        }
    }

    impl ToSchema for TenantName {
        fn name() -> Cow<'static, str> {
            Cow::Borrowed("TenantName")
        }
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
            TenantName::parse("Acme Corp").unwrap().as_str(),
            "Acme Corp"
        );
        assert!(TenantName::parse(&"é".repeat(100)).is_ok());
        for bad in [
            "",
            "   ",
            "a\nb",
            " Acme",
            "Acme\u{3000}",
            "\u{a0}x",
            "a\u{85}b",
            &"x".repeat(101),
        ] {
            assert_eq!(
                TenantName::parse(bad).unwrap_err().code(),
                "invalid_tenant_name"
            );
        }
    }

    mod properties {
        use proptest::prelude::*;
        use regex::Regex;

        use super::super::*;

        /// The document's rule: the pattern, and `maxLength` in characters.
        fn documented(pattern: &str, max_len: usize, s: &str) -> bool {
            Regex::new(pattern).unwrap().is_match(s) && s.chars().count() <= max_len
        }

        /// Strings the pattern itself generates (proptest reads it without its anchors).
        fn from_pattern(pattern: &'static str) -> impl Strategy<Value = String> {
            let unanchored = &pattern[1..pattern.len() - 1];
            proptest::string::string_regex(unanchored).unwrap()
        }

        proptest! {
            #[test]
            fn valid_queue_names_parse_unchanged(s in from_pattern(QUEUE_NAME_PATTERN)) {
                let q = QueueName::parse(&s).unwrap();
                prop_assert_eq!(q.as_str(), s.as_str());
                prop_assert_eq!(String::from(q.clone()), s.clone());
                prop_assert_eq!(QueueName::try_from(q.to_string()).unwrap(), q);
            }

            #[test]
            fn queue_names_follow_the_document(s in "\\PC{0,70}|[a-zA-Z0-9._ /*-]{0,70}") {
                let ok = documented(QUEUE_NAME_PATTERN, QUEUE_NAME_MAX_LEN, &s);
                match QueueName::parse(&s) {
                    Ok(q) => {
                        prop_assert!(ok, "accepted {:?}", s);
                        // No dots: the broker name `tenant.<id>.<queue>` splits back.
                        prop_assert!(!q.as_str().contains('.'));
                    }
                    Err(e) => {
                        prop_assert!(!ok, "refused {:?}", s);
                        prop_assert_eq!(e.code(), "invalid_queue_name");
                    }
                }
            }

            #[test]
            fn valid_tenant_names_parse_unchanged(s in from_pattern(TENANT_NAME_PATTERN)) {
                let ok = s.chars().count() <= TENANT_NAME_MAX_LEN;
                match TenantName::parse(&s) {
                    Ok(n) => prop_assert_eq!(n.as_str(), s.as_str()),
                    Err(_) => prop_assert!(!ok, "refused {:?}", s),
                }
            }

            #[test]
            fn tenant_names_follow_the_document(
                s in "\\PC{0,120}|[ a-z\\t\\n\\u{85}\\u{a0}\\u{3000}\\u{feff}\\u{200b}]{0,110}|\\PC{95,101}"
            ) {
                let ok = documented(TENANT_NAME_PATTERN, TENANT_NAME_MAX_LEN, &s);
                match TenantName::parse(&s) {
                    Ok(n) => {
                        prop_assert!(ok, "accepted {:?}", s);
                        prop_assert_eq!(n.as_str(), s.as_str());
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
