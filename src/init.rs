//! `hookd init DIR`: everything a fresh instance needs on disk. A working `hookd.toml`,
//! a local CA (`tls/ca.pem`, `tls/ca.key`) and a server certificate it signed for
//! localhost (`tls/cert.pem`, `tls/key.pem`), a 32-byte master key, an admin token and
//! an empty `data/` folder. Files are created with `create_new`, so an existing file is
//! never overwritten; secret files are mode 0600. `missing_only` (what the packages'
//! post-install runs) creates only the absent key, token and certificate files at the
//! paths the existing config names, and never touches the config itself.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};

use crate::config::{self, Config, ConfigError};

/// Folders hold keys: group may read (a `hookd` group), others nothing.
const DIR_MODE: u32 = 0o750;
const SECRET_MODE: u32 = 0o600;
const CERT_MODE: u32 = 0o644;
/// The config names secret files but holds no secret itself.
const CONFIG_MODE: u32 = 0o640;
const CA_NAME: &str = "hookd local CA";
/// Long enough that a development or single-VM CA never needs attention.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
/// Two years: replaced by running `init --missing-only` after deleting the pair.
const CERT_VALIDITY: Duration = Duration::from_secs(2 * 365 * 86_400);
/// Certificates start an hour in the past so a client with a slow clock accepts them.
const BACKDATE: Duration = Duration::from_secs(3600);
const SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
const ADMIN_TOKEN_PREFIX: &str = "hka_";

pub struct InitOptions {
    /// Create only the absent key, token and certificate files; never the config.
    pub missing_only: bool,
    /// Write a loopback config whose deliveries trust the local CA (`hookd serve --dev`).
    pub dev: bool,
}

#[derive(Debug)]
pub struct InitReport {
    pub config: PathBuf,
    pub ca_cert: PathBuf,
    pub admin_token_file: PathBuf,
    /// Every file and folder this run created, in creation order.
    pub created: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{}: already exists; nothing was written (--missing-only creates only absent files)", path.display())]
    Exists { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make the {what}: {source}")]
    Certificate {
        what: &'static str,
        source: rcgen::Error,
    },
    #[error("{}: cannot read the certificate: {source}", path.display())]
    ReadCertificate {
        path: PathBuf,
        source: crate::tls::TlsError,
    },
    #[error("the system random generator failed")]
    Random,
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{} exists but {} does not; restore it, or delete both to have new ones made", present.display(), missing.display())]
    Unpaired { present: PathBuf, missing: PathBuf },
    #[error("{}: this key does not belong to the certificate {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
}

/// `./hookd-dev`, the folder `hookd serve --dev` initialises and uses.
pub fn dev_dir() -> PathBuf {
    PathBuf::from("./hookd-dev")
}

/// Where each file goes.
struct Paths {
    config: PathBuf,
    ca_cert: PathBuf,
    ca_key: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    master_key: PathBuf,
    admin_token: PathBuf,
    data_dir: PathBuf,
}

impl Paths {
    fn new(dir: &Path, config: &Config) -> Self {
        // The CA lives beside the server certificate, wherever the config puts that.
        let tls_dir = config.server.tls_cert.parent().unwrap_or(dir).to_owned();
        Self {
            config: dir.join("hookd.toml"),
            ca_cert: tls_dir.join("ca.pem"),
            ca_key: tls_dir.join("ca.key"),
            cert: config.server.tls_cert.clone(),
            key: config.server.tls_key.clone(),
            master_key: config.secrets.master_key_file.clone(),
            admin_token: config.secrets.admin_token_file.clone(),
            data_dir: config.storage.path.parent().unwrap_or(dir).to_owned(),
        }
    }

