//! PINs: the SO PIN and the user PIN, as secrets.
//!
//! A PIN never comes from a command-line argument or a profile. It comes from the
//! environment, from one of two variables per PIN:
//!
//! | PIN      | variable       | file variable       |
//! |----------|----------------|---------------------|
//! | user PIN | `HSM_USER_PIN` | `HSM_USER_PIN_FILE` |
//! | SO PIN   | `HSM_SO_PIN`   | `HSM_SO_PIN_FILE`   |
//!
//! **Prefer the file.** A variable still works, but a warning says so: the environment of
//! a process can be read by other processes of the same user (and by root) in
//! `/proc/<pid>/environ`, and it is inherited by every child. A PIN file must be the
//! owner's alone: one that its group or others may access (any of the mode bits `0o077`)
//! is refused, with an error naming the mode.
//!
//! When both are set, **the file wins** and a warning (naming the variables, never the
//! value) is logged: a file is what a service manager or a secret store mounts, and an
//! inherited variable is the more likely stale one. One trailing newline (`\n` or `\r\n`)
//! is removed from the file's content, nothing else; an empty PIN is refused.
//!
//! Both types hold a [`SecretString`]: zeroized on drop, `[REDACTED]` in `Debug`.

use std::ffi::OsString;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Environment variable holding the user PIN.
pub const USER_PIN_ENV: &str = "HSM_USER_PIN";
/// Environment variable naming a file that holds the user PIN.
pub const USER_PIN_FILE_ENV: &str = "HSM_USER_PIN_FILE";
/// Environment variable holding the SO (security officer) PIN.
pub const SO_PIN_ENV: &str = "HSM_SO_PIN";
/// Environment variable naming a file that holds the SO PIN.
pub const SO_PIN_FILE_ENV: &str = "HSM_SO_PIN_FILE";

/// The token's user PIN (PKCS#11 `CKU_USER`): what a signer logs in with.
///
/// On some HSMs this "PIN" has a vendor format, e.g. YubiHSM 2 `0001password`
/// (auth key id + password) or AWS CloudHSM `user:password`; it is passed through as is.
pub struct UserPin(SecretString);

/// The token's security-officer PIN (PKCS#11 `CKU_SO`): needed only to initialise a token.
pub struct SoPin(SecretString);

macro_rules! pin_impl {
    ($ty:ident, $what:literal, $var:ident, $file_var:ident) => {
        impl $ty {
            /// Wrap a PIN obtained elsewhere (a secret store, a test fixture).
            pub fn new(pin: SecretString) -> Self {
                Self(pin)
            }

            /// Read the PIN from the environment (see the [module docs](self)).
            ///
            /// # Errors
            ///
            /// [`Error::PinMissing`] naming both variables when neither is set,
            /// [`Error::PinFile`] when the file cannot be read,
            /// [`Error::PinInvalid`] when the PIN is empty or not UTF-8.
            pub fn from_env() -> Result<Self> {
                from_lookup($what, $var, $file_var, |name| std::env::var_os(name)).map(Self)
            }

            /// The secret, for handing to the token.
            pub fn secret(&self) -> &SecretString {
                &self.0
            }
        }

        impl From<SecretString> for $ty {
            fn from(pin: SecretString) -> Self {
                Self(pin)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($ty), "([REDACTED])"))
            }
        }

        impl Clone for $ty {
            fn clone(&self) -> Self {
                Self(SecretString::from(self.0.expose_secret()))
            }
        }
    };
}

pin_impl!(UserPin, "user PIN", USER_PIN_ENV, USER_PIN_FILE_ENV);
pin_impl!(SoPin, "SO PIN", SO_PIN_ENV, SO_PIN_FILE_ENV);

/// Read a PIN through `lookup` (the environment in production, a map in tests).
fn from_lookup(
    what: &'static str,
    variable: &'static str,
    file_variable: &'static str,
    lookup: impl Fn(&str) -> Option<OsString>,
) -> Result<SecretString> {
    let direct = lookup(variable).map(|value| Zeroizing::new(value.into_encoded_bytes()));
    if let Some(path) = lookup(file_variable) {
        if direct.is_some() {
            tracing::warn!(
                variable,
                file_variable,
                "both are set; using the PIN file and ignoring the variable"
            );
        }
        let path = PathBuf::from(path);
        let content = read_private(&path, file_variable)?;
        let text = std::str::from_utf8(&content).map_err(|_| Error::PinInvalid {
            variable: file_variable,
            problem: "not valid UTF-8",
        })?;
        return checked(trim_one_newline(text), file_variable);
    }
    match direct {
        Some(value) => {
            tracing::warn!(
                variable,
                file_variable,
                "the PIN comes from an environment variable, which other processes of the \
                 same user can read in /proc; prefer a file named by the file variable"
            );
            let text = std::str::from_utf8(&value).map_err(|_| Error::PinInvalid {
                variable,
                problem: "not valid UTF-8",
            })?;
            checked(text, variable)
        }
        None => Err(Error::PinMissing {
            what,
            variable,
            file_variable,
        }),
    }
}

/// Reads a PIN file that only its owner may access. The mode is checked on the opened
/// file, so the file read is the file checked.
fn read_private(path: &Path, variable: &'static str) -> Result<Zeroizing<Vec<u8>>> {
    let io_error = |source| Error::PinFile {
        variable,
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io_error)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().map_err(io_error)?.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(Error::PinFileMode {
                variable,
                path: path.to_owned(),
                mode,
            });
        }
    }
    let mut content = Zeroizing::new(Vec::new());
    file.read_to_end(&mut content).map_err(io_error)?;
    Ok(content)
}

