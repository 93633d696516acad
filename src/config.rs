//! The configuration file (`/etc/hookd/hookd.toml`): its structs, the default of every
//! key with the reason for it, loading (TOML text in, relative paths resolved against
//! the file's folder), validation with errors that name the file and the key, and the
//! two secret files it points at (master key, admin token). Nothing else in hookd
//! parses configuration; everything else receives a validated `Config`.

mod console;
mod postgres;
mod validate;
mod values;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_postgres;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::secret::Secret;

pub use console::{Console, DEFAULT_SESSION_TTL};
pub use postgres::{Backend, DEFAULT_LEASE, DEFAULT_POOL_SIZE, Postgres, PostgresUrl, SslMode};
pub use values::{Cidr, CidrError, MinFree};

/// Where `hookd serve` and `hookd check-config` look without `--config`; the packages
/// install the file here as a conffile.
pub const DEFAULT_PATH: &str = "/etc/hookd/hookd.toml";

/// All interfaces: hookd is the public ingest endpoint of the VM.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8443));
/// Beside the config, where `hookd init` writes it.
pub const DEFAULT_TLS_CERT: &str = "tls/cert.pem";
/// Beside the config, where `hookd init` writes it.
pub const DEFAULT_TLS_KEY: &str = "tls/key.pem";
/// Loopback only: metrics carry no auth, so they are not exposed unless the operator asks.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9464));
/// 256 KiB per event body: generous for JSON notifications, small enough that one
/// tenant cannot make every retry carry megabytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
/// 8 MiB per request: a batch of events, bounded so one request cannot pin the writer.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Lets in-flight attempts finish within systemd's default 90 s stop timeout.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Start, stop and failures, without per-request noise.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// Beside the config in development; packages point it at /var/lib/hookd.
pub const DEFAULT_STORAGE_PATH: &str = "data/hookd.redb";
/// A month of history for inspection and replay; well past the 72 h retry window.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// redb's own default is 1 GiB, too much for a small VM; 32 MiB holds the hot pages
/// (due index, recent events) of a busy instance.
pub const DEFAULT_CACHE_SIZE: usize = 32 * 1024 * 1024;
/// Room for the outcomes, retries and purges of the work already accepted (each attempt
/// writes a record) and for redb's copy-on-write pages, after new events stop.
pub const DEFAULT_MIN_FREE: MinFree = MinFree::Bytes(1 << 30);
/// Beside the config, where `hookd init` writes it.
pub const DEFAULT_MASTER_KEY_FILE: &str = "master.key";
/// Beside the config, where `hookd init` writes it.
pub const DEFAULT_ADMIN_TOKEN_FILE: &str = "admin.token";
/// What subscribers expect (Svix, Stripe); a slow receiver should answer 2xx and work later.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// Three days covers a weekend outage of a receiver, the usual promise of webhook senders.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(72 * 3600);
/// The Svix/Standard Webhooks schedule: quick retries for blips, then spread over ~72 h.
pub const DEFAULT_SCHEDULE: [Duration; 9] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(14 * 3600),
    Duration::from_secs(20 * 3600),
    Duration::from_secs(20 * 3600),
];
/// Payloads and signatures must not travel in clear outside development.
pub const DEFAULT_ALLOW_HTTP: bool = false;
/// Outbound attempts at once: enough to keep many slow receivers busy on 2 cores.
pub const DEFAULT_CONCURRENCY: usize = 512;
/// Per endpoint: a receiver is not flooded and cannot take every slot.
pub const DEFAULT_PER_ENDPOINT_CONCURRENCY: usize = 16;
/// A subscription failing for five days straight is disabled (and its owner told).
pub const DEFAULT_DISABLE_AFTER: Duration = Duration::from_secs(5 * 24 * 3600);
/// A rotated signing secret keeps signing for a day so receivers can switch over.
pub const DEFAULT_ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3600);

