//! `[console]`: the web console at `/console/` and the customer portal at `/portal/`,
//! served by the API listener. Defaults with their reasons, and the checks the types
//! cannot make.

use std::time::Duration;

use serde::Deserialize;

use super::values;

/// On by default: it is the same listener and the same credentials as the API, and the
/// pages do nothing a credential could not do with curl.
pub const DEFAULT_CONSOLE_ENABLED: bool = true;
/// A working day: long enough not to interrupt a support engineer, short enough that a
/// forgotten browser tab does not stay signed in for days.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// At least a minute (a shorter session cannot complete a form) and at most 30 days.
const MIN_SESSION_TTL: Duration = Duration::from_secs(60);
const MAX_SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Console {
    /// `false`: nothing is served under `/console/` or `/portal/`.
    pub enabled: bool,
    /// Base of portal links; empty: `https://<server.listen>`.
    #[serde(deserialize_with = "values::optional_string")]
    pub public_url: Option<String>,
    #[serde(deserialize_with = "values::duration")]
    pub session_ttl: Duration,
    /// Origins allowed to frame `/portal/` (CSP `frame-ancestors`); `/console/` never.
    pub frame_ancestors: Vec<String>,
}

impl Default for Console {
    fn default() -> Self {
        Self {
            enabled: DEFAULT_CONSOLE_ENABLED,
            public_url: None,
            session_ttl: DEFAULT_SESSION_TTL,
            frame_ancestors: Vec::new(),
        }
    }
}

/// `(key, reason)` for the first key that is wrong.
pub(super) fn validate(console: &Console) -> Result<(), (String, String)> {
    let fail = |key: &str, reason: &str| Err((key.to_owned(), reason.to_owned()));
    if !(MIN_SESSION_TTL..=MAX_SESSION_TTL).contains(&console.session_ttl) {
        return fail("console.session_ttl", "must be between 1m and 30d");
    }
    if let Some(url) = &console.public_url
        && !is_origin_like(url.trim_end_matches('/'), true)
    {
        return fail(
            "console.public_url",
            "must be an https:// URL without query or fragment, e.g. \"https://hooks.example.com\"",
        );
    }
    for origin in &console.frame_ancestors {
        if !is_origin_like(origin, false) {
            return fail(
                "console.frame_ancestors",
                "each entry must be an https:// origin (scheme, host, optional port), e.g. \"https://dashboard.example.com\"",
            );
        }
    }
    Ok(())
}

/// `https://host[:port]`, and a path too when `path_allowed`. The characters are the
/// ones a URL may hold unescaped and none that would end a CSP directive (`;`, `,`,
/// space) or a header value.
fn is_origin_like(value: &str, path_allowed: bool) -> bool {
    let Some(rest) = value.strip_prefix("https://") else {
        return false;
    };
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    let path_ok = path.is_empty()
        || (path_allowed
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~/%".contains(&b)));
    host_ok && path_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_urls() {
        assert!(is_origin_like("https://dash.example.com", false));
        assert!(is_origin_like("https://dash.example.com:8443", false));
        assert!(!is_origin_like("http://dash.example.com", false));
        assert!(!is_origin_like(
            "https://a.example.com; script-src *",
            false
        ));
        assert!(!is_origin_like("https://a.example.com/x", false));
        assert!(is_origin_like("https://a.example.com/hookd", true));
        assert!(!is_origin_like("https://", false));
    }

    #[test]
    fn session_ttl_is_bounded() {
        let mut console = Console {
            session_ttl: Duration::from_secs(1),
            ..Console::default()
        };
        assert!(validate(&console).is_err());
        console.session_ttl = DEFAULT_SESSION_TTL;
        assert!(validate(&console).is_ok());
    }
}