    /// The default relative names, under `dir`.
    fn defaults(dir: &Path) -> Self {
        let mut config = Config::default();
        config.server.tls_cert = dir.join(config::DEFAULT_TLS_CERT);
        config.server.tls_key = dir.join(config::DEFAULT_TLS_KEY);
        config.secrets.master_key_file = dir.join(config::DEFAULT_MASTER_KEY_FILE);
        config.secrets.admin_token_file = dir.join(config::DEFAULT_ADMIN_TOKEN_FILE);
        config.storage.path = dir.join(config::DEFAULT_STORAGE_PATH);
        Self::new(dir, &config)
    }

    fn report(&self, created: Vec<PathBuf>) -> InitReport {
        InitReport {
            config: self.config.clone(),
            ca_cert: self.ca_cert.clone(),
            admin_token_file: self.admin_token.clone(),
            created,
        }
    }
}

pub fn init(dir: &Path, options: &InitOptions) -> Result<InitReport, InitError> {
    let init = Init {
        rng: SystemRandom::new(),
        created: Vec::new(),
    };
    if options.missing_only {
        init.missing_only(dir)
    } else {
        init.everything(dir, options.dev)
    }
}

struct Init {
    rng: SystemRandom,
    created: Vec<PathBuf>,
}

impl Init {
    fn everything(mut self, dir: &Path, dev: bool) -> Result<InitReport, InitError> {
        let paths = Paths::defaults(dir);
        let files = [
            &paths.config,
            &paths.ca_cert,
            &paths.ca_key,
            &paths.cert,
            &paths.key,
            &paths.master_key,
            &paths.admin_token,
        ];
        // All checked before anything is written, so a refused init changes nothing.
        if let Some(path) = files.into_iter().find(|path| exists(path)) {
            return Err(InitError::Exists { path: path.clone() });
        }
        self.make_dir(dir)?;
        let ca = self.new_ca(&paths)?;
        self.new_server_cert(&paths, &ca, None)?;
        self.new_master_key(&paths.master_key)?;
        self.new_admin_token(&paths.admin_token)?;
        self.make_dir(&paths.data_dir)?;
        // Last, so an interrupted run leaves no config pointing at missing files.
        self.write(&paths.config, CONFIG_MODE, config_text(dev).as_bytes())?;
        Ok(paths.report(self.created))
    }

    fn missing_only(mut self, dir: &Path) -> Result<InitReport, InitError> {
        let config_path = dir.join("hookd.toml");
        let paths = if exists(&config_path) {
            Paths::new(dir, &Config::load(&config_path)?)
        } else {
            Paths::defaults(dir)
        };
        self.make_dir(dir)?;
        if !exists(&paths.master_key) {
            self.new_master_key(&paths.master_key)?;
        }
        if !exists(&paths.admin_token) {
            self.new_admin_token(&paths.admin_token)?;
        }
        match (exists(&paths.cert), exists(&paths.key)) {
            (true, true) => {}
            (true, false) => {
                return Err(InitError::Unpaired {
                    present: paths.cert.clone(),
                    missing: paths.key.clone(),
                });
            }
            (false, key_exists) => {
                // A surviving key gets a new certificate rather than being replaced.
                let key = key_exists
                    .then(|| read_key(&paths.key, "server key"))
                    .transpose()?;
                let ca = self.ca(&paths)?;
                self.new_server_cert(&paths, &ca, key)?;
            }
        }
        self.make_dir(&paths.data_dir)?;
        Ok(paths.report(self.created))
    }

