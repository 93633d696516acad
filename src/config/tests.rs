use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::values::parse_size;
use super::*;

pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new(""))
}

/// The key and reason of a validation failure; panics on anything else.
pub(super) fn invalid(text: &str) -> (String, String) {
    match parse(text) {
        Err(ConfigError::Invalid { key, reason, .. }) => (key, reason),
        other => panic!("expected a validation error for {text:?}, got {other:?}"),
    }
}

pub(super) fn assert_invalid(text: &str, expected_key: &str) {
    let (key, reason) = invalid(text);
    assert_eq!(key, expected_key, "reason: {reason}");
}

#[test]
fn defaults_match_the_documented_values_and_validate() {
    let config = Config::default();
    config.validate().unwrap();
    assert_eq!(config.server.listen, "0.0.0.0:8443".parse().unwrap());
    assert_eq!(config.server.tls_cert, Path::new("tls/cert.pem"));
    assert_eq!(config.server.tls_key, Path::new("tls/key.pem"));
    assert!(!config.server.plaintext);
    assert_eq!(
        config.server.metrics_listen,
        "127.0.0.1:9464".parse().unwrap()
    );
    assert_eq!(config.server.max_body_bytes, 262_144);
    assert_eq!(config.server.max_batch_bytes, 8_388_608);
    assert_eq!(config.server.shutdown_grace, Duration::from_secs(10));
    assert_eq!(config.log.level, "info");
    assert_eq!(config.storage.path, Path::new("data/hookd.redb"));
    assert_eq!(config.storage.retention, Duration::from_secs(30 * 86_400));
    assert_eq!(config.storage.cache_size, 32 << 20);
    assert_eq!(config.storage.backend, Backend::Redb);
    let pg = &config.storage.postgres;
    assert_eq!((pg.url.as_deref(), pg.node_name.as_deref()), (None, None));
    assert_eq!(
        (pg.password_file.as_deref(), pg.ca_file.as_deref()),
        (None, None)
    );
    assert_eq!(pg.pool_size, 16);
    assert_eq!(pg.lease, Duration::from_secs(15));
    assert_eq!(config.secrets.master_key_file, Path::new("master.key"));
    assert_eq!(config.secrets.admin_token_file, Path::new("admin.token"));
    let d = &config.delivery;
    assert_eq!(d.timeout, Duration::from_secs(15));
    assert_eq!(d.max_age, Duration::from_secs(72 * 3600));
    let hours: Vec<u64> = d.schedule.iter().map(Duration::as_secs).collect();
    assert_eq!(
        hours,
        [5, 300, 1800, 7200, 18_000, 36_000, 50_400, 72_000, 72_000]
    );
    assert!(!d.allow_http);
    assert_eq!(d.extra_ca_file, None);
    assert!(d.allow_networks.is_empty());
    assert_eq!((d.concurrency, d.per_endpoint_concurrency), (512, 16));
    assert_eq!(d.disable_after, Duration::from_secs(5 * 86_400));
    assert_eq!(d.rotation_overlap, Duration::from_secs(86_400));
    assert_eq!((d.proxy.as_deref(), d.source_address), (None, None));
    assert_eq!(config.auth.jwt, None);
    assert!(config.event_types.is_empty());
    assert_eq!(config.path, None);
    // An empty file is the defaults.
    assert_eq!(parse("").unwrap(), config);
}

#[test]
fn the_example_file_sets_every_key_to_its_default() {
    let example = parse(include_str!("../../config.example.toml")).unwrap();
    let defaults = Config::default();
    assert_eq!(example.server, defaults.server);
    assert_eq!(example.log, defaults.log);
    assert_eq!(example.storage, defaults.storage);
    assert_eq!(example.secrets, defaults.secrets);
    assert_eq!(example.delivery, defaults.delivery);
    assert_eq!(example.auth, defaults.auth);
    assert_eq!(example.console, defaults.console);
    assert!(
        example.event_types.is_empty(),
        "the example's catalog is open"
    );
}