fn checked(pin: &str, variable: &'static str) -> Result<SecretString> {
    if pin.is_empty() {
        return Err(Error::PinInvalid {
            variable,
            problem: "empty",
        });
    }
    Ok(SecretString::from(pin))
}

/// Remove exactly one trailing `\n` or `\r\n`.
fn trim_one_newline(text: &str) -> &str {
    text.strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::collections::HashMap;
    use std::io::Write;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn read(vars: &[(&str, &str)]) -> Result<String> {
        from_lookup("user PIN", USER_PIN_ENV, USER_PIN_FILE_ENV, lookup(vars))
            .map(|s| s.expose_secret().to_owned())
    }

    #[test]
    fn missing_pin_names_both_variables() {
        let err = read(&[]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("HSM_USER_PIN "), "{msg}");
        assert!(msg.contains("HSM_USER_PIN_FILE"), "{msg}");
    }

    #[test]
    fn pin_from_variable() {
        assert_eq!(read(&[(USER_PIN_ENV, "1234")]).unwrap(), "1234");
    }

    #[test]
    fn empty_pin_is_refused() {
        let err = read(&[(USER_PIN_ENV, "")]).unwrap_err();
        assert!(matches!(
            err,
            Error::PinInvalid {
                problem: "empty",
                ..
            }
        ));
    }

    #[test]
    fn file_wins_and_one_newline_is_trimmed() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"from-file\n\n").unwrap();
        let path = file.path().to_str().unwrap().to_owned();
        let pin = read(&[(USER_PIN_ENV, "from-env"), (USER_PIN_FILE_ENV, &path)]).unwrap();
        assert_eq!(pin, "from-file\n");

        let mut crlf = tempfile::NamedTempFile::new().unwrap();
        crlf.write_all(b"pin\r\n").unwrap();
        let path = crlf.path().to_str().unwrap().to_owned();
        assert_eq!(read(&[(USER_PIN_FILE_ENV, &path)]).unwrap(), "pin");
    }

    #[test]
    fn unreadable_file_names_the_variable() {
        let err = read(&[(USER_PIN_FILE_ENV, "/nonexistent/pin")]).unwrap_err();
        assert!(err.to_string().contains("HSM_USER_PIN_FILE"), "{err}");
    }

    fn pin_file(content: &[u8], mode: u32) -> tempfile::NamedTempFile {
        use std::os::unix::fs::PermissionsExt;
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(content).unwrap();
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        file
    }

    #[test]
    fn a_pin_file_others_may_read_is_refused_with_its_mode() {
        for mode in [0o644, 0o640, 0o604, 0o660, 0o602, 0o620, 0o670] {
            let file = pin_file(b"1234\n", mode);
            let path = file.path().to_str().unwrap().to_owned();
            let err = read(&[(USER_PIN_FILE_ENV, &path)]).unwrap_err();
            assert!(
                matches!(err, Error::PinFileMode { mode: m, .. } if m == mode),
                "{mode:o}: {err}"
            );
            let msg = err.to_string();
            assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
            assert!(
                msg.contains("HSM_USER_PIN_FILE") && msg.contains(&path),
                "{msg}"
            );
            // Refused even though the variable would have given a PIN: a file that leaks
            // is a mistake to fix, not to fall back from.
            let err = read(&[(USER_PIN_ENV, "9999"), (USER_PIN_FILE_ENV, &path)]).unwrap_err();
            assert!(matches!(err, Error::PinFileMode { .. }), "{err}");
        }
        for mode in [0o600, 0o400] {
            let file = pin_file(b"1234\n", mode);
            let path = file.path().to_str().unwrap().to_owned();
            assert_eq!(
                read(&[(USER_PIN_FILE_ENV, &path)]).unwrap(),
                "1234",
                "{mode:o}"
            );
        }
    }

    /// Collects what is logged while `f` runs.
    fn logged(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let out = buf.0.lock().unwrap().clone();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_pin_from_the_environment_still_works_but_warns() {
        let mut pin = String::new();
        let log = logged(|| pin = read(&[(USER_PIN_ENV, "1234")]).unwrap());
        assert_eq!(pin, "1234");
        assert!(log.contains("WARN") && log.contains("/proc"), "{log}");
        assert!(log.contains("HSM_USER_PIN_FILE"), "{log}");
        assert!(
            !log.contains("1234"),
            "the PIN itself is never logged: {log}"
        );
        // From a file: no such warning.
        let file = pin_file(b"5678", 0o600);
        let path = file.path().to_str().unwrap().to_owned();
        let log = logged(|| pin = read(&[(USER_PIN_FILE_ENV, &path)]).unwrap());
        assert_eq!(pin, "5678");
        assert!(!log.contains("/proc"), "{log}");
    }

    #[test]
    fn debug_is_redacted() {
        let pin = UserPin::new(SecretString::from("secret-1234"));
        assert_eq!(format!("{pin:?}"), "UserPin([REDACTED])");
        let so = SoPin::new(SecretString::from("secret-1234"));
        assert!(!format!("{so:?}").contains("secret"));
    }
}
