//! Human durations in configuration: `250ms`, `5s`, `2m`, `1h`, `7d`, or a bare number of
//! seconds.

use std::time::Duration;

pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let s = raw.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| "expected a number with a unit such as 500ms, 5s, 2m or 1h".to_string())?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        other => return Err(format!("unknown unit {other:?}; use ms, s, m, h or d")),
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| "duration too large".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for bad in ["", "s", "5 days", "-1s", "1.5s", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        proptest! {
            #[test]
            fn number_and_unit(n in prop_oneof![0u64..10_000_000, any::<u64>()], unit in prop::sample::select(vec!["ms", "s", "", "m", "h"]), pad in "[ \\t]{0,2}") {
                let factor: u64 = match unit { "ms" => 1, "" | "s" => 1_000, "m" => 60_000, _ => 3_600_000 };
                let parsed = parse_duration(&format!("{pad}{n}{unit}{pad}"));
                match n.checked_mul(factor) {
                    Some(ms) => prop_assert_eq!(parsed, Ok(Duration::from_millis(ms))),
                    None => prop_assert!(parsed.is_err()),
                }
            }

            #[test]
            fn anything_else_is_an_error_not_a_panic(s in "\\PC{0,20}") {
                let well_formed = {
                    let t = s.trim();
                    let digits = t.len() - t.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                    digits > 0 && ["", "ms", "s", "m", "h"].contains(&t[digits..].trim())
                };
                if !well_formed {
                    prop_assert!(parse_duration(&s).is_err(), "{:?}", s);
                }
            }
        }
    }
}
