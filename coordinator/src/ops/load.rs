//! Loading the configuration in layers, each over the one before:
//! built-in defaults < the TOML file (`--config` or `COORDINATOR_CONFIG`) < environment
//! variables `COORDINATOR_<SECTION>__<KEY>` < command-line flags (applied by the caller).
//!
//! Only variables with a double underscore are configuration keys: the single-underscore
//! `COORDINATOR_BIND`, `COORDINATOR_DEV`, ... are the environment forms of flags, and other
//! software sets single-underscore names too (Kubernetes service links add
//! `COORDINATOR_PORT_8080_TCP` and the like for a Service named `coordinator`).

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};

use super::config::{Config, InvalidValue};

/// The prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "COORDINATOR_";

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file named by `--config` does not exist or cannot be read.
    #[error("configuration file {path}: {why}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// A key is unknown or a value has the wrong type (every problem found, each with its
    /// key and where it came from).
    #[error("{0}")]
    Parse(String),
    /// A value has the right type but cannot be used.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] InvalidValue),
}

/// The layers below the flags: defaults, then `file`, then the process's
/// `COORDINATOR_*__*` variables.
pub fn figment(file: Option<&Path>) -> Figment {
    let mut f = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = file {
        f = f.merge(Toml::file_exact(path));
    }
    f.merge(
        Env::prefixed(ENV_PREFIX)
            .filter(|k| k.as_str().contains("__"))
            .split("__"),
    )
}

/// Loads the layers below the flags (see the module documentation). Relative policy paths
/// of `[onchain]` wallets are taken from the file's directory.
///
/// # Errors
/// [`ConfigError`]: an unreadable file, an unknown key, a value of the wrong type.
/// The caller applies its flags, then [`Config::validate`].
pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
    if let Some(path) = file {
        std::fs::metadata(path).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
    }
    let mut config: Config = figment(file).extract().map_err(|e| {
        ConfigError::Parse(
            e.into_iter()
                .map(|e| describe(&e))
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    if let Some(onchain) = config.onchain.take() {
        let base = file
            .and_then(Path::parent)
            .unwrap_or_else(|| Path::new("."));
        config.onchain = Some(onchain.checked(base).map_err(|why| InvalidValue {
            key: "onchain",
            why,
        })?);
    }
    Ok(config)
}

/// One problem, with the key in dotted form (without figment's profile) and its source.
fn describe(e: &figment::Error) -> String {
    let path: Vec<&String> = e.path.iter().skip_while(|p| *p == "default").collect();
    let key = path
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(".");
    let from = match e.metadata.as_ref() {
        Some(m) => match &m.source {
            Some(figment::Source::File(p)) => format!(" (in {})", p.display()),
            _ if m.name.contains("environment") => {
                // The variable's name, as the operator wrote it.
                let var = path
                    .iter()
                    .map(|p| p.to_uppercase())
                    .collect::<Vec<_>>()
                    .join("__");
                format!(" (from {ENV_PREFIX}{var})")
            }
            _ => format!(" ({})", m.name),
        },
        None => String::new(),
    };
    let what = e.kind.to_string();
    if key.is_empty() {
        format!("{what}{from}")
    } else {
        format!("{key}: {what}{from}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn a_file_overrides_the_defaults_and_keeps_the_rest() {
        let f = file("[api]\nbind = \"0.0.0.0:9000\"\n[ledger]\nmax_batch = 64\n");
        let c = load(Some(f.path())).unwrap();
        assert_eq!(c.api.bind.to_string(), "0.0.0.0:9000");
        assert_eq!(c.ledger.max_batch, 64);
        assert_eq!(c.ledger.queue_depth, Config::default().ledger.queue_depth);
        assert_eq!(c.database.connections, 16);
    }

    #[test]
    fn unknown_keys_in_a_file_are_named() {
        let f = file("[api]\nbnd = \"0.0.0.0:9000\"\n");
        let e = load(Some(f.path())).unwrap_err().to_string();
        assert!(e.contains("api") && e.contains("bnd"), "{e}");
        let f = file("[apl]\nbind = \"0.0.0.0:9000\"\n");
        let e = load(Some(f.path())).unwrap_err().to_string();
        assert!(e.contains("apl"), "{e}");
        let f = file("[bank.limits.level0]\ninternal_send = 1\nwithdrawl = 0\n");
        let e = load(Some(f.path())).unwrap_err().to_string();
        assert!(e.contains("withdrawl"), "{e}");
    }

    #[test]
    fn values_of_the_wrong_type_are_named() {
        let f = file("[database]\nconnections = \"many\"\n");
        let e = load(Some(f.path())).unwrap_err().to_string();
        assert!(e.contains("database.connections"), "{e}");
        let f = file("[log]\nformat = \"xml\"\n");
        let e = load(Some(f.path())).unwrap_err().to_string();
        assert!(e.contains("log.format") && e.contains("xml"), "{e}");
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let e = load(Some(Path::new("/nonexistent/coordinator.toml"))).unwrap_err();
        assert!(matches!(e, ConfigError::File { .. }), "{e}");
    }

    #[test]
    fn onchain_policy_paths_are_relative_to_the_file() {
        let f = file(
            "[onchain.chain]\nkind = \"esplora\"\nurl = \"http://127.0.0.1:3002\"\n\
             [[onchain.wallets]]\nname = \"hot\"\nrole = \"hot\"\npolicy_file = \"hot.json\"\n\
             [onchain.deposits]\nlease_ttl_ms = 2500\n",
        );
        let c = load(Some(f.path())).unwrap();
        let onchain = c.onchain.unwrap();
        let dir = f.path().parent().unwrap();
        assert_eq!(onchain.wallets[0].policy_file, dir.join("hot.json"));
        assert_eq!(
            onchain.deposit_config().unwrap().lease_ttl,
            std::time::Duration::from_millis(2500)
        );
    }
}
