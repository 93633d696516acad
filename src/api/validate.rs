//! Input rules shared by the handlers, each returning a 422 that names the field. The
//! JSON is read as a map rather than straight into structs so that a wrong type is
//! reported as `eventTypes[2]: must be a string`, not as a serde line and column.

use serde_json::{Map, Value};

use super::ApiError;

pub const MAX_URL_LEN: usize = 2048;
pub const MAX_HEADERS: usize = 20;
pub const MAX_HEADER_VALUE: usize = 1024;
pub const MAX_EVENT_TYPE_LEN: usize = 255;
pub const MAX_EVENT_TYPES: usize = 100;
pub const MAX_DESCRIPTION: usize = 1024;
pub const MAX_RATE_LIMIT: u64 = 100_000;
pub const MAX_NAME: usize = 256;
/// The largest whole number an f64 holds exactly (2^53); larger ones are beyond every
/// limit hookd checks anyway.
const MAX_WHOLE_FLOAT: f64 = 9_007_199_254_740_992.0;

/// Header names hookd sets or that would break HTTP framing.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
];
const SECRET_LOOKING: &[&str] = &[
    "auth",
    "key",
    "token",
    "secret",
    "signature",
    "cookie",
    "password",
];

/// A JSON object being validated, with the path used to name its fields.
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Fields<'a> {
    pub fn new(value: &'a Value, path: &str) -> Result<Self, ApiError> {
        let map = value
            .as_object()
            .ok_or_else(|| ApiError::invalid(name_or_body(path), "must be a JSON object"))?;
        Ok(Self {
            map,
            path: path.to_owned(),
        })
    }

    pub fn name(&self, field: &str) -> String {
        if self.path.is_empty() {
            field.to_owned()
        } else {
            format!("{}.{field}", self.path)
        }
    }

    /// Refuses fields outside `known`, so a typo is an error rather than ignored.
    pub fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.map.keys().find(|k| !known.contains(&k.as_str())) {
            Some(unknown) => Err(ApiError::invalid(
                self.name(unknown),
                format!("unknown field; expected one of: {}", known.join(", ")),
            )),
            None => Ok(()),
        }
    }

    pub fn get(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    pub fn has(&self, field: &str) -> bool {
        self.map.contains_key(field)
    }

    /// Whether the field is given as `null` (not merely absent).
    pub fn is_null(&self, field: &str) -> bool {
        self.map.get(field).is_some_and(Value::is_null)
    }

    pub fn str(&self, field: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::invalid(self.name(field), "must be a string")),
        }
    }

    pub fn required_str(&self, field: &str) -> Result<&'a str, ApiError> {
        self.str(field)?
            .ok_or_else(|| ApiError::invalid(self.name(field), "is required"))
    }

    pub fn object(&self, field: &str) -> Result<Option<Fields<'a>>, ApiError> {
        self.get(field)
            .map(|v| Fields::new(v, &self.name(field)))
            .transpose()
    }

    pub fn string_list(&self, field: &str) -> Result<Option<Vec<&'a str>>, ApiError> {
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        let items = value
            .as_array()
            .ok_or_else(|| ApiError::invalid(self.name(field), "must be an array of strings"))?;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str().ok_or_else(|| {
                    ApiError::invalid(format!("{}[{i}]", self.name(field)), "must be a string")
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// A whole number. JSON does not tell integers from other numbers, so `50.0` is 50
    /// as JSON Schema's `integer` says; `50.5` and `-1` are refused.
    pub fn u64(&self, field: &str) -> Result<Option<u64>, ApiError> {
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        let whole = value.as_u64().or_else(|| {
            value
                .as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..=MAX_WHOLE_FLOAT).contains(f))
                // Exact: a whole f64 within 2^53 converts without loss.
                .map(|f| f as u64)
        });
        whole
            .map(Some)
            .ok_or_else(|| ApiError::invalid(self.name(field), "must be a positive integer"))
    }
}

