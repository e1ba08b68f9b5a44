//! Why the HSM cannot be used now, and how PKCS#11 errors map to it.

use cryptoki::error::RvError;

use super::HsmError;
use super::pool::HsmSettings;

/// Why the HSM cannot be used now; every variant answers 503 with its reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HsmFault {
    /// The PKCS#11 module cannot be loaded or initialised.
    #[error("the PKCS#11 module {path} cannot be loaded: {detail}")]
    ModuleUnloadable {
        /// The module path.
        path: String,
        /// Why.
        detail: String,
    },
    /// The token is not present.
    #[error("token {token:?} is not present: {detail}")]
    TokenMissing {
        /// The token's label.
        token: String,
        /// What the module said.
        detail: String,
    },
    /// The token refused the PIN.
    #[error("token {token:?} refused the user PIN ({attempts} of {max} attempts used)")]
    WrongPin {
        /// The token's label.
        token: String,
        /// Wrong answers so far.
        attempts: u32,
        /// The limit.
        max: u32,
    },
    /// Too many wrong PINs: no more attempts until the service restarts.
    #[error(
        "token {token:?} refused the user PIN {max} times: no more attempts until the service \
         is restarted with the right PIN"
    )]
    PinAttemptsExhausted {
        /// The token's label.
        token: String,
        /// The limit.
        max: u32,
    },
    /// The token's PIN is locked.
    #[error("the user PIN of token {token:?} is locked")]
    PinLocked {
        /// The token's label.
        token: String,
    },
    /// A session or the device was lost.
    #[error("the HSM session was lost: {detail}")]
    SessionLost {
        /// What the module said.
        detail: String,
    },
    /// A call did not answer in time.
    #[error("the HSM did not answer within {millis} ms")]
    Timeout {
        /// The limit.
        millis: u128,
    },
    /// Any other failure of the token.
    #[error("the HSM failed: {detail}")]
    Failed {
        /// What happened.
        detail: String,
    },
}

impl HsmFault {
    /// A stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            HsmFault::ModuleUnloadable { .. } => "HSM_MODULE_UNLOADABLE",
            HsmFault::TokenMissing { .. } => "HSM_TOKEN_MISSING",
            HsmFault::WrongPin { .. } => "HSM_WRONG_PIN",
            HsmFault::PinAttemptsExhausted { .. } => "HSM_PIN_ATTEMPTS_EXHAUSTED",
            HsmFault::PinLocked { .. } => "HSM_PIN_LOCKED",
            HsmFault::SessionLost { .. } => "HSM_SESSION_LOST",
            HsmFault::Timeout { .. } => "HSM_TIMEOUT",
            HsmFault::Failed { .. } => "HSM_FAILED",
        }
    }
}

pub(crate) fn classify(settings: &HsmSettings, error: &hsm_config::Error) -> HsmFault {
    use hsm_config::Error as E;
    let token = settings.token_label.clone();
    match error {
        E::ModuleLoad { path, source } => HsmFault::ModuleUnloadable {
            path: path.display().to_string(),
            detail: source.to_string(),
        },
        E::TokenNotFound { .. } => HsmFault::TokenMissing {
            token,
            detail: error.to_string(),
        },
        E::PinLocked { .. } => HsmFault::PinLocked { token },
        E::KeyNotFound { .. } => HsmFault::SessionLost {
            detail: error.to_string(),
        },
        _ => match error.rv() {
            Some(
                RvError::TokenNotPresent | RvError::TokenNotRecognized | RvError::SlotIdInvalid,
            ) => HsmFault::TokenMissing {
                token,
                detail: error.to_string(),
            },
            Some(
                RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::DeviceMemory
                | RvError::UserNotLoggedIn
                | RvError::ObjectHandleInvalid
                | RvError::KeyHandleInvalid
                | RvError::CryptokiNotInitialized
                | RvError::GeneralError,
            ) => HsmFault::SessionLost {
                detail: error.to_string(),
            },
            _ => HsmFault::Failed {
                detail: error.to_string(),
            },
        },
    }
}

pub(crate) fn classify_hsm(settings: &HsmSettings, error: &HsmError) -> HsmFault {
    match error {
        HsmError::Token(e) => classify(settings, e),
        HsmError::WorkerGone => HsmFault::SessionLost {
            detail: error.to_string(),
        },
        other => HsmFault::Failed {
            detail: other.to_string(),
        },
    }
}