#[test]
fn the_commented_catalog_entry_of_the_example_is_valid_once_uncommented() {
    let example = include_str!("../../config.example.toml");
    let start = example.find("\n# [[event_types]]\n").unwrap();
    let entry: String = example[start..]
        .lines()
        .map(|line| format!("{}\n", line.strip_prefix("# ").unwrap_or(line)))
        .collect();
    let config = parse(&format!("{}{entry}", &example[..start])).unwrap();
    assert_eq!(config.event_types.len(), 1);
    assert_eq!(config.event_types[0].name, "v2.export-job.created");
    assert_eq!(config.event_types[0].scope, "export-jobs:read");
}

#[test]
fn the_commented_jwt_section_of_the_example_is_valid_once_uncommented() {
    let example = include_str!("../../config.example.toml");
    let start = example.find("# [auth.jwt]").unwrap();
    let end = example.find("\n\n# The event type catalog").unwrap();
    let section: String = example[start..end]
        .lines()
        .map(|line| line.strip_prefix("# ").unwrap_or(line))
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            line.replace(
                "hs256_secret_file = \"\"",
                "hs256_secret_file = \"jwt.key\"",
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let config = parse(&section).unwrap();
    let jwt = config.auth.jwt.unwrap();
    assert_eq!(jwt.issuer, "https://auth.example.com");
    assert_eq!(jwt.hs256_secret_file, Some(PathBuf::from("jwt.key")));
    assert_eq!(jwt.rs256_public_key_file, None);
}

#[test]
fn durations_and_sizes_parse() {
    let config = parse(
        r#"
        [server]
        shutdown_grace = "500ms"
        max_body_bytes = "64KiB"
        max_batch_bytes = 1048576
        [storage]
        retention = "30d"
        cache_size = "1GiB"
        [delivery]
        schedule = ["1s", "2m", "3h"]
        "#,
    )
    .unwrap();
    assert_eq!(config.server.shutdown_grace, Duration::from_millis(500));
    assert_eq!(config.server.max_body_bytes, 65_536);
    assert_eq!(config.server.max_batch_bytes, 1 << 20);
    assert_eq!(config.storage.retention, Duration::from_secs(30 * 86_400));
    assert_eq!(config.storage.cache_size, 1 << 30);
    assert_eq!(
        config.delivery.schedule,
        [
            Duration::from_secs(1),
            Duration::from_secs(120),
            Duration::from_secs(3 * 3600)
        ]
    );
    assert_eq!(parse_size("32MiB"), Ok(32 << 20));
    assert_eq!(parse_size("10 B"), Ok(10));
    assert_eq!(parse_size("7"), Ok(7));
    assert!(parse_size("32MB").unwrap_err().contains("MiB"));
    assert!(parse_size("MiB").is_err());
    assert!(parse_size("99999999999GiB").is_err());
}

#[test]
fn bad_values_name_the_key_line_and_column() {
    let text = "[delivery]\ntimeout = \"soon\"\n";
    let Err(ConfigError::Parse {
        line,
        column,
        key,
        message,
        ..
    }) = parse(text)
    else {
        panic!("expected a parse error");
    };
    assert_eq!((line, column), (2, 11));
    assert_eq!(key, "delivery.timeout");
    assert!(message.contains("invalid duration \"soon\""), "{message}");

    let Err(error) = parse("[storage]\ncache_size = -1\n") else {
        panic!("expected a parse error");
    };
    let shown = error.to_string();
    assert!(
        shown.contains("line 2, column 14: storage.cache_size: invalid size -1"),
        "{shown}"
    );

    let Err(error) = parse("[delivery]\nallow_networks = [\"10.0.0.0/33\"]\n") else {
        panic!("expected a parse error");
    };
    assert!(
        error.to_string().contains("delivery.allow_networks"),
        "{error}"
    );
}

#[test]
fn unknown_keys_and_syntax_errors_report_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookd.toml");
    std::fs::write(
        &path,
        "# comment\n[server]\nlisten = \"127.0.0.1:1\"\nlistn = 1\n",
    )
    .unwrap();
    let error = Config::load(&path).unwrap_err();
    let ConfigError::Parse {
        line, column, key, ..
    } = &error
    else {
        panic!("expected a parse error, got {error:?}");
    };
    assert_eq!((*line, *column, key.as_str()), (4, 1, "server.listn"));
    let shown = error.to_string();
    assert!(
        shown.starts_with(&format!(
            "{}: line 4, column 1: server.listn: unknown field `listn`",
            path.display()
        )),
        "{shown}"
    );
    assert!(!shown.contains('\n'), "one line: {shown}");

    let Err(ConfigError::Parse {
        line, column, key, ..
    }) = parse("[servr]\nlisten = 1\n")
    else {
        panic!("expected a parse error");
    };
    assert_eq!((line, column, key.as_str()), (1, 2, "servr"));

    let Err(ConfigError::Parse { line, key, .. }) = parse("[log]\nlevel = \"info\nx = 1\n") else {
        panic!("expected a parse error");
    };
    assert_eq!((line, key.as_str()), (2, ""));
}

