//! The packaged config and unit agree with the code: the config parses and names
//! production paths (keys under /etc/hookd, the database under /var/lib/hookd, the only
//! folder the unit lets the service write), and the unit's exit status and config path
//! are the binary's. packaging/test.sh proves the same on an installed system; this
//! catches drift in seconds.

use std::path::Path;

use hookd::cli::EX_CONFIG;
use hookd::config::{self, Config};

fn packaged(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_packaged_config_parses_and_names_production_paths() {
    let config = Config::from_toml(&packaged("hookd.toml"), Path::new("/nonexistent")).unwrap();
    assert_eq!(config.storage.path, Path::new("/var/lib/hookd/hookd.redb"));
    assert_eq!(
        config.secrets.master_key_file,
        Path::new("/etc/hookd/master.key")
    );
    assert_eq!(
        config.secrets.admin_token_file,
        Path::new("/etc/hookd/admin.token")
    );
    // `hookd init --missing-only` puts the CA beside the certificate: /etc/hookd/tls.
    assert_eq!(config.server.tls_cert, Path::new("/etc/hookd/tls/cert.pem"));
    assert_eq!(config.server.tls_key, Path::new("/etc/hookd/tls/key.pem"));
    assert!(!config.server.plaintext);
}

#[test]
fn the_unit_runs_the_packaged_config_and_does_not_restart_on_a_config_error() {
    let unit = packaged("hookd.service");
    let has = |line: &str| unit.lines().any(|l| l == line);
    assert!(has("Type=notify"));
    assert!(has(&format!(
        "ExecStart=/usr/bin/hookd serve --config {}",
        config::DEFAULT_PATH
    )));
    assert!(has(&format!(
        "ExecReload=/usr/bin/hookd check-config --config {}",
        config::DEFAULT_PATH
    )));
    assert!(has(&format!("RestartPreventExitStatus={EX_CONFIG}")));
    assert!(has("StateDirectory=hookd"));
}