    /// The existing CA when both its files are there, else a new one.
    fn ca(&mut self, paths: &Paths) -> Result<Issuer<'static, KeyPair>, InitError> {
        match (exists(&paths.ca_cert), exists(&paths.ca_key)) {
            (false, false) => self.new_ca(paths),
            (true, false) => Err(InitError::Unpaired {
                present: paths.ca_cert.clone(),
                missing: paths.ca_key.clone(),
            }),
            (false, true) => Err(InitError::Unpaired {
                present: paths.ca_key.clone(),
                missing: paths.ca_cert.clone(),
            }),
            (true, true) => {
                let key = read_key(&paths.ca_key, "CA key")?;
                let certs = crate::tls::load_certs(&paths.ca_cert).map_err(|source| {
                    InitError::ReadCertificate {
                        path: paths.ca_cert.clone(),
                        source,
                    }
                })?;
                // Without an X.509 parser, the CA's name and key usages are rebuilt from
                // the same parameters `init` used; the public key check makes sure the
                // key is that CA's, or nothing signed with it would ever verify.
                let spki = key.subject_public_key_info();
                let matches = certs
                    .first()
                    .is_some_and(|der| der.windows(spki.len()).any(|w| w == spki.as_slice()));
                if !matches {
                    return Err(InitError::KeyMismatch {
                        cert: paths.ca_cert.clone(),
                        key: paths.ca_key.clone(),
                    });
                }
                Ok(Issuer::new(self.ca_params()?, key))
            }
        }
    }

    fn ca_params(&self) -> Result<CertificateParams, InitError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(CA_NAME);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        self.validity(&mut params, CA_VALIDITY)?;
        Ok(params)
    }

    fn new_ca(&mut self, paths: &Paths) -> Result<Issuer<'static, KeyPair>, InitError> {
        let what = "local CA certificate";
        let key = KeyPair::generate().map_err(|source| InitError::Certificate { what, source })?;
        let params = self.ca_params()?;
        let cert = params
            .self_signed(&key)
            .map_err(|source| InitError::Certificate { what, source })?;
        self.write(&paths.ca_key, SECRET_MODE, key.serialize_pem().as_bytes())?;
        self.write(&paths.ca_cert, CERT_MODE, cert.pem().as_bytes())?;
        Ok(Issuer::new(params, key))
    }

    /// A certificate for localhost signed by `ca`, for `key` or a new key.
    fn new_server_cert(
        &mut self,
        paths: &Paths,
        ca: &Issuer<'_, KeyPair>,
        key: Option<KeyPair>,
    ) -> Result<(), InitError> {
        let what = "server certificate";
        let cert_error = |source| InitError::Certificate { what, source };
        let names = SERVER_NAMES.map(str::to_owned).to_vec();
        let mut params = CertificateParams::new(names).map_err(cert_error)?;
        params.distinguished_name = name("hookd");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        self.validity(&mut params, CERT_VALIDITY)?;
        let (key, new_key) = match key {
            Some(key) => (key, false),
            None => (KeyPair::generate().map_err(cert_error)?, true),
        };
        let cert = params.signed_by(&key, ca).map_err(cert_error)?;
        if new_key {
            self.write(&paths.key, SECRET_MODE, key.serialize_pem().as_bytes())?;
        }
        self.write(&paths.cert, CERT_MODE, cert.pem().as_bytes())
    }

    /// From an hour ago for `length`, with a random serial: two certificates from one CA
    /// must never share a serial, which a key-derived serial would for a reused key.
    fn validity(&self, params: &mut CertificateParams, length: Duration) -> Result<(), InitError> {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
        params.not_before = now - BACKDATE;
        params.not_after = now + length;
        let mut serial = [0u8; 16];
        self.rng.fill(&mut serial).map_err(|_| InitError::Random)?;
        // Positive and without a leading zero byte, as RFC 5280 asks of serials.
        serial[0] = (serial[0] & 0x7f) | 0x40;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        Ok(())
    }

    fn new_master_key(&mut self, path: &Path) -> Result<(), InitError> {
        let mut key = [0u8; 32];
        self.rng.fill(&mut key).map_err(|_| InitError::Random)?;
        self.write(path, SECRET_MODE, &key)
    }

    fn new_admin_token(&mut self, path: &Path) -> Result<(), InitError> {
        let mut bytes = [0u8; 32];
        self.rng.fill(&mut bytes).map_err(|_| InitError::Random)?;
        let token = format!("{ADMIN_TOKEN_PREFIX}{}\n", URL_SAFE_NO_PAD.encode(bytes));
        self.write(path, SECRET_MODE, token.as_bytes())
    }

    /// Creates `path` (and missing parent folders); fails if it exists.
    fn write(&mut self, path: &Path, mode: u32, contents: &[u8]) -> Result<(), InitError> {
        if let Some(parent) = path.parent() {
            self.make_dir(parent)?;
        }
        let io_error = |source| InitError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::AlreadyExists => InitError::Exists {
                    path: path.to_owned(),
                },
                _ => io_error(source),
            })?;
        file.write_all(contents).map_err(io_error)?;
        // Keys must survive a crash right after init, or the next start makes new ones
        // and everything sealed with the lost master key is unreadable.
        file.sync_all().map_err(io_error)?;
        self.created.push(path.to_owned());
        Ok(())
    }

    /// Creates a missing folder (and its parents) with `DIR_MODE`; an existing one is
    /// left as it is.
    fn make_dir(&mut self, dir: &Path) -> Result<(), InitError> {
        if dir.as_os_str().is_empty() || dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            self.make_dir(parent)?;
        }
        DirBuilder::new()
            .mode(DIR_MODE)
            .create(dir)
            .map_err(|source| InitError::Io {
                path: dir.to_owned(),
                source,
            })?;
        self.created.push(dir.to_owned());
        Ok(())
    }
}

