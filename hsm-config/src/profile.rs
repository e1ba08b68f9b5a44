//! Module profiles: which PKCS#11 module, which token, which keys.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Sessions a signer opens when the profile does not say.
pub const DEFAULT_SESSIONS: usize = 2;

/// Longest token label PKCS#11 can hold (`CK_TOKEN_INFO.label` is 32 bytes).
pub const MAX_TOKEN_LABEL_LEN: usize = 32;

/// A PKCS#11 module profile, read from TOML.
///
/// ```toml
/// name = "softhsm2"
/// module = "/usr/lib/softhsm/libsofthsm2.so"
/// token_label = "custody-dev"
/// keys = ["cold-a", "cold-b", "cold-c", "hot-a"]
/// sessions = 2            # optional
/// notes = "free text"     # optional
/// ```
///
/// A profile holds no secret: PINs come from the environment ([`crate::pin`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// A short name for logs.
    pub name: String,
    /// Path of the vendor's PKCS#11 shared library.
    pub module: PathBuf,
    /// Label of the token (partition) holding the keys; tokens are always found by
    /// label, never by slot number.
    pub token_label: String,
    /// Labels of the keys this deployment uses, in policy order.
    #[serde(default)]
    pub keys: Vec<String>,
    /// How many sessions a signer may open (default [`DEFAULT_SESSIONS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<usize>,
    /// Free-form notes for operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

impl Profile {
    /// Read and check a profile.
    ///
    /// # Errors
    ///
    /// [`Error::ProfileRead`], [`Error::ProfileParse`] (unknown fields included) or
    /// [`Error::ProfileInvalid`] (see [`Profile::validate`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Profile> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::ProfileRead {
            path: path.to_owned(),
            source,
        })?;
        let profile: Profile = toml::from_str(&text).map_err(|source| Error::ProfileParse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        profile.validate()?;
        Ok(profile)
    }

    /// Check the values: non-empty name, module and token label, token label at most
    /// 32 bytes, key labels non-empty and unique, `sessions` at least 1.
    ///
    /// # Errors
    ///
    /// [`Error::ProfileInvalid`] saying which value is wrong.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Error::ProfileInvalid {
            name: self.name.clone(),
            reason,
        };
        if self.name.trim().is_empty() {
            return Err(invalid("name is empty".into()));
        }
        if self.module.as_os_str().is_empty() {
            return Err(invalid("module is empty".into()));
        }
        if self.token_label.is_empty() || self.token_label.len() > MAX_TOKEN_LABEL_LEN {
            return Err(invalid(format!(
                "token_label {:?} must be 1 to {MAX_TOKEN_LABEL_LEN} bytes",
                self.token_label
            )));
        }
        for (i, key) in self.keys.iter().enumerate() {
            if key.is_empty() {
                return Err(invalid("a key label is empty".into()));
            }
            if self.keys[..i].contains(key) {
                return Err(invalid(format!("key label {key:?} is listed twice")));
            }
        }
        if self.sessions == Some(0) {
            return Err(invalid("sessions must be at least 1".into()));
        }
        Ok(())
    }

    /// Sessions a signer may open: `sessions` or [`DEFAULT_SESSIONS`].
    pub fn sessions(&self) -> usize {
        self.sessions.unwrap_or(DEFAULT_SESSIONS)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn profiles_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles")
    }

    #[test]
    fn every_shipped_profile_parses() {
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(profiles_dir()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let profile =
                Profile::load(&path).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            assert!(profile.module.is_absolute(), "{}", path.display());
            assert!(!profile.keys.is_empty(), "{}", path.display());
            seen.push(profile.name);
        }
        seen.sort();
        assert_eq!(
            seen,
            ["aws-cloudhsm", "softhsm2", "thales-luna", "yubihsm2"]
        );
    }

    #[test]
    fn softhsm2_profile_matches_the_tests() {
        let profile = Profile::load(profiles_dir().join("softhsm2.toml")).unwrap();
        assert_eq!(profile.module, Path::new("/usr/lib/softhsm/libsofthsm2.so"));
        assert_eq!(profile.token_label, "custody-dev");
        assert_eq!(profile.keys, ["cold-a", "cold-b", "cold-c", "hot-a"]);
        assert_eq!(profile.sessions(), DEFAULT_SESSIONS);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = toml::from_str::<Profile>(
            "name='x'\nmodule='/m.so'\ntoken_label='t'\nuser_pin='1234'\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("user_pin"), "{err}");
    }

    #[test]
    fn invalid_values_are_refused() {
        let base = Profile {
            name: "x".into(),
            module: "/m.so".into(),
            token_label: "t".into(),
            keys: vec!["a".into()],
            sessions: None,
            notes: None,
        };
        base.validate().unwrap();
        let long = Profile {
            token_label: "x".repeat(33),
            ..base.clone()
        };
        assert!(long.validate().is_err());
        let dup = Profile {
            keys: vec!["a".into(), "a".into()],
            ..base.clone()
        };
        assert!(dup.validate().unwrap_err().to_string().contains("twice"));
        let zero = Profile {
            sessions: Some(0),
            ..base
        };
        assert!(zero.validate().is_err());
    }
}
