//! The pool against a real PostgreSQL (`testdb`, the integration tests' harness): the
//! password comes from its file, and TLS follows the url's sslmode. The helpers here
//! serve `tests_schema.rs` too.

pub(super) use crate::store::testdb;

use std::path::PathBuf;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use super::*;
use crate::config::Postgres;
use testdb::{PASSWORD, ServerTls, TempPostgres};

/// How long a test waits for the database to answer.
const WAIT: Duration = Duration::from_secs(30);

pub(super) fn settings(url: String) -> Postgres {
    Postgres {
        url: Some(url),
        node_name: Some("test-node".to_owned()),
        ..Postgres::default()
    }
}

/// Settings for the `hookd` role on `database`, its password in a file beside the server.
pub(super) fn hookd(pg: &TempPostgres, database: &str) -> Postgres {
    let password_file = pg.dir().join("hookd.password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    Postgres {
        password_file: Some(password_file),
        ..settings(pg.hookd_url(database))
    }
}

pub(super) async fn client(
    settings: &Postgres,
) -> Result<deadpool_postgres::Client, PostgresError> {
    let pool = pool(settings)?;
    Ok(tokio::time::timeout(WAIT, pool.get()).await.unwrap()?)
}

pub(super) async fn scalar<T>(client: &deadpool_postgres::Client, sql: &str) -> T
where
    T: for<'a> tokio_postgres::types::FromSql<'a>,
{
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn the_password_comes_from_its_file_and_stays_out_of_errors() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let database = pg.create_database();
    let right = hookd(&pg, &database);
    let shown = format!("{:?}", pool(&right).unwrap());
    assert!(
        shown.contains("test-node") && !shown.contains(PASSWORD),
        "{shown}"
    );
    let client = client(&right).await.unwrap();
    assert_eq!(
        scalar::<String>(&client, "SELECT current_user::text").await,
        "hookd"
    );
    let name: String = scalar(&client, "SELECT current_setting('application_name')").await;
    assert_eq!(name, "hookd test-node");
    let timeout: String = scalar(&client, "SHOW statement_timeout").await;
    assert_eq!(timeout, "30s");
    let plans: String = scalar(&client, "SHOW plan_cache_mode").await;
    assert_eq!(plans, "force_custom_plan");

    let wrong_password = "not-the-password-4471";
    let wrong_file = pg.dir().join("wrong.password");
    std::fs::write(&wrong_file, wrong_password).unwrap();
    let wrong = Postgres {
        password_file: Some(wrong_file),
        ..right.clone()
    };
    let error = client_error(&wrong).await;
    assert!(error.contains("password authentication failed"), "{error}");
    assert!(
        !error.contains(wrong_password) && !error.contains(PASSWORD),
        "{error}"
    );

    let none = Postgres {
        password_file: None,
        ..right.clone()
    };
    let error = client_error(&none).await;
    assert!(error.contains("password"), "{error}");

    let missing = Postgres {
        password_file: Some(PathBuf::from("/nonexistent/hookd.password")),
        ..right.clone()
    };
    let error = pool(&missing).unwrap_err().to_string();
    assert!(
        error.starts_with(
            "storage.postgres.password_file = /nonexistent/hookd.password: cannot read"
        ),
        "{error}"
    );
    let blank_file = pg.dir().join("blank.password");
    std::fs::write(&blank_file, " \n").unwrap();
    let blank = Postgres {
        password_file: Some(blank_file),
        ..right
    };
    assert!(matches!(
        pool(&blank),
        Err(PostgresError::EmptyPassword { .. })
    ));
}

