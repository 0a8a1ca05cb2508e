//! Delayed delivery: `deliver_after` (a duration from now) or `deliver_at` (an RFC 3339 time),
//! at most `MESSAGE_MAX_DELAY` ahead. A message due later is stored `scheduled` and released
//! by the relay's tick when it comes due; one due now (or in the past) is published at once.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};

use super::duration::parse_duration;
use crate::error::{Code, Error};

/// The document's statement of what `deliver_after` takes ([`parse_duration`] without spaces).
pub const DELIVER_AFTER_PATTERN: &str = "^[0-9]+(ms|s|m|h|d)?$";

/// When the message may first be delivered: `None` for now. Refuses both fields at once, a
/// malformed one, and a time more than `max_delay` after `now`.
pub fn resolve(
    deliver_after: Option<&str>,
    deliver_at: Option<&str>,
    now: DateTime<Utc>,
    max_delay: Duration,
) -> Result<Option<DateTime<Utc>>, Error> {
    let at = match (deliver_after, deliver_at) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(invalid("give deliver_after or deliver_at, not both"));
        }
        (Some(after), None) => {
            if after.chars().any(char::is_whitespace) {
                return Err(invalid(
                    "deliver_after is a duration such as 30s, 15m, 2h or 7d",
                ));
            }
            let d = parse_duration(after).map_err(|e| invalid(format!("deliver_after: {e}")))?;
            if d > max_delay {
                return Err(too_far(max_delay));
            }
            now + chrono::Duration::from_std(d).map_err(|_| too_far(max_delay))?
        }
        (None, Some(at)) => DateTime::parse_from_rfc3339(at)
            .map_err(|_| invalid("deliver_at is an RFC 3339 time such as 2030-01-31T12:00:00Z"))?
            .with_timezone(&Utc),
    };
    let max = chrono::Duration::from_std(max_delay).unwrap_or(chrono::Duration::MAX);
    if at - now > max {
        return Err(too_far(max_delay));
    }
    // In microseconds, as PostgreSQL stores it, so the answer shows what is stored.
    Ok(Some(at.trunc_subsecs(6)))
}

fn invalid(message: impl Into<String>) -> Error {
    Error::invalid(Code::InvalidDeliveryTime, message)
}

fn too_far(max_delay: Duration) -> Error {
    invalid(format!(
        "a message can be delayed by at most {}s (MESSAGE_MAX_DELAY)",
        max_delay.as_secs()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEEK: Duration = Duration::from_secs(7 * 86_400);

    #[test]
    fn resolves_either_form_within_the_maximum() {
        let now = Utc::now().trunc_subsecs(6);
        assert_eq!(resolve(None, None, now, WEEK).unwrap(), None);
        assert_eq!(
            resolve(Some("15m"), None, now, WEEK).unwrap(),
            Some(now + chrono::Duration::minutes(15))
        );
        assert_eq!(
            resolve(Some("7d"), None, now, WEEK).unwrap(),
            Some(now + chrono::Duration::days(7))
        );
        let at = "2030-01-31T12:00:00+01:00";
        let then = DateTime::parse_from_rfc3339("2030-01-31T11:00:00Z").unwrap();
        assert_eq!(
            resolve(None, Some(at), then.with_timezone(&Utc), WEEK).unwrap(),
            Some(then.with_timezone(&Utc))
        );
        // A time in the past is due now; it is not refused.
        assert!(resolve(None, Some("2001-01-01T00:00:00Z"), now, WEEK).is_ok());
    }

    #[test]
    fn refuses_what_breaks_the_rules() {
        let now = Utc::now();
        for (after, at) in [
            (Some("8d"), None),
            (Some("5 s"), None),
            (Some("soon"), None),
            (Some("-1s"), None),
            (None, Some("tomorrow")),
            (None, Some("2999-01-01T00:00:00Z")),
            (Some("1s"), Some("2030-01-01T00:00:00Z")),
        ] {
            let err = resolve(after, at, now, WEEK).unwrap_err();
            assert_eq!(err.code(), "invalid_delivery_time", "{after:?} {at:?}");
        }
    }

    /// The document's pattern accepts exactly what the parser takes (short of the maximum).
    #[test]
    fn pattern_is_the_rule() {
        let pattern = regex::Regex::new(DELIVER_AFTER_PATTERN).unwrap();
        for s in [
            "1", "30s", "250ms", "15m", "2h", "7d", "", "s", "1.5s", "1 s", "1w", "-1s",
        ] {
            let parsed = resolve(Some(s), None, Utc::now(), Duration::MAX).is_ok();
            assert_eq!(pattern.is_match(s), parsed, "{s:?}");
        }
    }
}
