//! Configuration values that hold a secret: redacted by their type wherever they are shown
//! (`Debug`, `config check`), whatever the key is called.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a redacted secret is shown as.
pub const REDACTED: &str = "REDACTED";

/// A PostgreSQL URL. Its password is only ever shown as [`REDACTED`]; the rest (user, host,
/// database) stays visible, since an operator checking a configuration needs it.
#[derive(Clone)]
pub struct DatabaseUrl(SecretString);

impl DatabaseUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> DatabaseUrl {
        DatabaseUrl(SecretString::from(url.into()))
    }

    /// The URL with its password, to connect with.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The URL with any password replaced by [`REDACTED`]; an unparsable URL entirely
    /// (it might be a password pasted in the wrong place).
    pub fn redacted(&self) -> String {
        let Ok(mut url) = reqwest::Url::parse(self.expose()) else {
            return REDACTED.to_owned();
        };
        if url.password().is_some() && url.set_password(Some(REDACTED)).is_err() {
            return REDACTED.to_owned();
        }
        url.to_string()
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(DatabaseUrl::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_never_shown() {
        let url = DatabaseUrl::new("postgres://bank:s3cret-pw@db.internal:5432/bastion");
        for shown in [
            url.redacted(),
            format!("{url:?}"),
            serde_json::to_string(&url).unwrap_or_default(),
        ] {
            assert!(!shown.contains("s3cret-pw"), "{shown}");
            assert!(shown.contains("db.internal"), "{shown}");
        }
        assert_eq!(
            url.expose(),
            "postgres://bank:s3cret-pw@db.internal:5432/bastion"
        );
        assert_eq!(DatabaseUrl::new("not a url s3cret").redacted(), REDACTED);
    }
}