#[tokio::test]
async fn the_pool_reconnects_once_a_stopped_database_is_back() {
    let Some(mut pg) = TempPostgres::start() else {
        return;
    };
    let database = pg.create_database();
    let pool = pool(&hookd(&pg, &database)).unwrap();
    let select = async |pool: &deadpool_postgres::Pool| -> Result<i32, PostgresError> {
        let client = tokio::time::timeout(WAIT, pool.get()).await.unwrap()?;
        Ok(client.query_one("SELECT n FROM kept", &[]).await?.get(0))
    };
    let client = pool.get().await.unwrap();
    client
        .batch_execute("CREATE TABLE kept (n integer); INSERT INTO kept VALUES (7)")
        .await
        .unwrap();
    drop(client);
    let port = pg.port();
    pg.stop();
    // The pooled connection is dead and a new one is refused: an error, not a hang.
    let error = select(&pool).await.unwrap_err();
    assert!(
        matches!(
            error,
            PostgresError::Query { .. } | PostgresError::Connect { .. }
        ),
        "{error:?}"
    );
    pg.start_again();
    assert_eq!(pg.port(), port);
    assert_eq!(select(&pool).await.unwrap(), 7);
}

/// The error of getting a connection, with its whole chain and its `Debug` form.
async fn client_error(settings: &Postgres) -> String {
    let error = client(settings).await.unwrap_err();
    format!("{error} / {error:?}")
}

#[tokio::test]
async fn a_unix_socket_needs_no_tls() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let socket = pg.socket_dir().display().to_string().replace('/', "%2F");
    let url = format!("postgres://postgres@{socket}:{}/postgres", pg.port());
    let client = client(&settings(url)).await.unwrap();
    let ssl: bool = scalar(
        &client,
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .await;
    assert!(!ssl);
    let address: Option<String> = scalar(&client, "SELECT inet_client_addr()::text").await;
    assert_eq!(address, None, "a unix socket has no client address");
}

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

impl Ca {
    /// A CA named `name` (two CAs of one name would tell apart only by signature).
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let pem = params.self_signed(&key).unwrap().pem();
        Self { params, key, pem }
    }

    /// A server certificate for `names` only.
    fn leaf(&self, names: &[&str]) -> ServerTls {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params
            .signed_by(&key, &Issuer::from_params(&self.params, &self.key))
            .unwrap();
        ServerTls {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

#[tokio::test]
async fn tls_follows_the_sslmode_of_the_url() {
    let ca = Ca::new("hookd test database CA");
    // Named `localhost` only: connecting to 127.0.0.1 tells verify-full from verify-ca.
    let Some(pg) = TempPostgres::start_tls(&ca.leaf(&["localhost"])) else {
        return;
    };
    let database = pg.create_database();
    let ca_file = pg.dir().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let other_ca_file = pg.dir().join("other-ca.pem");
    std::fs::write(&other_ca_file, Ca::new("another CA").pem).unwrap();
    let port = pg.port();
    let with = |host: &str, sslmode: &str, ca: Option<&PathBuf>| {
        let query = if sslmode.is_empty() {
            String::new()
        } else {
            format!("?sslmode={sslmode}")
        };
        Postgres {
            url: Some(format!("postgres://hookd@{host}:{port}/{database}{query}")),
            ca_file: ca.cloned(),
            ..hookd(&pg, &database)
        }
    };
    let encrypted = async |settings: Postgres| {
        let client = client(&settings).await.unwrap();
        let ssl: bool = scalar(
            &client,
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        )
        .await;
        ssl
    };
    assert!(encrypted(with("localhost", "verify-full", Some(&ca_file))).await);
    assert!(encrypted(with("127.0.0.1", "verify-ca", Some(&ca_file))).await);
    assert!(encrypted(with("127.0.0.1", "require", Some(&ca_file))).await);
    assert!(encrypted(with("127.0.0.1", "require", None)).await);
    assert!(!encrypted(with("127.0.0.1", "disable", Some(&ca_file))).await);
    assert!(
        !encrypted(with("127.0.0.1", "", None)).await,
        "loopback: plain by default"
    );

    // The name is checked by verify-full only; the chain by every verify mode.
    let error = client_error(&with("127.0.0.1", "verify-full", Some(&ca_file))).await;
    assert!(error.contains("NotValidForName"), "{error}");
    for mode in ["verify-full", "verify-ca", "require"] {
        let error = client_error(&with("localhost", mode, Some(&other_ca_file))).await;
        assert!(error.contains("UnknownIssuer"), "{mode}: {error}");
    }
    // Without ca_file, verify-full trusts the system roots, which never signed this.
    let error = client_error(&with("localhost", "verify-full", None)).await;
    assert!(error.contains("UnknownIssuer"), "{error}");
}
