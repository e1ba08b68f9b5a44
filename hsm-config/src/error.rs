//! The crate's error type.

use std::path::PathBuf;

use cryptoki::context::Function;
use cryptoki::error::RvError;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `hsm-config`.
///
/// PKCS#11 failures keep the function and the return value (`CKR_*`) so a caller can
/// act on them ([`Error::rv`]); PINs never appear in any message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The profile file could not be read.
    #[error("cannot read profile {path}")]
    ProfileRead {
        /// Path of the profile.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The profile file is not valid TOML for [`crate::profile::Profile`].
    #[error("cannot parse profile {path}")]
    ProfileParse {
        /// Path of the profile.
        path: PathBuf,
        /// Underlying TOML error.
        #[source]
        source: Box<toml::de::Error>,
    },

    /// The profile parsed but a value is unusable.
    #[error("invalid profile {name}: {reason}")]
    ProfileInvalid {
        /// The profile's name (or path when unnamed).
        name: String,
        /// What is wrong.
        reason: String,
    },

    /// Neither the PIN variable nor its file variable is set.
    #[error("no {what} given: set {variable} or {file_variable} (a file holding the PIN)")]
    PinMissing {
        /// Which PIN (`"user PIN"`, `"SO PIN"`).
        what: &'static str,
        /// The environment variable holding the PIN.
        variable: &'static str,
        /// The environment variable naming a file holding the PIN.
        file_variable: &'static str,
    },

    /// The PIN file named by a variable could not be read.
    #[error("cannot read the PIN file named by {variable} ({path})")]
    PinFile {
        /// The variable naming the file.
        variable: &'static str,
        /// The file.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The PIN file may be read (or written) by its group or by others.
    #[error(
        "the PIN file named by {variable} ({path}) has mode {mode:04o}: its group or others \
         may access it; make it the owner's alone (chmod 600, or defaultMode 0400 for a \
         mounted secret)"
    )]
    PinFileMode {
        /// The variable naming the file.
        variable: &'static str,
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// The PIN is empty or not valid UTF-8.
    #[error("the PIN from {variable} is {problem}")]
    PinInvalid {
        /// The variable the PIN (or its file) came from.
        variable: &'static str,
        /// `"empty"` or `"not valid UTF-8"`.
        problem: &'static str,
    },

    /// The PKCS#11 module could not be loaded or initialised.
    #[error("cannot load the PKCS#11 module {path}")]
    ModuleLoad {
        /// Module path.
        path: PathBuf,
        /// Underlying cryptoki error.
        #[source]
        source: cryptoki::error::Error,
    },

    /// A PKCS#11 call returned an error.
    #[error("{context}: {function} returned {}", rv_name(rv))]
    Pkcs11 {
        /// What we were doing (token or key label included).
        context: String,
        /// The PKCS#11 function, e.g. `C_Sign`.
        function: String,
        /// The return value.
        rv: RvError,
    },

    /// A cryptoki error that is not a PKCS#11 return value (conversion, missing symbol…).
    #[error("{context}")]
    Cryptoki {
        /// What we were doing.
        context: String,
        /// Underlying cryptoki error.
        #[source]
        source: cryptoki::error::Error,
    },

    /// No initialised token carries this label.
    #[error("no token labelled {label:?} (tokens: {available:?})")]
    TokenNotFound {
        /// The label looked for.
        label: String,
        /// Labels of the initialised tokens that were found.
        available: Vec<String>,
    },

    /// Several tokens carry the same label: refuse to guess.
    #[error("{count} tokens are labelled {label:?}: labels must be unique")]
    DuplicateToken {
        /// The label.
        label: String,
        /// How many tokens carry it.
        count: usize,
    },

    /// `init_token` was asked for a label that an initialised token already has.
    #[error("a token labelled {label:?} already exists")]
    TokenExists {
        /// The label.
        label: String,
    },

    /// No slot holds an uninitialised token.
    #[error("no free slot: every token of the module is initialised")]
    NoFreeSlot,

    /// A token or key label is empty or too long.
    #[error("invalid label {label:?}: {reason}")]
    InvalidLabel {
        /// The label.
        label: String,
        /// What is wrong.
        reason: &'static str,
    },

    /// The user PIN was refused by the token.
    #[error("the token {token:?} refused the {what} (CKR_PIN_INCORRECT)")]
    WrongPin {
        /// Token label.
        token: String,
        /// Which PIN.
        what: &'static str,
    },

    /// The PIN is locked on the token.
    #[error("the {what} of token {token:?} is locked (CKR_PIN_LOCKED)")]
    PinLocked {
        /// Token label.
        token: String,
        /// Which PIN.
        what: &'static str,
    },

    /// No key with this label.
    #[error("no {class} labelled {label:?} on token {token:?}")]
    KeyNotFound {
        /// Token label.
        token: String,
        /// Key label.
        label: String,
        /// `"public key"` or `"private key"`.
        class: &'static str,
    },

    /// Several objects share a key label.
    #[error(
        "{count} {class} objects are labelled {label:?} on token {token:?}: labels must be unique"
    )]
    DuplicateKey {
        /// Token label.
        token: String,
        /// Key label.
        label: String,
        /// `"public key"`, `"private key"` or `"object"`.
        class: &'static str,
        /// How many.
        count: usize,
    },

    /// `generate_key` was asked for a label already used on the token.
    #[error("an object labelled {label:?} already exists on token {token:?}")]
    KeyExists {
        /// Token label.
        token: String,
        /// Key label.
        label: String,
    },

    /// The key is not on secp256k1.
    #[error("key {label:?} is not a secp256k1 key (CKA_EC_PARAMS {params})")]
    UnsupportedCurve {
        /// Key label.
        label: String,
        /// The hex of the CKA_EC_PARAMS found.
        params: String,
    },

    /// A required attribute could not be read.
    #[error("key {label:?} has no readable {attribute}")]
    AttributeMissing {
        /// Key label.
        label: String,
        /// The attribute, e.g. `CKA_EC_POINT`.
        attribute: &'static str,
    },

    /// `CKA_EC_POINT` is not a valid secp256k1 point.
    #[error("invalid CKA_EC_POINT ({len} bytes): {reason}")]
    InvalidEcPoint {
        /// Length of the attribute.
        len: usize,
        /// What is wrong.
        reason: String,
    },

    /// The signature returned by the token is malformed.
    #[error("invalid raw ECDSA signature ({len} bytes): {reason}")]
    InvalidSignature {
        /// Length of what the token returned.
        len: usize,
        /// What is wrong.
        reason: String,
    },

    /// The token's signature does not verify against the expected public key.
    #[error("the signature does not verify against public key {public_key}")]
    SignatureVerification {
        /// The public key it was checked against.
        public_key: bitcoin::secp256k1::PublicKey,
    },
}

