//! The connection pool: `[storage.postgres]` in, a `deadpool_postgres::Pool` out, with
//! the password from its file, TLS as the url's `sslmode` says (rustls with the ring
//! provider, like the rest of hookd), and every wait bounded: connecting, waiting for a
//! free connection, each statement, and a transaction left idle by a stuck node.
//! Building the pool opens no connection; the first `get` does.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::PostgresError;
use crate::config::{Postgres, SslMode};
use crate::tls::{load_certs, provider};

/// A database in the same region completes TCP and TLS handshakes in milliseconds; 10 s
/// leaves room for a failover's address change without hanging a start or a request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// No statement hookd sends should run for more than a fraction of a second; one stuck
/// behind a lock must fail and give its connection back rather than pin the pool.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// A transaction left open (a node stalled between statements) holds row locks other
/// nodes wait on; the server ends it after this.
const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Every statement is planned for its own parameters. A connection prepares its
/// statements once and PostgreSQL then settles on a generic plan, made for the table
/// sizes of that moment: a writer prepared while `deliveries` was small went on
/// scanning it whole for each `id = ANY($1)` after it had grown (8.5 ms per outcome
/// batch's read at 19,000 rows, 0.25 ms planned each time; `bench cluster`).
const PLAN_CACHE_MODE: &str = "force_custom_plan";
/// How long a caller waits for a free connection when all `pool_size` are busy: as long
/// as one statement may run, so a full pool shows as an error, not a hang.
const POOL_WAIT: Duration = STATEMENT_TIMEOUT;
/// A connection whose database vanished (failover, a cut network) is noticed by TCP
/// keepalives within about idle + retries x interval = 60 s, not the kernel's 2 hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;

/// The pool for `config` (whose url must be set: `Config::validate` checked it).
pub fn pool(config: &Postgres) -> Result<Pool, PostgresError> {
    let (client, tls) = settings(config)?;
    let manager = Manager::from_config(
        client,
        tls,
        ManagerConfig {
            // A closed connection is dropped when it comes back; one the server ended
            // while idle fails its next statement, and the caller retries as it would
            // any failed statement.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(config.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .build()?)
}

/// One connection outside the pool, for a task that holds it open (LISTEN): the
/// client, and the connection, which the caller drives (it yields the notifications).
pub async fn connect(
    config: &Postgres,
) -> Result<
    (
        tokio_postgres::Client,
        tokio_postgres::Connection<tokio_postgres::Socket, RustlsStream>,
    ),
    PostgresError,
> {
    let (client, tls) = settings(config)?;
    Ok(client.connect(tls).await?)
}

/// The stream of a connection `connect` made.
pub type RustlsStream =
    <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>>::Stream;

/// The client settings (password, timeouts, keepalives, TLS mode) and TLS connector
/// every connection to the database uses.
fn settings(
    config: &Postgres,
) -> Result<(tokio_postgres::Config, MakeRustlsConnect), PostgresError> {
    let target = config.target().map_err(PostgresError::Url)?;
    let node = config.node_name().map_err(PostgresError::NodeName)?;
    let mut client = target.client;
    if let Some(path) = &config.password_file {
        client.password(read_password(path)?);
    }
    if client.get_connect_timeout().is_none() {
        client.connect_timeout(CONNECT_TIMEOUT);
    }
    let mut options = client.get_options().unwrap_or_default().to_owned();
    for (setting, value) in [
        (
            "statement_timeout",
            STATEMENT_TIMEOUT.as_millis().to_string(),
        ),
        (
            "idle_in_transaction_session_timeout",
            IDLE_IN_TRANSACTION_TIMEOUT.as_millis().to_string(),
        ),
        ("plan_cache_mode", PLAN_CACHE_MODE.to_owned()),
    ] {
        // An operator's own (shorter, say) setting in the url's options stands.
        if !options.contains(setting) {
            options.push_str(&format!(" -c {setting}={value}"));
        }
    }
    client.options(options.trim_start());
    if client.get_application_name().is_none() {
        // pg_stat_activity then tells which node holds which connection.
        client.application_name(format!("hookd {node}"));
    }
    client
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .keepalives_interval(KEEPALIVE_INTERVAL)
        .keepalives_retries(KEEPALIVE_RETRIES);
    client.ssl_mode(match target.ssl_mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        _ => tokio_postgres::config::SslMode::Require,
    });
    let tls = MakeRustlsConnect::new(tls_config(target.ssl_mode, config.ca_file.as_deref())?);
    Ok((client, tls))
}

/// The password: the file's text without surrounding whitespace (its newline).
fn read_password(path: &Path) -> Result<Vec<u8>, PostgresError> {
    let text = std::fs::read_to_string(path).map_err(|source| PostgresError::PasswordFile {
        path: path.to_owned(),
        source,
    })?;
    let password = text.trim();
    if password.is_empty() {
        return Err(PostgresError::EmptyPassword {
            path: path.to_owned(),
        });
    }
    Ok(password.as_bytes().to_vec())
}

/// The rustls client side for `mode`. Trust is `ca_file` when set, otherwise the system
/// roots. `Disable` never makes a handshake; its config only satisfies the type.
fn tls_config(mode: SslMode, ca_file: Option<&Path>) -> Result<ClientConfig, PostgresError> {
    let provider = provider();
    let algorithms = provider.signature_verification_algorithms;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(crate::tls::TlsError::from)?;
    let verifier = |roots: Option<RootCertStore>| {
        Arc::new(Verifier {
            roots: roots.map(Arc::new),
            algorithms,
        })
    };
    let config = match (mode, ca_file) {
        (SslMode::Disable, _) => builder.with_root_certificates(RootCertStore::empty()),
        (SslMode::VerifyFull, _) => builder.with_root_certificates(roots(ca_file)?),
        // require with a CA file checks the chain, as libpq's does with a root file.
        (SslMode::VerifyCa, _) | (SslMode::Require, Some(_)) => builder
            .dangerous()
            .with_custom_certificate_verifier(verifier(Some(roots(ca_file)?))),
        (SslMode::Require, None) => builder
            .dangerous()
            .with_custom_certificate_verifier(verifier(None)),
    };
    Ok(config.with_no_client_auth())
}

fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, PostgresError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in load_certs(path)? {
                roots.add(cert).map_err(crate::tls::TlsError::from)?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for error in &native.errors {
                tracing::warn!(%error, "skipping an unreadable system root certificate");
            }
            roots.add_parsable_certificates(native.certs);
        }
    }
    Ok(roots)
}

/// The server certificate checks of `verify-ca` (the chain, not the name) and of
/// `require` without a CA file (`roots: None`: any certificate, for encryption only).
/// Handshake signatures are always checked: the server holds the key it presents.
#[derive(Debug)]
struct Verifier {
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
