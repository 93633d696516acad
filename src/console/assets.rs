//! The console's stylesheet and script, compiled into the binary. The script only
//! enhances (shows the fields of the chosen endpoint authentication, asks before a
//! delete); every page works without it.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use super::Page;

pub const CSS: &str = include_str!("assets/console.css");
pub const JS: &str = include_str!("assets/console.js");

pub fn serve(name: &str) -> Page {
    let (body, kind) = match name {
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "console.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return super::error_page(None, &crate::api::ApiError::NotFound("asset")),
    };
    let mut page = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *page.status_mut() = StatusCode::OK;
    let headers = page.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // An hour: a new version of hookd is picked up soon after an upgrade.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "A few kilobytes of JavaScript at most."
    #[test]
    fn assets_stay_small() {
        assert!(JS.len() < 4 * 1024, "console.js is {} bytes", JS.len());
        assert!(CSS.len() < 8 * 1024, "console.css is {} bytes", CSS.len());
    }
}