/// A name (entity, API key): required, 1-256 characters, not blank, no control
/// characters.
pub fn name<'a>(fields: &Fields<'a>, field: &str) -> Result<&'a str, ApiError> {
    let name = fields.required_str(field)?;
    if name.trim().is_empty() {
        return Err(ApiError::invalid(
            fields.name(field),
            "must not be empty or only spaces",
        ));
    }
    text(&fields.name(field), name, 1, MAX_NAME)?;
    Ok(name)
}

/// Free text a caller gives (names, descriptions, OAuth client credentials): `min` to
/// `max` characters, no control characters. Lengths count characters, not bytes, so
/// that the limit reads the same in the OpenAPI document (JSON Schema `maxLength`
/// counts characters) and to someone typing in any script.
pub fn text(field: &str, value: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let length = value.chars().count();
    if length < min || length > max {
        return Err(ApiError::invalid(
            field,
            format!("must be {min}-{max} characters"),
        ));
    }
    printable(field, value)
}

/// Text that names or describes something is shown in tables, logs and pages: a control
/// character (newline, tab, escape, C1) there could forge a line or a terminal sequence.
pub fn printable(field: &str, text: &str) -> Result<(), ApiError> {
    match text.chars().position(char::is_control) {
        Some(at) => Err(ApiError::invalid(
            field,
            format!("must not contain control characters (character {at})"),
        )),
        None => Ok(()),
    }
}

fn name_or_body(path: &str) -> &str {
    if path.is_empty() { "body" } else { path }
}

/// An event type name: 1-255 of letters, digits, `.`, `_`, `-`, `:`.
pub fn event_type_name(field: &str, name: &str) -> Result<(), ApiError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_EVENT_TYPE_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            "must be 1-255 characters of letters, digits, '.', '_', '-' or ':'",
        ))
    }
}

/// A subscription pattern: `*`, `family.*`, or an exact type.
pub fn event_type_pattern(field: &str, pattern: &str) -> Result<(), ApiError> {
    if pattern == "*" {
        return Ok(());
    }
    match pattern.strip_suffix(".*") {
        Some(family) => event_type_name(field, family),
        None => event_type_name(field, pattern),
    }
}

/// An endpoint or token URL: absolute, https (http only when allowed), no userinfo.
pub fn endpoint_url(field: &str, url: &str, allow_http: bool) -> Result<(), ApiError> {
    if url.len() > MAX_URL_LEN {
        return Err(ApiError::invalid(field, "must be at most 2048 characters"));
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|_| ApiError::invalid(field, "is not a valid absolute URL"))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if allow_http => {}
        Some("http") => {
            return Err(ApiError::invalid(
                field,
                "must use https:// (plain http:// needs delivery.allow_http on the server)",
            ));
        }
        _ => return Err(ApiError::invalid(field, "must be an absolute https:// URL")),
    }
    let authority = uri
        .authority()
        .ok_or_else(|| ApiError::invalid(field, "must name a host"))?;
    if authority.as_str().contains('@') {
        return Err(ApiError::invalid(
            field,
            "must not contain credentials (user:password@); use endpointAuth",
        ));
    }
    if authority.host().is_empty() {
        return Err(ApiError::invalid(field, "must name a host"));
    }
    // `Authority::port` hides a port it cannot parse, so read the text after the host.
    let after_host = authority
        .as_str()
        .rsplit_once(']')
        .map_or(authority.as_str(), |(_, rest)| rest);
    if let Some((_, port)) = after_host.rsplit_once(':') {
        if !port.parse::<u16>().is_ok_and(|p| p > 0) {
            return Err(ApiError::invalid(field, "has a port outside 1-65535"));
        }
    }
    if url.contains('#') {
        return Err(ApiError::invalid(field, "must not contain a #fragment"));
    }
    Ok(())
}

