//! `[storage]`'s backend choice and `[storage.postgres]`: where the shared database of
//! several nodes is and how to reach it. The url is understood here, once: the rest of
//! hookd receives a parsed `PostgresUrl` (the client's settings and the TLS mode), never
//! the text. The password has its own file and never sits in the url.

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use tokio_postgres::config::Host;

use super::values;

/// Connections to the database one node keeps at most. 16 covers the writer's group
/// commits, the dispatcher's reads and the API's reads at once on a small VM, far below
/// PostgreSQL's default `max_connections` (100) even for several nodes.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// A dead node's partitions move to the others after about this long. 15 s: well above
/// a heartbeat's round trip and a garbage-collection or disk stall, short enough that a
/// crash delays its subscriptions' deliveries less than the first retry (5 s + 20 %)
/// plus one.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);
/// More connections than this from one node would exhaust any PostgreSQL server.
const MAX_POOL_SIZE: usize = 1024;
/// Under a second, a node would lose its partitions to one slow round trip.
const MIN_LEASE: Duration = Duration::from_secs(1);
/// A host-name label's length (RFC 1035), and below PostgreSQL's 63-byte
/// `application_name`, where the node shows in `pg_stat_activity`.
const MAX_NODE_NAME: usize = 63;
/// What every error about the url shows as a model.
const EXAMPLE_URL: &str = "postgres://hookd@db.internal:5432/hookd?sslmode=verify-full";

/// Where hookd keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// One redb file (`storage.path`): one node, no database server. The default.
    #[default]
    Redb,
    /// One PostgreSQL database shared by any number of nodes (`[storage.postgres]`).
    Postgres,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Postgres {
    /// `postgres://user@host:port/dbname?sslmode=...`, without a password. Required with
    /// `backend = "postgres"`.
    #[serde(deserialize_with = "values::optional_string")]
    pub url: Option<String>,
    /// One line holding the database password (surrounding whitespace is ignored).
    #[serde(deserialize_with = "values::optional_path")]
    pub password_file: Option<PathBuf>,
    /// PEM bundle trusted for the database's certificate instead of the system roots.
    #[serde(deserialize_with = "values::optional_path")]
    pub ca_file: Option<PathBuf>,
    pub pool_size: usize,
    /// This node's name in the `partitions` and `nodes` tables; `None`: the host name.
    #[serde(deserialize_with = "values::optional_string")]
    pub node_name: Option<String>,
    #[serde(deserialize_with = "values::duration")]
    pub lease: Duration,
}

impl Default for Postgres {
    fn default() -> Self {
        Self {
            url: None,
            password_file: None,
            ca_file: None,
            pool_size: DEFAULT_POOL_SIZE,
            node_name: None,
            lease: DEFAULT_LEASE,
        }
    }
}

/// How the connection to the database is protected: the url's `sslmode`, as libpq
/// names them. `allow` and `prefer` are refused: they fall back to plain text when the
/// server (or someone in between) declines TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain text. Only when the url says `sslmode=disable`, or by default when every
    /// host is a unix socket or a loopback address (nothing leaves the machine).
    Disable,
    /// Encrypted. The certificate is checked against `ca_file` when one is set (libpq
    /// does the same when it has a root certificate), otherwise not at all.
    Require,
    /// Encrypted; the certificate chains to `ca_file` (or the system roots), whatever
    /// host it names.
    VerifyCa,
    /// Encrypted; the certificate chains to `ca_file` (or the system roots) and names
    /// the host of the url. The default for any host but a local one.
    VerifyFull,
}

/// A parsed `storage.postgres.url`: the client settings `tokio-postgres` takes (the url
/// without `sslmode`, whose verify modes it does not know) and the TLS mode.
#[derive(Debug, Clone)]
pub struct PostgresUrl {
    pub client: tokio_postgres::Config,
    pub ssl_mode: SslMode,
}

impl Postgres {
    /// The parsed url; Err (a reason) when it is unset or wrong.
    pub fn target(&self) -> Result<PostgresUrl, String> {
        match &self.url {
            Some(url) => parse_url(url),
            None => Err(format!("must be set, e.g. \"{EXAMPLE_URL}\"")),
        }
    }

