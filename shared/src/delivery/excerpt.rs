//! The first bytes of an endpoint's answer, kept with the attempt so a user can see what the
//! endpoint said. Bounded by `ATTEMPT_RESPONSE_EXCERPT_BYTES`: only that many bytes (plus at
//! most the network chunk that crosses the bound) are read off the wire, never the whole body.
//!
//! Stored as text of at most `limit` bytes of UTF-8: a character cut by the bound is dropped,
//! bytes that are not UTF-8 (and U+0000, which PostgreSQL `text` cannot hold) become U+FFFD,
//! and the result is cut again at a character boundary so replacements never make it longer.

/// Reads at most about `limit` bytes of `resp`'s body and returns them as an excerpt (`None`
/// when `limit` is 0 or the body is empty). A body that fails mid-way keeps what arrived.
pub async fn read(resp: &mut reqwest::Response, limit: usize) -> Option<String> {
    if limit == 0 {
        return None;
    }
    let mut head = Vec::with_capacity(limit.min(8192));
    while head.len() < limit {
        match resp.chunk().await {
            Ok(Some(chunk)) => head.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    // The rest of the body is never read: dropping the response closes its connection.
    let text = of(&head, limit);
    (!text.is_empty()).then_some(text)
}

/// `bytes` cut to `limit` as text (see the module's rules).
pub fn of(bytes: &[u8], limit: usize) -> String {
    let head = &bytes[..bytes.len().min(limit)];
    let text = match std::str::from_utf8(head) {
        Ok(s) => s.to_owned(),
        // Only the last character was cut by the bound: drop it.
        Err(e) if e.error_len().is_none() => {
            String::from_utf8_lossy(&head[..e.valid_up_to()]).into_owned()
        }
        Err(_) => String::from_utf8_lossy(head).into_owned(),
    };
    let mut text = text.replace('\0', "\u{FFFD}");
    let mut end = text.len().min(limit);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

#[cfg(test)]
mod tests {
    use super::of;

    #[test]
    fn cut_at_the_bound_on_a_character_boundary() {
        assert_eq!(of(b"hello world", 5), "hello");
        assert_eq!(of(b"short", 100), "short");
        assert_eq!(of(b"anything", 0), "");
        // "é" is two bytes: cut in its middle, it is dropped whole.
        assert_eq!(of("abé".as_bytes(), 3), "ab");
        assert_eq!(of("abé".as_bytes(), 4), "abé");
        // A four-byte character cut after one, two or three of its bytes.
        for limit in 1..4 {
            assert_eq!(of("🦀x".as_bytes(), limit), "");
        }
    }

    #[test]
    fn bytes_that_are_not_text_are_replaced_within_the_bound() {
        assert_eq!(of(b"a\xffb", 10), "a\u{FFFD}b");
        assert_eq!(of(b"a\0b", 10), "a\u{FFFD}b");
        // Each replacement is 3 bytes: the text is cut again to stay within the bound.
        let t = of(b"\xff\xff\xff\xff", 4);
        assert!(t.len() <= 4, "{t:?}");
        assert_eq!(t, "\u{FFFD}");
        for limit in 0..40 {
            let t = of(b"\xfe\x00ok\xc3\xa9\xf0\x9f\xa6\x80\xff tail", limit);
            assert!(t.len() <= limit, "{limit}: {t:?}");
            assert!(!t.contains('\0'));
        }
    }
}