#[test]
fn relative_paths_resolve_against_the_folder_of_the_file() {
    let config = Config::from_toml(
        r#"
        [server]
        tls_key = "/srv/tls/key.pem"
        [delivery]
        extra_ca_file = "tls/ca.pem"
        "#,
        Path::new("/etc/hookd"),
    )
    .unwrap();
    assert_eq!(config.server.tls_cert, Path::new("/etc/hookd/tls/cert.pem"));
    assert_eq!(config.server.tls_key, Path::new("/srv/tls/key.pem"));
    assert_eq!(config.storage.path, Path::new("/etc/hookd/data/hookd.redb"));
    assert_eq!(
        config.secrets.master_key_file,
        Path::new("/etc/hookd/master.key")
    );
    assert_eq!(
        config.delivery.extra_ca_file,
        Some(PathBuf::from("/etc/hookd/tls/ca.pem"))
    );

    let unset =
        parse("[delivery]\nextra_ca_file = \"\"\nproxy = \"\"\nsource_address = \"\"\n").unwrap();
    assert_eq!(unset.delivery.extra_ca_file, None);
    assert_eq!(unset.delivery.proxy, None);
    assert_eq!(unset.delivery.source_address, None);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookd.toml");
    std::fs::write(
        &path,
        "[auth.jwt]\nissuer = \"i\"\naudience = \"a\"\nes256_public_key_file = \"jwt.pem\"\n",
    )
    .unwrap();
    let loaded = Config::load(&path).unwrap();
    assert_eq!(loaded.path.as_deref(), Some(path.as_path()));
    assert_eq!(
        loaded.secrets.admin_token_file,
        dir.path().join("admin.token")
    );
    let jwt = loaded.auth.jwt.unwrap();
    assert_eq!(jwt.es256_public_key_file, Some(dir.path().join("jwt.pem")));
}

#[test]
fn a_missing_file_is_a_read_error_naming_it() {
    let error = Config::load(Path::new("/nonexistent/hookd.toml")).unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }));
    assert!(
        error
            .to_string()
            .starts_with("/nonexistent/hookd.toml: cannot read")
    );
}

#[test]
fn server_rules() {
    assert_invalid("[server]\nplaintext = true\n", "server.plaintext");
    parse("[server]\nplaintext = true\nlisten = \"127.0.0.1:8080\"\ntls_cert = \"\"\n").unwrap();
    parse("[server]\nplaintext = true\nlisten = \"[::1]:8080\"\n").unwrap();
    assert_invalid("[server]\ntls_cert = \"\"\n", "server.tls_cert");
    assert_invalid("[server]\ntls_key = \"\"\n", "server.tls_key");
    assert_invalid("[server]\nmax_body_bytes = 1023\n", "server.max_body_bytes");
    let (key, reason) =
        invalid("[server]\nmax_body_bytes = \"2MiB\"\nmax_batch_bytes = \"1MiB\"\n");
    assert_eq!(
        (key.as_str(), reason.as_str()),
        (
            "server.max_body_bytes",
            "must be at most server.max_batch_bytes (1048576)"
        )
    );
    assert_invalid(
        "[server]\nmetrics_listen = \"0.0.0.0:8443\"\n",
        "server.metrics_listen",
    );
}