    /// `node_name`, or else the host name; Err (a reason) when the host name cannot
    /// serve as one (then `node_name` must be set).
    pub fn node_name(&self) -> Result<String, String> {
        if let Some(name) = &self.node_name {
            return Ok(name.clone());
        }
        let uname = rustix::system::uname();
        let host = uname.nodename().to_string_lossy().into_owned();
        check_node_name(&host)
            .map(|()| host.clone())
            .map_err(|reason| {
                format!("unset, and the host name {host:?} cannot stand in for it: {reason}")
            })
    }
}

/// `(key, reason)` for the first key of `[storage.postgres]` that is wrong. The url is
/// required only with `backend = "postgres"`; the other keys are checked whatever the
/// backend, so a typo shows before the day the backend is switched.
pub(super) fn validate(backend: Backend, postgres: &Postgres) -> Result<(), (String, String)> {
    let fail = |key: &str, reason: String| Err((format!("storage.postgres.{key}"), reason));
    if backend == Backend::Postgres || postgres.url.is_some() {
        if let Err(reason) = postgres.target() {
            return fail("url", reason);
        }
    }
    if !(1..=MAX_POOL_SIZE).contains(&postgres.pool_size) {
        return fail(
            "pool_size",
            format!("must be between 1 and {MAX_POOL_SIZE}"),
        );
    }
    if postgres.lease < MIN_LEASE {
        return fail("lease", "must be at least 1s".to_owned());
    }
    if let Some(name) = &postgres.node_name {
        check_node_name(name).or_else(|reason| fail("node_name", format!("{name:?} {reason}")))?;
    }
    Ok(())
}

fn check_node_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NODE_NAME {
        return Err(format!("must be 1 to {MAX_NODE_NAME} characters"));
    }
    if !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces, e.g. \"hookd-1\"".to_owned());
    }
    Ok(())
}

/// Parses a url (never echoing it: a mistaken one may hold a secret).
fn parse_url(url: &str) -> Result<PostgresUrl, String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(format!("must be a postgres:// URL, e.g. \"{EXAMPLE_URL}\""));
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut sslmode = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", value)) if sslmode.is_none() => sslmode = Some(value),
            Some(("sslmode", _)) => return Err("names sslmode twice".to_owned()),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let client = tokio_postgres::Config::from_str(&rest)
        .map_err(|error| format!("is not a PostgreSQL URL ({error}); e.g. \"{EXAMPLE_URL}\""))?;
    if client.get_password().is_some() {
        return Err(
            "must not hold a password (it would show wherever the config file \
                    does); put it in storage.postgres.password_file"
                .to_owned(),
        );
    }
    let hosts = client.get_hosts();
    if hosts.is_empty() {
        return Err(format!(
            "must name the database host, e.g. \"{EXAMPLE_URL}\""
        ));
    }
    let unix = hosts.iter().any(|host| matches!(host, Host::Unix(_)));
    let ssl_mode = match sslmode {
        None if hosts.iter().all(is_local) => SslMode::Disable,
        None => SslMode::VerifyFull,
        Some("disable") => SslMode::Disable,
        Some(mode @ ("require" | "verify-ca" | "verify-full")) if unix => {
            return Err(format!(
                "sslmode={mode} cannot apply to a unix socket host (PostgreSQL speaks no \
                 TLS there); drop sslmode or name a TCP host"
            ));
        }
        Some("require") => SslMode::Require,
        Some("verify-ca") => SslMode::VerifyCa,
        Some("verify-full") => SslMode::VerifyFull,
        Some(mode @ ("allow" | "prefer")) => {
            return Err(format!(
                "sslmode={mode} falls back to plain text when TLS is declined; use require, \
                 verify-ca or verify-full (or disable, on a network you trust)"
            ));
        }
        Some(_) => {
            return Err("sslmode must be disable, require, verify-ca or verify-full".to_owned());
        }
    };
    Ok(PostgresUrl { client, ssl_mode })
}

/// A unix socket, `localhost` or a loopback address: traffic that stays on the machine.
fn is_local(host: &Host) -> bool {
    match host {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            let bare = name.trim_start_matches('[').trim_end_matches(']');
            name.eq_ignore_ascii_case("localhost")
                || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
    }
}
