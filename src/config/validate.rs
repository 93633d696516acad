//! The rules a parsed config must satisfy beyond its types. Each rule returns the dotted
//! key at fault and a reason that says what would be accepted; `Config::validate` adds
//! the file name.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use tracing_subscriber::EnvFilter;

use super::{Backend, Config};

type Rule = Result<(), (String, String)>;

/// Smaller than 1 KiB cannot hold an event envelope with a useful `data` object.
const MIN_MAX_BODY_BYTES: usize = 1024;
/// Below 1 MiB redb would reread the due index from disk on every dispatcher scan.
const MIN_CACHE_SIZE: usize = 1024 * 1024;
/// Under a second, a TLS handshake to a distant receiver already times out.
const MIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Over five minutes, a hung receiver holds a concurrency slot for nothing; receivers are
/// expected to answer quickly and work afterwards.
const MAX_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Operational event types hookd emits itself live under this prefix.
const RESERVED_PREFIX: &str = "hookd.";
pub(super) const MIN_ADMIN_TOKEN_CHARS: usize = 16;

fn fail(key: impl Into<String>, reason: impl Into<String>) -> Rule {
    Err((key.into(), reason.into()))
}

pub(super) fn validate(config: &Config) -> Rule {
    server(config)?;
    log(config)?;
    storage(config)?;
    secrets(config)?;
    delivery(config)?;
    jwt(config)?;
    super::console::validate(&config.console)?;
    event_types(config)
}

fn required_path(key: &str, path: &Path) -> Rule {
    if path.as_os_str().is_empty() {
        return fail(key, "must be set to a file path");
    }
    Ok(())
}

fn server(config: &Config) -> Rule {
    let server = &config.server;
    if server.plaintext && !server.listen.ip().is_loopback() {
        return fail(
            "server.plaintext",
            format!(
                "true is refused unless server.listen is a loopback address (it is {}); \
                 plain HTTP is only for a local TLS-terminating proxy",
                server.listen
            ),
        );
    }
    if !server.plaintext {
        required_path("server.tls_cert", &server.tls_cert)?;
        required_path("server.tls_key", &server.tls_key)?;
    }
    // Port 0 (tests, benchmarks) picks a free port for each, so equal is fine then.
    if server.metrics_listen == server.listen && server.listen.port() != 0 {
        return fail(
            "server.metrics_listen",
            format!("must differ from server.listen ({})", server.listen),
        );
    }
    if server.max_body_bytes < MIN_MAX_BODY_BYTES {
        return fail(
            "server.max_body_bytes",
            format!("must be at least {MIN_MAX_BODY_BYTES}"),
        );
    }
    if server.max_body_bytes > server.max_batch_bytes {
        return fail(
            "server.max_body_bytes",
            format!(
                "must be at most server.max_batch_bytes ({})",
                server.max_batch_bytes
            ),
        );
    }
    Ok(())
}

fn log(config: &Config) -> Rule {
    let level = config.log.level.trim();
    if level.is_empty() {
        return fail(
            "log.level",
            "must be set, e.g. \"info\" or \"hookd=debug,info\"",
        );
    }
    EnvFilter::try_new(level).map(drop).or_else(|error| {
        fail(
            "log.level",
            format!(
                "\"{level}\" is not a log filter ({error}); e.g. \"info\" or \"hookd=debug,info\""
            ),
        )
    })
}

fn storage(config: &Config) -> Rule {
    let storage = &config.storage;
    if storage.backend == Backend::Redb {
        required_path("storage.path", &storage.path)?;
    }
    if storage.cache_size < MIN_CACHE_SIZE {
        return fail("storage.cache_size", "must be at least 1MiB");
    }
    // Purging a delivery that is still being retried would lose it.
    if storage.retention < config.delivery.max_age {
        return fail(
            "storage.retention",
            format!(
                "must be at least delivery.max_age ({})",
                humantime::format_duration(config.delivery.max_age)
            ),
        );
    }
    super::postgres::validate(storage.backend, &storage.postgres)
}

fn secrets(config: &Config) -> Rule {
    required_path("secrets.master_key_file", &config.secrets.master_key_file)?;
    required_path("secrets.admin_token_file", &config.secrets.admin_token_file)
}

