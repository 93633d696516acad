//! Form posts: the body read with a bound and a deadline, decoded as
//! `application/x-www-form-urlencoded`, and the URL-encoding of query values the pages
//! build.

use std::time::Duration;

use http::header;
use http_body_util::{BodyExt, Limited};

use crate::api::Request;

/// The largest form a page posts (a subscription with 20 custom headers is under 30 KiB).
pub const MAX_FORM_BYTES: usize = 64 * 1024;
/// A form must arrive within this.
const FORM_TIMEOUT: Duration = Duration::from_secs(30);

/// Decoded form fields, in order; a name may repeat.
#[derive(Debug, Default, Clone)]
pub struct Form {
    fields: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum FormError {
    #[error("send the form as application/x-www-form-urlencoded")]
    MediaType,
    #[error("the form is larger than {MAX_FORM_BYTES} bytes")]
    TooLarge,
    #[error("the form could not be read")]
    Unreadable,
}

impl Form {
    pub fn parse(body: &str) -> Self {
        let fields = crate::api::query_pairs(Some(body))
            .map(|(key, value)| (decode_key(key), value))
            .collect();
        Self { fields }
    }

    /// The first value of `name`, trimmed; `None` when absent or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.raw(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// The first value of `name` as sent (a password keeps its spaces).
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every value of `name` (checkboxes), trimmed and not blank.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.fields
            .iter()
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty())
    }

    pub fn has(&self, name: &str) -> bool {
        self.fields.iter().any(|(key, _)| key == name)
    }
}

fn decode_key(key: &str) -> String {
    // The API's decoder decodes values: decode the key as one.
    crate::api::query_pairs(Some(&format!("k={key}")))
        .next()
        .map_or_else(String::new, |(_, value)| value)
}

pub async fn read(request: Request) -> Result<Form, FormError> {
    let kind = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = kind.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(FormError::MediaType);
    }
    let collect = Limited::new(request.into_body(), MAX_FORM_BYTES).collect();
    match tokio::time::timeout(FORM_TIMEOUT, collect).await {
        Ok(Ok(collected)) => {
            let bytes = collected.to_bytes();
            let text = std::str::from_utf8(&bytes).map_err(|_| FormError::Unreadable)?;
            Ok(Form::parse(text))
        }
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            Err(FormError::TooLarge)
        }
        _ => Err(FormError::Unreadable),
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A query string from the pairs whose value is set: `a=1&b=x%20y`.
pub fn query(pairs: &[(&str, Option<&str>)]) -> String {
    pairs
        .iter()
        .filter_map(|(key, value)| value.map(|v| format!("{key}={}", encode(v))))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_and_queries_encode() {
        let form = Form::parse("a=1+2&b=%3Cscript%3E&c=&a=3&d%5B0%5D=x");
        assert_eq!(form.get("a"), Some("1 2"));
        assert_eq!(form.get("b"), Some("<script>"));
        assert_eq!(form.get("c"), None);
        assert!(form.has("c"));
        assert_eq!(form.get("d[0]"), Some("x"));
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(
            query(&[("x", Some("1")), ("y", None), ("z", Some("a b"))]),
            "x=1&z=a%20b"
        );
    }
}
