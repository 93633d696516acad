//! Which configuration file a command reads when `--config` is not given: the
//! `HOOKD_CONFIG` environment variable, then `./hookd-dev/hookd.toml` when it exists
//! (what `hookd serve --dev` made, so the admin commands work from a checkout with no
//! flag), then the packaged `/etc/hookd/hookd.toml`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::config;
use crate::init::dev_dir;

/// The environment variable that names the configuration file.
pub const CONFIG_ENV: &str = "HOOKD_CONFIG";

/// What `--config` says in every command's help.
pub const CONFIG_HELP: &str = "Configuration file [default: $HOOKD_CONFIG, else \
    ./hookd-dev/hookd.toml if it exists, else /etc/hookd/hookd.toml]";

/// The configuration file to read: `explicit` (`--config`) first, then the environment,
/// the development config and the packaged path, in that order.
pub fn config_path(explicit: Option<&Path>) -> PathBuf {
    choose(
        explicit,
        std::env::var_os(CONFIG_ENV),
        &dev_dir().join("hookd.toml"),
    )
}

/// `config_path` with its inputs passed in, so the order is testable without touching
/// the process environment or the working directory.
fn choose(explicit: Option<&Path>, env: Option<OsString>, dev_config: &Path) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_owned();
    }
    // An empty value counts as unset: `HOOKD_CONFIG= hookd ...` is how a shell clears it
    // for one command.
    if let Some(path) = env.filter(|value| !value.is_empty()) {
        return PathBuf::from(path);
    }
    if dev_config.is_file() {
        return dev_config.to_owned();
    }
    PathBuf::from(config::DEFAULT_PATH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_then_the_environment_then_the_dev_config_then_etc() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("hookd-dev/hookd.toml");
        let flag = Path::new("flag.toml");
        let env = || Some(OsString::from("env.toml"));

        // No dev config on disk yet.
        assert_eq!(choose(Some(flag), env(), &dev), flag);
        assert_eq!(choose(None, env(), &dev), Path::new("env.toml"));
        assert_eq!(
            choose(None, None, &dev),
            Path::new(config::DEFAULT_PATH),
            "a dev config that does not exist is skipped"
        );
        assert_eq!(
            choose(None, Some(OsString::new()), &dev),
            Path::new(config::DEFAULT_PATH),
            "an empty HOOKD_CONFIG is unset"
        );

        std::fs::create_dir_all(dev.parent().unwrap()).unwrap();
        std::fs::write(&dev, "").unwrap();
        assert_eq!(choose(Some(flag), env(), &dev), flag);
        assert_eq!(choose(None, env(), &dev), Path::new("env.toml"));
        assert_eq!(choose(None, None, &dev), dev);
        assert_eq!(choose(None, Some(OsString::new()), &dev), dev);
    }
}
