//! The security headers every console answer carries. The policy allows scripts and
//! styles only from the console's own files (never inline), forms only to this origin,
//! and no framing at all.

use std::time::Instant;

use http::{HeaderName, HeaderValue, header};

use super::Page;

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

/// Adds the security headers, `cache-control: no-store` unless the answer set its own
/// (assets), and `server-timing` with the time spent on the request.
pub fn secure(page: &mut Page, started: Instant) {
    let headers = page.headers_mut();
    let fixed = [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    ];
    for (name, value) in fixed {
        headers.insert(name, value);
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    let micros = started.elapsed().as_micros();
    let timing = format!("app;dur={}.{:03}", micros / 1000, micros % 1000);
    if let Ok(value) = HeaderValue::from_str(&timing) {
        headers.insert(HeaderName::from_static("server-timing"), value);
    }
}
