//! Ordered delivery: messages of one `ordering_key` in one queue are processed one at a time,
//! in the order they entered the key (publish, or coming due for a delayed message); a retrying
//! message holds back the later ones of its key. What a dead letter does to the rest of its key
//! is the queue's `on_dead_letter`.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::error::{Code, Error};

pub const MAX_ORDERING_KEY_LEN: usize = 128;
/// The document's statement of the rule [`validate_ordering_key`] applies.
pub const ORDERING_KEY_PATTERN: &str = "^[!-~]+$";

/// 1 to 128 visible ASCII characters (no space), like an idempotency key but shorter: it is
/// part of an index key read by every claim of a keyed message.
pub fn validate_ordering_key(key: &str) -> Result<(), Error> {
    let ok = (1..=MAX_ORDERING_KEY_LEN).contains(&key.len())
        && key.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            Code::InvalidOrderingKey,
            format!("ordering_key is 1-{MAX_ORDERING_KEY_LEN} visible ASCII characters"),
        ))
    }
}

/// What the later messages of a key do once one of them is dead-lettered.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDeadLetter {
    /// They go on: the dead letter no longer holds its key back (SQS FIFO's behaviour once a
    /// message moved to its dead-letter queue).
    #[default]
    Continue,
    /// They wait until the dead letter is redriven and completes, so none runs out of order.
    Block,
}

impl OnDeadLetter {
    pub fn as_str(&self) -> &'static str {
        match self {
            OnDeadLetter::Continue => "continue",
            OnDeadLetter::Block => "block",
        }
    }
}

impl fmt::Display for OnDeadLetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OnDeadLetter {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "continue" => Ok(OnDeadLetter::Continue),
            "block" => Ok(OnDeadLetter::Block),
            _ => Err(Error::invalid(
                Code::InvalidOnDeadLetter,
                "on_dead_letter is `continue` or `block`",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_short_visible_ascii() {
        for good in ["a", "customer-42", "order:7/line#3", &"k".repeat(128)] {
            assert!(validate_ordering_key(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "é", "tab\t", &"k".repeat(129)] {
            let err = validate_ordering_key(bad).unwrap_err();
            assert_eq!(err.code(), "invalid_ordering_key", "{bad:?}");
        }
    }

    #[test]
    fn on_dead_letter_round_trips() {
        for v in [OnDeadLetter::Continue, OnDeadLetter::Block] {
            assert_eq!(v.as_str().parse::<OnDeadLetter>().unwrap(), v);
        }
        assert_eq!(
            "stop".parse::<OnDeadLetter>().unwrap_err().code(),
            "invalid_on_dead_letter"
        );
    }
}
