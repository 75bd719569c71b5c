//! Cursor pagination helpers shared by list endpoints.
//!
//! A cursor is the sort key of the last item a page returned, serialised and base64url
//! encoded. It is opaque to clients and stable under inserts, unlike an offset.

use axum::Json;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, Uri, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::problem::{ApiError, FieldError, ProblemKind};

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// The page size asked for, defaulted and bounded; out of range is a 400 naming `limit`.
pub fn limit(requested: Option<u32>) -> Result<u32, ApiError> {
    match requested.unwrap_or(DEFAULT_LIMIT) {
        n @ 1..=MAX_LIMIT => Ok(n),
        _ => Err(ApiError::field(
            ProblemKind::MalformedRequest,
            FieldError::parameter("limit", format!("must be between 1 and {MAX_LIMIT}")),
        )),
    }
}

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Makes a page from `rows` fetched with a limit of `limit + 1`: the extra row, if it
    /// came, only says that another page follows, whose cursor is `key` of the last item.
    pub fn from_rows<K: Serialize>(mut rows: Vec<T>, limit: u32, key: impl Fn(&T) -> K) -> Self {
        let limit = limit as usize;
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|last| encode_cursor(&key(last)))
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }

    /// The same page with each item converted.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

/// A page as a response: its JSON, and when another page follows an RFC 8288
/// `Link: </api/orders?limit=20&cursor=…>; rel="next"` header, the request's own query
/// kept but for its cursor. `uri` is the request's (axum's `OriginalUri`).
pub struct Linked<T>(pub Page<T>, pub Uri);

impl<T: Serialize> IntoResponse for Linked<T> {
    fn into_response(self) -> Response {
        let Linked(page, uri) = self;
        let link = page
            .next_cursor
            .as_deref()
            .and_then(|cursor| HeaderValue::from_str(&next_link(&uri, cursor)).ok());
        let mut response = Json(page).into_response();
        if let Some(link) = link {
            response.headers_mut().insert(header::LINK, link);
        }
        response
    }
}

/// The link to the page after the one `uri` asked for. Cursors are base64url, so they
/// go into a query as they are.
fn next_link(uri: &Uri, cursor: &str) -> String {
    let mut query: Vec<&str> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.starts_with("cursor="))
        .collect();
    let next = format!("cursor={cursor}");
    query.push(&next);
    format!("<{}?{}>; rel=\"next\"", uri.path(), query.join("&"))
}

pub fn encode_cursor<T: Serialize>(key: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(key).unwrap_or_default())
}

/// Decodes a cursor from a previous page; anything else is a 400 naming `cursor`.
pub fn decode_cursor<T: DeserializeOwned>(cursor: Option<&str>) -> Result<Option<T>, ApiError> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::field(
                ProblemKind::MalformedRequest,
                FieldError::parameter("cursor", "is not a cursor returned by this endpoint"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_keeps_the_query_but_its_cursor() {
        let uri: Uri = "/api/orders?status=PAID&cursor=old&limit=2"
            .parse()
            .unwrap();
        assert_eq!(
            next_link(&uri, "eyJ0IjoxfQ"),
            "</api/orders?status=PAID&limit=2&cursor=eyJ0IjoxfQ>; rel=\"next\""
        );
        let bare: Uri = "/api/products".parse().unwrap();
        assert_eq!(
            next_link(&bare, "x"),
            "</api/products?cursor=x>; rel=\"next\""
        );
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = encode_cursor(&("name", 3));
        assert_eq!(
            decode_cursor::<(String, i32)>(Some(&cursor)).unwrap(),
            Some(("name".to_owned(), 3))
        );
        assert_eq!(decode_cursor::<(String, i32)>(None).unwrap(), None);
        assert!(decode_cursor::<(String, i32)>(Some("!!!")).is_err());
        assert!(decode_cursor::<(String, i32)>(Some(&encode_cursor(&"other shape"))).is_err());
    }

    #[test]
    fn pages_keep_the_limit_and_point_past_it() {
        let page = Page::from_rows(vec![1, 2, 3], 2, |n| *n);
        assert_eq!(page.items, [1, 2]);
        assert_eq!(
            decode_cursor::<i32>(page.next_cursor.as_deref()).unwrap(),
            Some(2)
        );
        let last = Page::from_rows(vec![1, 2], 2, |n| *n).map(|n| n * 10);
        assert_eq!(last.items, [10, 20]);
        assert_eq!((last.items.len(), last.next_cursor), (2, None));
    }

    #[test]
    fn limits_default_and_bound() {
        assert_eq!(limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(limit(Some(100)).unwrap(), 100);
        assert!(limit(Some(0)).is_err());
        assert!(limit(Some(101)).is_err());
    }
}
