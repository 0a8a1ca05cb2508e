//! Message header names the service keeps for itself. A tenant's headers travel with its
//! message to the consumer, and the webhook delivery sends them to the endpoint, so a name the
//! delivery sets, or one that steers HTTP framing or routing, would let a message forge a
//! signature or smuggle a request. This one list is read by publish validation, by the delivery
//! (which also drops these names from messages stored before they were reserved) and by the
//! OpenAPI header-name pattern.

use super::message::MAX_HEADER_NAME_LEN;

/// Reserved prefixes, in lower case: the service's broker headers and Standard Webhooks'.
pub const RESERVED_HEADER_PREFIXES: [&str; 2] = ["x-msg-", "webhook-"];

/// Reserved names, in lower case: what the delivery sets (`content-type`, `user-agent`; `host`
/// and `content-length` by the HTTP client), hop-by-hop headers (RFC 9110 7.6.1 and their
/// legacy forms) and the other headers that steer the request's framing, encoding or routing.
pub const RESERVED_HEADER_NAMES: [&str; 15] = [
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "user-agent",
];

/// True for a name the service reserves, in any case.
pub fn is_reserved(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    RESERVED_HEADER_PREFIXES.iter().any(|p| name.starts_with(p))
        || RESERVED_HEADER_NAMES.contains(&name.as_str())
}

/// The reserved names in words, for the error message and the document.
pub fn reserved_description() -> String {
    let quoted = |list: &[&str]| -> Vec<String> { list.iter().map(|s| format!("`{s}`")).collect() };
    format!(
        "names starting with {}, and {}, in any case",
        quoted(&RESERVED_HEADER_PREFIXES).join(" or "),
        quoted(&RESERVED_HEADER_NAMES).join(", "),
    )
}

/// Header names as the document states them: the charset and length, and not a reserved name
/// in any case. `(?!...)` is ECMA-262 and Python alike; an exact name is anchored to the end of
/// the header name inside the lookahead, so `hostname` stays allowed.
pub fn header_name_pattern() -> String {
    let any_case = |list: &[&str]| -> String {
        let alternatives: Vec<String> = list
            .iter()
            .map(|s| {
                s.chars()
                    .map(|c| {
                        if c.is_ascii_alphabetic() {
                            format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
                        } else {
                            c.to_string()
                        }
                    })
                    .collect()
            })
            .collect();
        alternatives.join("|")
    };
    format!(
        "^(?!(?:{})|(?:{})$)[A-Za-z0-9._-]{{1,{MAX_HEADER_NAME_LEN}}}$",
        any_case(&RESERVED_HEADER_PREFIXES),
        any_case(&RESERVED_HEADER_NAMES),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pattern copies entries verbatim: they must hold nothing a regex would read.
    #[test]
    fn entries_are_lower_case_letters_and_hyphens() {
        for entry in RESERVED_HEADER_PREFIXES
            .iter()
            .chain(&RESERVED_HEADER_NAMES)
        {
            assert!(
                entry.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{entry}"
            );
        }
    }

    #[test]
    fn reserved_in_any_case() {
        for name in [
            "X-Msg-Queue",
            "webhook-id",
            "WEBHOOK-SIGNATURE",
            "Host",
            "TE",
        ] {
            assert!(is_reserved(name), "{name}");
        }
        for name in [
            "x-msgs",
            "webhook",
            "webhooks-id",
            "hostname",
            "tea",
            "trace-id",
        ] {
            assert!(!is_reserved(name), "{name}");
        }
    }
}
