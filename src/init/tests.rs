use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::{ServerName, UnixTime};

use super::*;

const DEV: InitOptions = InitOptions {
    missing_only: false,
    dev: true,
};
const MISSING_ONLY: InitOptions = InitOptions {
    missing_only: true,
    dev: false,
};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// Verifies `cert` for each server name with only `ca` as trust anchor, as a client would.
fn assert_signed_by(cert: &Path, ca: &Path) {
    let mut roots = RootCertStore::empty();
    for ca in crate::tls::load_certs(ca).unwrap() {
        roots.add(ca).unwrap();
    }
    let verifier =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crate::tls::provider())
            .build()
            .unwrap();
    let chain = crate::tls::load_certs(cert).unwrap();
    for name in SERVER_NAMES {
        let name = ServerName::try_from(name).unwrap();
        verifier
            .verify_server_cert(&chain[0], &[], &name, &[], UnixTime::now())
            .unwrap_or_else(|error| panic!("{} for {name:?}: {error}", cert.display()));
    }
    let other = ServerName::try_from("example.com").unwrap();
    assert!(
        verifier
            .verify_server_cert(&chain[0], &[], &other, &[], UnixTime::now())
            .is_err()
    );
}

#[test]
fn init_creates_a_working_instance_with_private_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("instance");
    let report = init(&dir, &DEV).unwrap();
    assert_eq!(report.config, dir.join("hookd.toml"));
    assert_eq!(report.ca_cert, dir.join("tls/ca.pem"));
    assert_eq!(report.admin_token_file, dir.join("admin.token"));
    for (file, expected) in [
        ("tls/ca.key", 0o600),
        ("tls/key.pem", 0o600),
        ("master.key", 0o600),
        ("admin.token", 0o600),
        ("tls/ca.pem", 0o644),
        ("tls/cert.pem", 0o644),
        ("hookd.toml", 0o640),
        ("", 0o750),
        ("tls", 0o750),
        ("data", 0o750),
    ] {
        let path = dir.join(file);
        assert_eq!(mode(&path), expected, "{}", path.display());
        if !file.is_empty() {
            assert!(
                report.created.contains(&path),
                "{} not reported",
                path.display()
            );
        }
    }
    assert!(
        std::fs::read_dir(dir.join("data"))
            .unwrap()
            .next()
            .is_none()
    );

    let config = Config::load(&report.config).unwrap();
    assert_eq!(config.server.listen, "127.0.0.1:8443".parse().unwrap());
    assert_eq!(config.delivery.extra_ca_file, Some(dir.join("tls/ca.pem")));
    assert_eq!(config.delivery.allow_networks.len(), 2);
    assert!(config.event_types.is_empty(), "the catalog ships open");
    assert_eq!(config.master_key().unwrap().len(), 32);
    let token = config.admin_token().unwrap();
    assert!(token.expose().starts_with("hka_") && token.expose().len() == 4 + 43);
    crate::tls::server_config(&config.server.tls_cert, &config.server.tls_key).unwrap();
    crate::tls::client_config(config.delivery.extra_ca_file.as_deref()).unwrap();
    assert_signed_by(&config.server.tls_cert, &report.ca_cert);
}

#[test]
fn the_production_config_listens_everywhere_without_loopback_exemptions() {
    let tmp = tempfile::tempdir().unwrap();
    let options = InitOptions {
        missing_only: false,
        dev: false,
    };
    let report = init(tmp.path(), &options).unwrap();
    let config = Config::load(&report.config).unwrap();
    assert_eq!(config.server.listen, "0.0.0.0:8443".parse().unwrap());
    assert!(config.delivery.allow_networks.is_empty());
    assert_eq!(config.delivery.extra_ca_file, None);
}

#[test]
fn a_second_init_refuses_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), &DEV).unwrap();
    let before = snapshot(tmp.path());
    let error = init(tmp.path(), &DEV).unwrap_err();
    assert!(matches!(&error, InitError::Exists { path } if path == &tmp.path().join("hookd.toml")));
    assert_eq!(snapshot(tmp.path()), before);

    // Any one existing file is enough to refuse.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("admin.token"), "mine").unwrap();
    let error = init(other.path(), &DEV).unwrap_err();
    assert!(
        error.to_string().contains("admin.token: already exists"),
        "{error}"
    );
    assert_eq!(std::fs::read_dir(other.path()).unwrap().count(), 1);
}

#[test]
fn missing_only_recreates_what_is_absent_and_leaves_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), &DEV).unwrap();
    let token = tmp.path().join("admin.token");
    std::fs::remove_file(&token).unwrap();
    let mut before = snapshot(tmp.path());
    let report = init(tmp.path(), &MISSING_ONLY).unwrap();
    assert_eq!(report.created, std::slice::from_ref(&token));
    let mut after = snapshot(tmp.path());
    assert!(after.remove(&token).unwrap().starts_with(b"hka_"));
    assert_eq!(mode(&token), 0o600);
    before.remove(&token);
    assert_eq!(after, before);

    // Nothing missing: nothing created, nothing changed.
    let report = init(tmp.path(), &MISSING_ONLY).unwrap();
    assert!(report.created.is_empty());
}