#[test]
fn log_storage_and_secrets_rules() {
    assert_invalid("[log]\nlevel = \"\"\n", "log.level");
    assert_invalid("[log]\nlevel = \"hookd=loud\"\n", "log.level");
    parse("[log]\nlevel = \"hookd=debug,info\"\n").unwrap();
    assert_invalid("[storage]\npath = \"\"\n", "storage.path");
    assert_invalid(
        "[storage]\ncache_size = \"1023KiB\"\n",
        "storage.cache_size",
    );
    parse("[storage]\ncache_size = \"1MiB\"\n").unwrap();
    assert_invalid("[storage]\nretention = \"1d\"\n", "storage.retention");
    assert_invalid(
        "[secrets]\nmaster_key_file = \"\"\n",
        "secrets.master_key_file",
    );
    assert_invalid(
        "[secrets]\nadmin_token_file = \"\"\n",
        "secrets.admin_token_file",
    );
}

#[test]
fn delivery_rules() {
    assert_invalid("[delivery]\ntimeout = \"500ms\"\n", "delivery.timeout");
    assert_invalid("[delivery]\ntimeout = \"6m\"\n", "delivery.timeout");
    assert_invalid("[delivery]\nmax_age = \"0s\"\n", "delivery.max_age");
    assert_invalid("[delivery]\nschedule = []\n", "delivery.schedule");
    assert_invalid(
        "[delivery]\nschedule = [\"5s\", \"0s\"]\n",
        "delivery.schedule[1]",
    );
    assert_invalid("[delivery]\nconcurrency = 0\n", "delivery.concurrency");
    assert_invalid(
        "[delivery]\nper_endpoint_concurrency = 0\n",
        "delivery.per_endpoint_concurrency",
    );
    assert_invalid(
        "[delivery]\ndisable_after = \"0s\"\n",
        "delivery.disable_after",
    );
    let error = parse("[delivery]\nconcurrency = 8\n").unwrap_err();
    assert_eq!(
        error.to_string(),
        "<inline config>: delivery.per_endpoint_concurrency: must be at most delivery.concurrency (8)"
    );
    for proxy in [
        "https://proxy:3128",
        "proxy:3128",
        "http://proxy",
        "http://u:p@proxy:3128",
        "http://proxy:3128/x",
    ] {
        assert_invalid(
            &format!("[delivery]\nproxy = \"{proxy}\"\n"),
            "delivery.proxy",
        );
    }
    let config =
        parse("[delivery]\nproxy = \"http://10.0.0.1:3128\"\nsource_address = \"192.0.2.7\"\n")
            .unwrap();
    assert_eq!(
        config.delivery.proxy.as_deref(),
        Some("http://10.0.0.1:3128")
    );
    assert_eq!(
        config.delivery.source_address,
        Some("192.0.2.7".parse().unwrap())
    );
    assert!(parse("[delivery]\nsource_address = \"nope\"\n").is_err());
}

#[test]
fn jwt_rules() {
    let base = "[auth.jwt]\nissuer = \"https://id\"\naudience = \"hookd\"\n";
    assert_invalid(base, "auth.jwt");
    assert_invalid(
        &format!("{base}hs256_secret_file = \"a\"\nrs256_public_key_file = \"b\"\n"),
        "auth.jwt",
    );
    parse(&format!(
        "{base}rs256_public_key_file = \"b\"\nhs256_secret_file = \"\"\n"
    ))
    .unwrap();
    assert_invalid(
        "[auth.jwt]\naudience = \"a\"\nhs256_secret_file = \"k\"\n",
        "auth.jwt.issuer",
    );
    assert_invalid(
        "[auth.jwt]\nissuer = \"i\"\nhs256_secret_file = \"k\"\n",
        "auth.jwt.audience",
    );
}

#[test]
fn event_type_rules() {
    let entry = |name: &str, scope: &str| {
        format!("[[event_types]]\nname = \"{name}\"\nscope = \"{scope}\"\n")
    };
    assert_invalid(&entry("", "a:read"), "event_types[0].name");
    assert_invalid(&entry("hookd.custom", "a:read"), "event_types[0].name");
    assert_invalid(&entry("v1.*", "a:read"), "event_types[0].name");
    assert_invalid(&entry("v1.a", ""), "event_types[0].scope");
    assert_invalid(&entry("v1.a", "a:read b:read"), "event_types[0].scope");
    let twice = format!("{}{}", entry("v1.a", "a:read"), entry("v1.a", "a:read"));
    let (key, reason) = invalid(&twice);
    assert_eq!(key, "event_types[1].name");
    assert!(reason.contains("twice"));
    let config = parse(&format!(
        "{}{}",
        entry("v1.a", "a:read"),
        entry("v1.b", "b:read")
    ))
    .unwrap();
    assert_eq!(config.event_types[1].name, "v1.b");
}