impl Error {
    /// The PKCS#11 return value, when the error came from a PKCS#11 call.
    pub fn rv(&self) -> Option<RvError> {
        match self {
            Error::Pkcs11 { rv, .. } => Some(*rv),
            Error::WrongPin { .. } => Some(RvError::PinIncorrect),
            Error::PinLocked { .. } => Some(RvError::PinLocked),
            Error::ModuleLoad {
                source: cryptoki::error::Error::Pkcs11(rv, _),
                ..
            }
            | Error::Cryptoki {
                source: cryptoki::error::Error::Pkcs11(rv, _),
                ..
            } => Some(*rv),
            _ => None,
        }
    }

    /// Wrap a cryptoki error with what we were doing.
    pub(crate) fn pkcs11(context: impl Into<String>, err: cryptoki::error::Error) -> Self {
        match err {
            cryptoki::error::Error::Pkcs11(rv, function) => Error::Pkcs11 {
                context: context.into(),
                function: function_name(function),
                rv,
            },
            source => Error::Cryptoki {
                context: context.into(),
                source,
            },
        }
    }
}

/// `Function::Login` → `C_Login`.
fn function_name(function: Function) -> String {
    format!("C_{function:?}")
}

/// `RvError::PinIncorrect` → `CKR_PIN_INCORRECT`: the name operators find in vendor manuals.
pub(crate) fn rv_name(rv: &RvError) -> String {
    let camel = format!("{rv:?}");
    let mut out = String::from("CKR_");
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rv_names_follow_the_spec_spelling() {
        assert_eq!(rv_name(&RvError::PinIncorrect), "CKR_PIN_INCORRECT");
        assert_eq!(rv_name(&RvError::GeneralError), "CKR_GENERAL_ERROR");
        assert_eq!(
            rv_name(&RvError::UserAlreadyLoggedIn),
            "CKR_USER_ALREADY_LOGGED_IN"
        );
    }

    #[test]
    fn pkcs11_errors_name_function_and_return_value() {
        let err = Error::pkcs11(
            "logging in to token \"t\"",
            cryptoki::error::Error::Pkcs11(RvError::PinIncorrect, Function::Login),
        );
        assert_eq!(
            err.to_string(),
            "logging in to token \"t\": C_Login returned CKR_PIN_INCORRECT"
        );
        assert_eq!(err.rv(), Some(RvError::PinIncorrect));
    }
}
