//! Keyset pagination. The cursor is the id of the last item returned (ids are time-ordered
//! UUIDv7), opaque to clients.

use serde::Serialize;
use uuid::Uuid;

use super::bounds::IntRange;
use crate::error::{Code, Error};

pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// A cursor as the document states it: a hyphenated UUID, or empty for the first page.
pub const CURSOR_PATTERN: &str =
    "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$";

#[derive(Clone, Copy, Debug)]
pub struct PageRequest {
    pub limit: u32,
    pub after: Option<Uuid>,
}

impl PageRequest {
    /// The page sizes a deployment serving at most `max` per page takes.
    pub fn limit_range(max: u32) -> IntRange {
        IntRange::new(1, i64::from(max))
    }

    pub fn parse(limit: Option<u32>, cursor: Option<&str>, max: u32) -> Result<Self, Error> {
        let limit = limit.unwrap_or(DEFAULT_PAGE_SIZE.min(max));
        if !Self::limit_range(max).contains(i64::from(limit)) {
            return Err(Error::invalid(
                Code::InvalidLimit,
                format!("limit must be within 1..={max}"),
            ));
        }
        let after = match cursor.filter(|c| !c.is_empty()) {
            None => None,
            // Only the hyphenated form, as `next_cursor` gives it and the document states.
            Some(c) if c.len() == 36 => Some(Uuid::parse_str(c).map_err(|_| bad_cursor())?),
            Some(_) => return Err(bad_cursor()),
        };
        Ok(Self { limit, after })
    }

    /// Rows to fetch: one more than the page, to know whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }
}

fn bad_cursor() -> Error {
    Error::invalid(Code::InvalidCursor, "cursor is not valid")
}

/// One page of a list; `next_cursor` is null on the last page.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `fetch_limit` rows, `id` giving each row's cursor.
    pub fn from_rows(mut rows: Vec<T>, req: &PageRequest, id: impl Fn(&T) -> Uuid) -> Self {
        let more = rows.len() > req.limit as usize;
        rows.truncate(req.limit as usize);
        let next_cursor = if more {
            rows.last().map(|r| id(r).to_string())
        } else {
            None
        };
        Page {
            items: rows,
            next_cursor,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use regex::Regex;

    use super::*;

    proptest! {
        /// A cursor parses exactly when the document's pattern matches it.
        #[test]
        fn cursors_follow_the_document(
            c in "([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?|[0-9a-fA-F{}:urn-]{0,45}"
        ) {
            let documented = Regex::new(CURSOR_PATTERN).unwrap().is_match(&c);
            let parsed = PageRequest::parse(None, Some(&c), 10);
            prop_assert_eq!(parsed.is_ok(), documented, "{:?}", c);
        }
    }

    #[test]
    fn other_uuid_forms_are_not_cursors() {
        let id = Uuid::now_v7();
        for form in [
            id.simple().to_string(),
            id.braced().to_string(),
            id.urn().to_string(),
        ] {
            assert_eq!(
                PageRequest::parse(None, Some(&form), 10)
                    .unwrap_err()
                    .code(),
                "invalid_cursor"
            );
        }
        assert!(PageRequest::parse(None, Some(&id.to_string()), 10).is_ok());
        assert_eq!(
            PageRequest::parse(Some(11), None, 10).unwrap_err().code(),
            "invalid_limit"
        );
    }
}