#[test]
fn missing_only_signs_a_new_certificate_with_the_existing_ca() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), &DEV).unwrap();
    let tls = tmp.path().join("tls");
    let ca = std::fs::read(tls.join("ca.pem")).unwrap();
    let old_cert = std::fs::read(tls.join("cert.pem")).unwrap();
    std::fs::remove_file(tls.join("cert.pem")).unwrap();
    std::fs::remove_file(tls.join("key.pem")).unwrap();
    let report = init(tmp.path(), &MISSING_ONLY).unwrap();
    assert_eq!(report.created, [tls.join("key.pem"), tls.join("cert.pem")]);
    assert_eq!(std::fs::read(tls.join("ca.pem")).unwrap(), ca);
    assert_ne!(std::fs::read(tls.join("cert.pem")).unwrap(), old_cert);
    assert_signed_by(&tls.join("cert.pem"), &tls.join("ca.pem"));
    crate::tls::server_config(&tls.join("cert.pem"), &tls.join("key.pem")).unwrap();

    // A surviving key gets a certificate instead of being replaced.
    let key = std::fs::read(tls.join("key.pem")).unwrap();
    std::fs::remove_file(tls.join("cert.pem")).unwrap();
    init(tmp.path(), &MISSING_ONLY).unwrap();
    assert_eq!(std::fs::read(tls.join("key.pem")).unwrap(), key);
    crate::tls::server_config(&tls.join("cert.pem"), &tls.join("key.pem")).unwrap();

    // A certificate without its key cannot be repaired without overwriting.
    std::fs::remove_file(tls.join("key.pem")).unwrap();
    assert!(matches!(
        init(tmp.path(), &MISSING_ONLY),
        Err(InitError::Unpaired { .. })
    ));
}

#[test]
fn missing_only_refuses_a_ca_key_that_is_not_the_cas() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), &DEV).unwrap();
    let tls = tmp.path().join("tls");
    std::fs::remove_file(tls.join("ca.key")).unwrap();
    std::fs::copy(tls.join("key.pem"), tls.join("ca.key")).unwrap();
    std::fs::remove_file(tls.join("cert.pem")).unwrap();
    std::fs::remove_file(tls.join("key.pem")).unwrap();
    let error = init(tmp.path(), &MISSING_ONLY).unwrap_err();
    assert!(matches!(error, InitError::KeyMismatch { .. }), "{error}");
}

#[test]
fn missing_only_uses_the_paths_the_config_names() {
    let etc = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let state = state.path().join("lib");
    let text = format!(
        "[server]\ntls_cert = \"{0}/tls/cert.pem\"\ntls_key = \"{0}/tls/key.pem\"\n\
         [storage]\npath = \"{0}/db/hookd.redb\"\n\
         [secrets]\nmaster_key_file = \"{0}/master.key\"\nadmin_token_file = \"{0}/admin.token\"\n",
        state.display()
    );
    std::fs::write(etc.path().join("hookd.toml"), &text).unwrap();
    let report = init(etc.path(), &MISSING_ONLY).unwrap();
    assert_eq!(
        std::fs::read_to_string(etc.path().join("hookd.toml")).unwrap(),
        text
    );
    assert_eq!(
        std::fs::read_dir(etc.path()).unwrap().count(),
        1,
        "only the config in /etc"
    );
    for file in [
        "master.key",
        "admin.token",
        "tls/ca.pem",
        "tls/ca.key",
        "tls/cert.pem",
        "tls/key.pem",
    ] {
        assert!(report.created.contains(&state.join(file)), "{file}");
    }
    assert!(state.join("db").is_dir());
    assert_eq!(report.admin_token_file, state.join("admin.token"));
    let config = Config::load(&etc.path().join("hookd.toml")).unwrap();
    config.master_key().unwrap();
    config.admin_token().unwrap();
    assert_signed_by(&config.server.tls_cert, &state.join("tls/ca.pem"));
}

#[test]
fn missing_only_without_a_config_uses_the_default_names_and_writes_no_config() {
    let tmp = tempfile::tempdir().unwrap();
    let report = init(tmp.path(), &MISSING_ONLY).unwrap();
    assert!(!tmp.path().join("hookd.toml").exists());
    assert!(report.created.contains(&tmp.path().join("tls/cert.pem")));
    assert!(tmp.path().join("master.key").is_file());
}

#[test]
fn dev_dir_is_hookd_dev_in_the_working_directory() {
    assert_eq!(dev_dir(), Path::new("./hookd-dev"));
}

#[test]
fn the_commented_catalog_entry_is_valid_once_uncommented() {
    let text = config_text(false);
    let start = text.find("\n# [[event_types]]\n").unwrap();
    let uncommented: String = text[..start]
        .lines()
        .chain(
            text[start..]
                .lines()
                .map(|l| l.strip_prefix("# ").unwrap_or(l)),
        )
        .map(|l| format!("{l}\n"))
        .collect();
    let config = Config::from_toml(&uncommented, Path::new("/etc/hookd")).unwrap();
    assert_eq!(config.event_types.len(), 1);
    assert_eq!(config.event_types[0].name, "v2.export-job.created");
    assert_eq!(config.event_types[0].scope, "export-jobs:read");
}
