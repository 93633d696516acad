//! Pagination and query strings, the same on every list (API.md): `limit` and
//! `cursor`, percent-decoded `key=value` pairs, RFC 3339 times, and the list body.

use http::StatusCode;

use super::{ApiError, ApiResponse, json};

/// `?limit=` (1..=500, default 50) and `?cursor=` (opaque; empty is the same as none),
/// the same on every list. A cursor is what the previous page returned as `nextCursor`:
/// the last item's key, as hex.
pub(super) struct Page {
    pub(super) limit: usize,
    pub(super) cursor: Option<String>,
}

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

impl Page {
    pub(super) fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut page = Page {
            limit: DEFAULT_LIMIT,
            cursor: None,
        };
        for (key, value) in query_pairs(query) {
            match key {
                "limit" => {
                    page.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            ApiError::invalid("limit", "must be an integer from 1 to 500")
                        })?;
                }
                "cursor" if value.is_empty() => page.cursor = None,
                "cursor" => page.cursor = Some(value),
                _ => {}
            }
        }
        Ok(page)
    }

    /// The cursor of a list keyed by id (events, subscriptions, deliveries, keys,
    /// attempts).
    pub(super) fn after_id(&self) -> Result<Option<u128>, ApiError> {
        self.cursor
            .as_deref()
            .map(|c| {
                // from_str_radix also takes a leading `+`: only hex digits are a cursor.
                (c.len() == 32 && c.bytes().all(|b| b.is_ascii_hexdigit()))
                    .then(|| u128::from_str_radix(c, 16).ok())
                    .flatten()
                    .ok_or_else(bad_cursor)
            })
            .transpose()
    }

    /// The cursor of a list keyed by name (entities).
    pub(super) fn after_name(&self) -> Result<Option<String>, ApiError> {
        self.cursor
            .as_deref()
            .map(|c| {
                let hex = c.bytes().all(|b| b.is_ascii_hexdigit());
                let bytes: Option<Vec<u8>> = (hex && c.len() % 2 == 0 && c.len() <= 256)
                    .then(|| {
                        (0..c.len())
                            .step_by(2)
                            .map(|i| u8::from_str_radix(c.get(i..i + 2)?, 16).ok())
                            .collect()
                    })
                    .flatten();
                bytes
                    .and_then(|b| String::from_utf8(b).ok())
                    .filter(|name| !name.is_empty())
                    .ok_or_else(bad_cursor)
            })
            .transpose()
    }
}

/// One page from `items` (already past the cursor and filtered): at most `limit` of
/// them, and the key of the last one when more follow.
pub(super) fn take_page<K, T>(
    items: impl Iterator<Item = (K, T)>,
    limit: usize,
) -> (Vec<(K, T)>, Option<K>)
where
    K: Copy,
{
    let mut out = Vec::with_capacity(limit.min(64));
    for item in items {
        if out.len() == limit {
            let last = out.last().map(|(key, _): &(K, T)| *key);
            return (out, last);
        }
        out.push(item);
    }
    (out, None)
}

pub(super) fn bad_cursor() -> ApiError {
    ApiError::invalid(
        "cursor",
        "is not a cursor this API returned (use nextCursor)",
    )
}

pub(super) fn name_cursor(name: &str) -> String {
    name.bytes().map(|b| format!("{b:02x}")).collect()
}

/// `key=value` pairs of a query string, values percent-decoded (`+` is a space).
pub(crate) fn query_pairs(query: Option<&str>) -> impl Iterator<Item = (&str, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key, percent_decode(value))
        })
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .filter(|hex| bytes[i] == b'%' && hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An RFC 3339 time in a query (`since`, `until`) as Unix milliseconds.
pub(super) fn parse_time(field: &'static str, value: &str) -> Result<u64, ApiError> {
    humantime::parse_rfc3339_weak(value)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .ok_or_else(|| {
            ApiError::invalid(
                field,
                "must be an RFC 3339 time such as 2026-01-31T12:00:00Z",
            )
        })
}

/// A list body: `{"data": [...], "nextCursor": ...}`.
pub(super) fn list(items: Vec<serde_json::Value>, next: Option<u128>) -> ApiResponse {
    list_from(items, next.map(cursor))
}

pub(super) fn list_from(items: Vec<serde_json::Value>, next: Option<String>) -> ApiResponse {
    json(
        StatusCode::OK,
        &serde_json::json!({"data": items, "nextCursor": next}),
    )
}

fn cursor(id: u128) -> String {
    format!("{id:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_decoded() {
        let pairs: Vec<_> = query_pairs(Some(
            "since=2026-01-31T12%3A00%3A00Z&eventType=a.b&x=%zz+1&limit=5",
        ))
        .collect();
        assert_eq!(pairs[0], ("since", "2026-01-31T12:00:00Z".to_string()));
        assert_eq!(pairs[1], ("eventType", "a.b".to_string()));
        assert_eq!(pairs[2], ("x", "%zz 1".to_string()));
        assert_eq!(parse_time("since", &pairs[0].1).unwrap(), 1_769_860_800_000);
        assert!(parse_time("since", "yesterday").is_err());
    }

    /// A cursor is hex digits only, as `openapi.json`'s pattern says; `from_str_radix`
    /// alone would also take a sign.
    #[test]
    fn cursors_are_hex_digits_only() {
        let page = |cursor: &str| Page::parse(Some(&format!("cursor={cursor}"))).unwrap();
        let id = "0195f3c2a1b27c4e9d8f001122334455";
        assert_eq!(
            page(id).after_id().unwrap(),
            Some(0x0195f3c2a1b27c4e9d8f001122334455)
        );
        assert!(page(&format!("%2B{}", &id[1..])).after_id().is_err());
        assert_eq!(page("").after_id().unwrap(), None);
        assert_eq!(page("6163").after_name().unwrap().as_deref(), Some("ac"));
        assert!(page("%2B6%2B6").after_name().is_err());
    }
}