/// The whole file. Sections and keys are all optional; a missing one takes its default.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: Server,
    pub log: Log,
    pub storage: Storage,
    pub secrets: Secrets,
    pub delivery: Delivery,
    pub console: Console,
    pub auth: Auth,
    pub event_types: Vec<EventType>,
    /// The file this was loaded from (None for built-in defaults or `from_toml`).
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Server {
    pub listen: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub plaintext: bool,
    pub metrics_listen: SocketAddr,
    #[serde(deserialize_with = "values::size")]
    pub max_body_bytes: usize,
    #[serde(deserialize_with = "values::size")]
    pub max_batch_bytes: usize,
    #[serde(deserialize_with = "values::duration")]
    pub shutdown_grace: Duration,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            tls_cert: PathBuf::from(DEFAULT_TLS_CERT),
            tls_key: PathBuf::from(DEFAULT_TLS_KEY),
            plaintext: false,
            metrics_listen: DEFAULT_METRICS_LISTEN,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// An `EnvFilter` directive (`info`, `hookd=debug,info`); `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            level: DEFAULT_LOG_LEVEL.to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    /// redb (one node) or PostgreSQL (`[storage.postgres]`, several nodes).
    pub backend: Backend,
    /// The redb file (with `backend = "redb"`).
    pub path: PathBuf,
    #[serde(deserialize_with = "values::duration")]
    pub retention: Duration,
    /// Bytes.
    #[serde(deserialize_with = "values::size")]
    pub cache_size: usize,
    /// Below this much free disk, new events are refused (507).
    pub min_free: MinFree,
    pub postgres: Postgres,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            backend: Backend::default(),
            path: PathBuf::from(DEFAULT_STORAGE_PATH),
            retention: DEFAULT_RETENTION,
            cache_size: DEFAULT_CACHE_SIZE,
            min_free: DEFAULT_MIN_FREE,
            postgres: Postgres::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Secrets {
    pub master_key_file: PathBuf,
    pub admin_token_file: PathBuf,
}

impl Default for Secrets {
    fn default() -> Self {
        Self {
            master_key_file: PathBuf::from(DEFAULT_MASTER_KEY_FILE),
            admin_token_file: PathBuf::from(DEFAULT_ADMIN_TOKEN_FILE),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Delivery {
    #[serde(deserialize_with = "values::duration")]
    pub timeout: Duration,
    #[serde(deserialize_with = "values::duration")]
    pub max_age: Duration,
    #[serde(deserialize_with = "values::durations")]
    pub schedule: Vec<Duration>,
    pub allow_http: bool,
    #[serde(deserialize_with = "values::optional_path")]
    pub extra_ca_file: Option<PathBuf>,
    pub allow_networks: Vec<Cidr>,
    pub concurrency: usize,
    pub per_endpoint_concurrency: usize,
    #[serde(deserialize_with = "values::duration")]
    pub disable_after: Duration,
    #[serde(deserialize_with = "values::duration")]
    pub rotation_overlap: Duration,
    #[serde(deserialize_with = "values::optional_string")]
    pub proxy: Option<String>,
    #[serde(deserialize_with = "values::optional_ip")]
    pub source_address: Option<IpAddr>,
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            max_age: DEFAULT_MAX_AGE,
            schedule: DEFAULT_SCHEDULE.to_vec(),
            allow_http: DEFAULT_ALLOW_HTTP,
            extra_ca_file: None,
            allow_networks: Vec::new(),
            concurrency: DEFAULT_CONCURRENCY,
            per_endpoint_concurrency: DEFAULT_PER_ENDPOINT_CONCURRENCY,
            disable_after: DEFAULT_DISABLE_AFTER,
            rotation_overlap: DEFAULT_ROTATION_OVERLAP,
            proxy: None,
            source_address: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Auth {
    /// JWT bearer tokens are accepted only when this section is present.
    pub jwt: Option<Jwt>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Jwt {
    pub issuer: String,
    pub audience: String,
    #[serde(deserialize_with = "values::optional_path")]
    pub hs256_secret_file: Option<PathBuf>,
    #[serde(deserialize_with = "values::optional_path")]
    pub rs256_public_key_file: Option<PathBuf>,
    #[serde(deserialize_with = "values::optional_path")]
    pub es256_public_key_file: Option<PathBuf>,
}

/// One entry of the event type catalog (`[[event_types]]`).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventType {
    pub name: String,
    pub description: String,
    /// The read scope a caller needs to subscribe to or read events of this type.
    pub scope: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {}{message}", shown(path.as_deref()), at(*line, *column, key))]
    Parse {
        path: Option<PathBuf>,
        /// 1-based; 0 when toml gave no position.
        line: usize,
        column: usize,
        /// Dotted path of the offending key (`server.listen`), empty for syntax errors.
        key: String,
        message: String,
    },
    #[error("{}: {key}: {reason}", shown(path.as_deref()))]
    Invalid {
        path: Option<PathBuf>,
        key: String,
        reason: String,
    },
    #[error("{key} = {}: cannot read: {source}", path.display())]
    SecretFile {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "secrets.master_key_file = {}: must hold exactly 32 raw bytes, found {found} \
         (`hookd init --missing-only DIR` creates one)",
        path.display()
    )]
    MasterKeyLength { path: PathBuf, found: usize },
    #[error("secrets.admin_token_file = {}: {reason}", path.display())]
    AdminToken { path: PathBuf, reason: String },
}

/// How a config without a file is named in errors.
fn shown(path: Option<&Path>) -> String {
    path.map_or_else(|| "<inline config>".to_owned(), |p| p.display().to_string())
}

fn at(line: usize, column: usize, key: &str) -> String {
    let mut out = String::new();
    if line > 0 {
        out.push_str(&format!("line {line}, column {column}: "));
    }
    if !key.is_empty() {
        out.push_str(key);
        out.push_str(": ");
    }
    out
}

impl Config {
    /// Reads, parses, resolves relative paths against the file's folder and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        Self::parse(&text, base, Some(path))
    }

    /// `load` without the file read: relative paths resolve against `base_dir`.
    pub fn from_toml(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        Self::parse(text, base_dir, None)
    }

    fn parse(text: &str, base_dir: &Path, path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config: Config =
            toml::from_str(text).map_err(|error| values::parse_error(text, path, &error))?;
        config.path = path.map(Path::to_owned);
        config.resolve_paths(base_dir);
        config.validate()?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |path: &mut PathBuf| {
            // An empty path means unset and stays empty so validation can name it.
            if !path.as_os_str().is_empty() && path.is_relative() {
                *path = base.join(&*path);
            }
        };
        resolve(&mut self.server.tls_cert);
        resolve(&mut self.server.tls_key);
        resolve(&mut self.storage.path);
        resolve(&mut self.secrets.master_key_file);
        resolve(&mut self.secrets.admin_token_file);
        let optional = [
            &mut self.delivery.extra_ca_file,
            &mut self.storage.postgres.password_file,
            &mut self.storage.postgres.ca_file,
        ]
        .into_iter()
        .flatten();
        let jwt = self.auth.jwt.iter_mut().flat_map(|jwt| {
            [
                &mut jwt.hs256_secret_file,
                &mut jwt.rs256_public_key_file,
                &mut jwt.es256_public_key_file,
            ]
            .into_iter()
            .flatten()
        });
        optional.chain(jwt).for_each(resolve);
    }

    /// Checks what the types cannot: cross-key limits, reserved names, refused settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::validate(self).map_err(|(key, reason)| ConfigError::Invalid {
            path: self.path.clone(),
            key,
            reason,
        })
    }

    /// The AES-256-GCM master key: exactly 32 raw bytes from `secrets.master_key_file`.
    pub fn master_key(&self) -> Result<[u8; 32], ConfigError> {
        let path = &self.secrets.master_key_file;
        let bytes = std::fs::read(path).map_err(|source| ConfigError::SecretFile {
            key: "secrets.master_key_file",
            path: path.clone(),
            source,
        })?;
        <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| ConfigError::MasterKeyLength {
            path: path.clone(),
            found: bytes.len(),
        })
    }

    /// The admin token from `secrets.admin_token_file`, surrounding whitespace removed.
    pub fn admin_token(&self) -> Result<Secret, ConfigError> {
        let path = &self.secrets.admin_token_file;
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
            key: "secrets.admin_token_file",
            path: path.clone(),
            source,
        })?;
        let token = text.trim();
        // 16 characters is the floor for a guessable-by-nobody bearer token; `hookd init`
        // writes 47.
        if token.chars().count() < validate::MIN_ADMIN_TOKEN_CHARS {
            return Err(ConfigError::AdminToken {
                path: path.clone(),
                reason: format!(
                    "the token must be at least {} characters, this one has {}",
                    validate::MIN_ADMIN_TOKEN_CHARS,
                    token.chars().count()
                ),
            });
        }
        Ok(Secret::new(token.to_owned()))
    }
}
