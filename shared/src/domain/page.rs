//! Keyset pagination. The cursor is the id of the last item returned (ids are time-ordered
//! UUIDv7), opaque to clients.

use serde::Serialize;
use uuid::Uuid;

use crate::error::{Code, Error};

pub const DEFAULT_PAGE_SIZE: u32 = 50;

#[derive(Clone, Copy, Debug)]
pub struct PageRequest {
    pub limit: u32,
    pub after: Option<Uuid>,
}

impl PageRequest {
    pub fn parse(limit: Option<u32>, cursor: Option<&str>, max: u32) -> Result<Self, Error> {
        let limit = limit.unwrap_or(DEFAULT_PAGE_SIZE.min(max));
        if limit == 0 || limit > max {
            return Err(Error::invalid(
                Code::InvalidLimit,
                format!("limit must be within 1..={max}"),
            ));
        }
        let after = match cursor.filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => Some(
                Uuid::parse_str(c)
                    .map_err(|_| Error::invalid(Code::InvalidCursor, "cursor is not valid"))?,
            ),
        };
        Ok(Self { limit, after })
    }

    /// Rows to fetch: one more than the page, to know whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }
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
