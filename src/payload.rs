//! The body every subscriber receives, rendered once when an event is accepted (by the
//! API, or by the store for hookd's own operational events) and then stored and sent
//! byte for byte: `{"eventId","eventType","entityId","createdAt","data"}`, with `data`
//! exactly as given.

use crate::ids::EventId;

/// Fixed field order; `raw_data` must already be valid JSON.
pub fn render(
    id: EventId,
    event_type: &str,
    entity: &str,
    created_ms: u64,
    raw_data: &str,
) -> Vec<u8> {
    // Serialising a &str cannot fail.
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
    format!(
        r#"{{"eventId":"{id}","eventType":{},"entityId":{},"createdAt":"{}","data":{raw_data}}}"#,
        quote(event_type),
        quote(entity),
        timestamp(created_ms),
    )
    .into_bytes()
}

/// RFC 3339 UTC with milliseconds, the one time format of the API and payloads.
pub fn timestamp(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_body_is_valid_json_with_data_verbatim() {
        let id = EventId(0x0190_0000_0000_7000_8000_0000_0000_0001);
        let body = render(id, "a.b", "root", 1_700_000_000_123, r#"{"x": 1.10}"#);
        let text = String::from_utf8(body).unwrap();
        assert!(text.ends_with(r#""data":{"x": 1.10}}"#), "{text}");
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["eventType"], "a.b");
        assert_eq!(parsed["createdAt"], "2023-11-14T22:13:20.123Z");
    }
}