/// Anything at `path`, even a dangling symlink, counts: `create_new` would fail on it.
fn exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

fn read_key(path: &Path, what: &'static str) -> Result<KeyPair, InitError> {
    let pem = std::fs::read_to_string(path).map_err(|source| InitError::Io {
        path: path.to_owned(),
        source,
    })?;
    KeyPair::from_pem(&pem).map_err(|source| InitError::Certificate { what, source })
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// The end of every config `init` writes: the catalog, open until an entry is added
/// (a test parses the example entry uncommented).
const CATALOG: &str = "\
# The event type catalog. Without [[event_types]] entries it is open: any well-formed
# event type may be posted and subscribed to. With entries, an exact type that is not
# listed is refused. Built in, each with scope \"subscriptions:read\":
# hookd.subscription.disabled, hookd.delivery.failed and hookd.ping. Keep the
# catalog last: TOML puts every key written below [[event_types]] into its last entry.
# [[event_types]]
# name = \"v2.export-job.created\"
# description = \"The customer's accounting data was exported.\"
# scope = \"export-jobs:read\"
";

/// The config `init` writes: only what differs from the defaults, plus pointers.
fn config_text(dev: bool) -> String {
    let (mode, listen, delivery) = if dev {
        (
            "development (`hookd serve --dev`)",
            "127.0.0.1:8443",
            "\n[delivery]\n\
             # Deliveries to receivers on this machine (`hookd listen`) are allowed and trust\n\
             # the local CA, so the development certificate works end to end.\n\
             extra_ca_file = \"tls/ca.pem\"\n\
             allow_networks = [\"127.0.0.0/8\", \"::1/128\"]\n",
        )
    } else {
        ("production", "0.0.0.0:8443", "")
    };
    format!(
        "# hookd configuration written by `hookd init` for {mode}.\n\
         # Every key, its default and its reason: config.example.toml. Relative paths are\n\
         # relative to this file's folder. Check changes with `hookd check-config`.\n\
         \n\
         [server]\n\
         listen = \"{listen}\"\n\
         plaintext = false\n\
         tls_cert = \"tls/cert.pem\"\n\
         tls_key = \"tls/key.pem\"\n\
         \n\
         [storage]\n\
         path = \"data/hookd.redb\"\n\
         \n\
         [secrets]\n\
         master_key_file = \"master.key\"\n\
         admin_token_file = \"admin.token\"\n\
         {delivery}\n\
         {CATALOG}"
    )
}

#[cfg(test)]
mod tests;