fn delivery(config: &Config) -> Rule {
    let delivery = &config.delivery;
    if !(MIN_TIMEOUT..=MAX_TIMEOUT).contains(&delivery.timeout) {
        return fail("delivery.timeout", "must be between 1s and 5m");
    }
    if delivery.max_age.is_zero() {
        return fail("delivery.max_age", "must be more than 0s");
    }
    if delivery.schedule.is_empty() {
        return fail(
            "delivery.schedule",
            "must list at least one retry delay, e.g. [\"5s\", \"5m\", \"30m\"]",
        );
    }
    if let Some(index) = delivery.schedule.iter().position(Duration::is_zero) {
        return fail(
            format!("delivery.schedule[{index}]"),
            "must be more than 0s",
        );
    }
    if delivery.concurrency == 0 {
        return fail("delivery.concurrency", "must be at least 1");
    }
    if delivery.per_endpoint_concurrency == 0 {
        return fail("delivery.per_endpoint_concurrency", "must be at least 1");
    }
    if delivery.per_endpoint_concurrency > delivery.concurrency {
        return fail(
            "delivery.per_endpoint_concurrency",
            format!(
                "must be at most delivery.concurrency ({})",
                delivery.concurrency
            ),
        );
    }
    if delivery.disable_after.is_zero() {
        return fail("delivery.disable_after", "must be more than 0s");
    }
    if let Some(proxy) = &delivery.proxy {
        check_proxy(proxy).or_else(|reason| fail("delivery.proxy", reason))?;
    }
    Ok(())
}

/// The proxy is an HTTP CONNECT proxy named as `http://host:port`, nothing more.
fn check_proxy(proxy: &str) -> Result<(), String> {
    let expected = "must be http://host:port";
    let uri: http::Uri = proxy
        .parse()
        .map_err(|error| format!("\"{proxy}\" is not a URL ({error}); {expected}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("\"{proxy}\": {expected} (CONNECT over plain HTTP)"));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("\"{proxy}\": {expected}"))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "\"{proxy}\": credentials in the proxy URL are not supported; {expected}"
        ));
    }
    if authority.host().is_empty() || authority.port_u16().is_none() {
        return Err(format!("\"{proxy}\": {expected} (with an explicit port)"));
    }
    if uri.path_and_query().is_some_and(|pq| pq.as_str() != "/") {
        return Err(format!("\"{proxy}\": {expected}, without a path"));
    }
    Ok(())
}

fn jwt(config: &Config) -> Rule {
    let Some(jwt) = &config.auth.jwt else {
        return Ok(());
    };
    if jwt.issuer.trim().is_empty() {
        return fail(
            "auth.jwt.issuer",
            "must be set (the `iss` every token must carry)",
        );
    }
    if jwt.audience.trim().is_empty() {
        return fail(
            "auth.jwt.audience",
            "must be set (the `aud` every token must carry)",
        );
    }
    let set = [
        &jwt.hs256_secret_file,
        &jwt.rs256_public_key_file,
        &jwt.es256_public_key_file,
    ]
    .iter()
    .filter(|file| file.is_some())
    .count();
    if set != 1 {
        // The key file fixes the algorithm; tokens never choose it.
        return fail(
            "auth.jwt",
            format!(
                "exactly one of hs256_secret_file, rs256_public_key_file, es256_public_key_file \
                 must be set ({set} are)"
            ),
        );
    }
    Ok(())
}

fn event_types(config: &Config) -> Rule {
    let mut seen = HashSet::new();
    for (index, event_type) in config.event_types.iter().enumerate() {
        let key = |field: &str| format!("event_types[{index}].{field}");
        let name = event_type.name.as_str();
        if name.is_empty() {
            return fail(key("name"), "must be set, e.g. \"v2.export-job.created\"");
        }
        // Subscriptions match with `*` wildcards, and scopes and names travel
        // space-separated, so neither may contain those characters.
        if name.contains(|c: char| c.is_whitespace() || c == '*') {
            return fail(
                key("name"),
                format!("\"{name}\" must not contain spaces or `*`"),
            );
        }
        if name.starts_with(RESERVED_PREFIX) {
            return fail(
                key("name"),
                format!(
                    "\"{name}\": names starting with \"{RESERVED_PREFIX}\" are reserved for hookd's own events"
                ),
            );
        }
        if !seen.insert(name) {
            return fail(key("name"), format!("\"{name}\" is declared twice"));
        }
        let scope = event_type.scope.as_str();
        if scope.is_empty() || scope.contains(char::is_whitespace) {
            return fail(
                key("scope"),
                "must be one scope without spaces, e.g. \"export-jobs:read\"",
            );
        }
    }
    Ok(())
}