#[test]
fn cidr_contains_v4_and_v6() {
    let ip = |text: &str| text.parse::<IpAddr>().unwrap();
    let loopback: Cidr = "127.0.0.0/8".parse().unwrap();
    assert!(loopback.contains(ip("127.1.2.3")));
    assert!(!loopback.contains(ip("128.0.0.1")));
    assert!(
        loopback.contains(ip("::ffff:127.0.0.1")),
        "IPv4-mapped IPv6 is the IPv4 address"
    );
    assert!(!loopback.contains(ip("::1")));
    let masked: Cidr = "10.1.2.3/8".parse().unwrap();
    assert_eq!(masked.to_string(), "10.0.0.0/8");
    let host: Cidr = "192.0.2.1".parse().unwrap();
    assert_eq!(host.to_string(), "192.0.2.1/32");
    assert!(host.contains(ip("192.0.2.1")) && !host.contains(ip("192.0.2.2")));
    let all: Cidr = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains(ip("8.8.8.8")) && !all.contains(ip("2001:db8::1")));
    let v6: Cidr = "::1/128".parse().unwrap();
    assert!(v6.contains(ip("::1")) && !v6.contains(ip("::2")));
    let doc: Cidr = "2001:db8::/32".parse().unwrap();
    assert!(doc.contains(ip("2001:db8:ffff::1")) && !doc.contains(ip("2001:db9::1")));
    let bare6: Cidr = "fe80::1".parse().unwrap();
    assert_eq!(bare6.prefix(), 128);
    assert!(matches!(
        "10.0.0.0/33".parse::<Cidr>(),
        Err(CidrError::Prefix { max: 32, .. })
    ));
    assert!(matches!(
        "::/129".parse::<Cidr>(),
        Err(CidrError::Prefix { max: 128, .. })
    ));
    assert!(matches!(
        "nope/8".parse::<Cidr>(),
        Err(CidrError::Address { .. })
    ));
    let config = parse("[delivery]\nallow_networks = [\"127.0.0.0/8\", \"::1/128\"]\n").unwrap();
    assert_eq!(
        config.delivery.allow_networks,
        ["127.0.0.0/8".parse().unwrap(), v6]
    );
}

#[test]
fn master_key_must_be_32_raw_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.secrets.master_key_file = dir.path().join("master.key");
    assert!(matches!(
        config.master_key(),
        Err(ConfigError::SecretFile { .. })
    ));
    std::fs::write(&config.secrets.master_key_file, [9u8; 33]).unwrap();
    let error = config.master_key().unwrap_err();
    assert!(matches!(
        error,
        ConfigError::MasterKeyLength { found: 33, .. }
    ));
    assert!(error.to_string().contains("master.key") && error.to_string().contains("found 33"));
    std::fs::write(&config.secrets.master_key_file, [9u8; 32]).unwrap();
    assert_eq!(config.master_key().unwrap(), [9u8; 32]);
}

#[test]
fn admin_token_is_trimmed_and_long_enough() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.secrets.admin_token_file = dir.path().join("admin.token");
    std::fs::write(&config.secrets.admin_token_file, "  short \n").unwrap();
    assert!(matches!(
        config.admin_token(),
        Err(ConfigError::AdminToken { .. })
    ));
    std::fs::write(&config.secrets.admin_token_file, "hka_0123456789abcdef\n").unwrap();
    assert_eq!(
        config.admin_token().unwrap().expose(),
        "hka_0123456789abcdef"
    );
}

#[test]
fn a_bad_schedule_entry_is_located_at_its_list() {
    let Err(ConfigError::Parse {
        line, column, key, ..
    }) = parse("[delivery]\nschedule = [\"5s\",\n  \"x\"]\n")
    else {
        panic!("expected a parse error");
    };
    // toml reports element errors at the list, not the element.
    assert_eq!((line, column, key.as_str()), (2, 12, "delivery.schedule"));
}