/// An HTTP token (RFC 9110 `tchar`).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Validates `customHeaders`; returns lower-cased names with their values.
pub fn custom_headers(
    fields: &Fields<'_>,
    field: &str,
    has_auth: bool,
) -> Result<Vec<(String, String)>, ApiError> {
    let Some(object) = fields.object(field)? else {
        return Ok(Vec::new());
    };
    if object.map.len() > MAX_HEADERS {
        return Err(ApiError::invalid(object.path.clone(), "at most 20 headers"));
    }
    let mut out: Vec<(String, String)> = Vec::with_capacity(object.map.len());
    for (name, value) in object.map {
        let at = format!("{}.{name}", object.path);
        let lower = name.to_ascii_lowercase();
        if !is_token(name) {
            return Err(ApiError::invalid(at, "is not a valid HTTP header name"));
        }
        if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("webhook-") {
            return Err(ApiError::invalid(
                at,
                "is set by hookd and cannot be overridden",
            ));
        }
        if lower == "authorization" && has_auth {
            return Err(ApiError::invalid(
                at,
                "cannot be set when endpointAuth is not NONE (hookd sends it)",
            ));
        }
        if out.iter().any(|(n, _)| *n == lower) {
            return Err(ApiError::invalid(
                at,
                "is given twice (names are case-insensitive)",
            ));
        }
        let value = value
            .as_str()
            .ok_or_else(|| ApiError::invalid(at.clone(), "must be a string"))?;
        // Deliveries are JSON: a custom content-type may only say so (integrations
        // migrating from other senders set exactly this).
        if lower == "content-type" && !value.trim().eq_ignore_ascii_case("application/json") {
            return Err(ApiError::invalid(
                at,
                "may only be application/json (the body hookd sends is JSON)",
            ));
        }
        if value.len() > MAX_HEADER_VALUE || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(ApiError::invalid(
                at,
                "must be at most 1024 bytes of printable ASCII",
            ));
        }
        out.push((lower, value.to_owned()));
    }
    Ok(out)
}

/// Whether a custom header's value is shown as `****`.
pub fn looks_secret(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_LOOKING.iter().any(|word| lower.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_absolute_https_without_userinfo() {
        assert!(endpoint_url("u", "https://example.com/hook", false).is_ok());
        assert!(endpoint_url("u", "http://example.com/hook", false).is_err());
        assert!(endpoint_url("u", "http://example.com/hook", true).is_ok());
        assert!(endpoint_url("u", "https://user:pw@example.com/", false).is_err());
        assert!(endpoint_url("u", "/relative", false).is_err());
        assert!(endpoint_url("u", "ftp://example.com/", true).is_err());
        assert!(endpoint_url("u", "https://example.com:8443/x", false).is_ok());
        assert!(endpoint_url("u", "https://example.com:99999/", false).is_err());
        assert!(endpoint_url("u", "https://example.com:0/", false).is_err());
        assert!(endpoint_url("u", "https://example.com/#frag", false).is_err());
        let long = format!("https://example.com/{}", "a".repeat(2100));
        assert!(endpoint_url("u", &long, false).is_err());
    }

    #[test]
    fn patterns_and_names() {
        assert!(event_type_pattern("t", "*").is_ok());
        assert!(event_type_pattern("t", "v2.export-job.*").is_ok());
        assert!(event_type_pattern("t", "v2.export-job.created").is_ok());
        assert!(event_type_pattern("t", "v2.*.created").is_err());
        assert!(event_type_name("t", "").is_err());
        assert!(event_type_name("t", "has space").is_err());
    }

    #[test]
    fn names_refuse_control_characters() {
        assert!(printable("n", "Acme GmbH – Zürich").is_ok());
        for bad in [
            "a\nb",
            "tab\there",
            "esc\u{1b}[31m",
            "c1\u{85}",
            "del\u{7f}",
        ] {
            assert!(printable("n", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn whole_numbers_may_be_written_with_a_fraction_of_zero() {
        let body =
            serde_json::json!({"a": 50, "b": 50.0, "c": 50.5, "d": -1, "e": "5", "f": 1e300});
        let fields = Fields::new(&body, "").unwrap();
        assert_eq!(fields.u64("a").unwrap(), Some(50));
        assert_eq!(fields.u64("b").unwrap(), Some(50));
        for bad in ["c", "d", "e", "f"] {
            assert!(fields.u64(bad).is_err(), "{bad}");
        }
        assert_eq!(fields.u64("absent").unwrap(), None);
    }

    #[test]
    fn secret_looking_header_names() {
        assert!(looks_secret("X-Api-Key"));
        assert!(looks_secret("x-auth-token"));
        assert!(!looks_secret("user-agent"));
    }
}
