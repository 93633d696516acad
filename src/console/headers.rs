//! The security headers every console and portal answer carries. The policy allows
//! scripts and styles only from the console's own files (never inline), forms only to
//! this origin, and framing only of the portal by `console.frame_ancestors`.

use std::time::Instant;

use http::{HeaderName, HeaderValue, header};

use super::Page;

/// The policy of every page but the frame's ancestors.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; form-action 'self'; base-uri 'none'";

/// Adds the security headers, `cache-control: no-store` unless the answer set its own
/// (assets), and `server-timing` with the time spent on the request. `ancestors` are
/// the origins that may frame the page (the portal's `console.frame_ancestors`); none
/// may frame the console.
pub fn secure(page: &mut Page, started: Instant, ancestors: &[String]) {
    let headers = page.headers_mut();
    let frame = if ancestors.is_empty() {
        "'none'".to_owned()
    } else {
        ancestors.join(" ")
    };
    // The origins were checked when the config loaded; a value that is still not a
    // header falls back to no framing.
    let policy = HeaderValue::from_str(&format!("{POLICY}; frame-ancestors {frame}")).unwrap_or(
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    if ancestors.is_empty() {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    let fixed = [
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
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
