//! The module itself: loading it, finding tokens by label, initialising a token and
//! opening a logged-in session.

use std::fmt;
use std::path::{Path, PathBuf};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use serde::{Deserialize, Serialize};

use super::TokenSession;
use crate::error::{Error, Result};
use crate::pin::{SoPin, UserPin};
use crate::profile::MAX_TOKEN_LABEL_LEN;

/// A loaded and initialised PKCS#11 module.
///
/// `C_Initialize` is called once, with `CKF_OS_LOCKING_OK`, so the module may be used
/// from several threads. Cloning is cheap (an `Arc`); clones share the module.
///
/// SoftHSM2 reads `SOFTHSM2_CONF` once, during `C_Initialize`: the variable must be in the
/// process environment before [`Module::load`] (tests give each process its own).
#[derive(Clone)]
pub struct Module {
    ctx: Pkcs11,
    path: PathBuf,
}

impl fmt::Debug for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Module").field("path", &self.path).finish()
    }
}

/// What we know of a token: label and serial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSummary {
    /// `CKA_LABEL` of the token (trailing padding removed).
    pub label: String,
    /// The token's serial number.
    pub serial: String,
    /// Manufacturer id.
    pub manufacturer: String,
    /// Model.
    pub model: String,
    /// Whether the token is initialised.
    pub initialized: bool,
}

impl Module {
    /// Load the module at `path` and call `C_Initialize` (OS locking).
    ///
    /// A module that answers `CKR_CRYPTOKI_ALREADY_INITIALIZED` (loaded twice in one
    /// process) is accepted.
    ///
    /// # Errors
    ///
    /// [`Error::ModuleLoad`] when the library cannot be opened or initialised.
    pub fn load(path: impl AsRef<Path>) -> Result<Module> {
        let path = path.as_ref().to_owned();
        let load_err = |source| Error::ModuleLoad {
            path: path.clone(),
            source,
        };
        let ctx = Pkcs11::new(&path).map_err(load_err)?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) => {}
            Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {
                tracing::debug!(module = %path.display(), "module already initialised in this process");
            }
            Err(e) => return Err(load_err(e)),
        }
        tracing::debug!(module = %path.display(), "PKCS#11 module loaded");
        Ok(Module { ctx, path })
    }

    /// Path the module was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every token present, initialised or not.
    ///
    /// # Errors
    ///
    /// [`Error::Pkcs11`] from `C_GetSlotList` or `C_GetTokenInfo`.
    pub fn tokens(&self) -> Result<Vec<TokenSummary>> {
        Ok(self.slots()?.into_iter().map(|(_, t)| t).collect())
    }

    fn slots(&self) -> Result<Vec<(Slot, TokenSummary)>> {
        let slots = self
            .ctx
            .get_slots_with_token()
            .map_err(|e| Error::pkcs11("listing slots", e))?;
        let mut out = Vec::with_capacity(slots.len());
        for slot in slots {
            let info = self
                .ctx
                .get_token_info(slot)
                .map_err(|e| Error::pkcs11(format!("reading token info of slot {slot}"), e))?;
            out.push((
                slot,
                TokenSummary {
                    label: info.label().trim_end().to_owned(),
                    serial: info.serial_number().trim_end().to_owned(),
                    manufacturer: info.manufacturer_id().trim_end().to_owned(),
                    model: info.model().trim_end().to_owned(),
                    initialized: info.token_initialized(),
                },
            ));
        }
        Ok(out)
    }

    /// The slot of the one initialised token labelled `token_label`.
    ///
    /// Slot numbers are not stable (SoftHSM2 renumbers after `C_InitToken`), so this is
    /// the only way this crate finds a token.
    ///
    /// # Errors
    ///
    /// [`Error::TokenNotFound`] when none, [`Error::DuplicateToken`] when several tokens
    /// carry the label, [`Error::Pkcs11`] when the module fails.
    pub fn find_slot(&self, token_label: &str) -> Result<Slot> {
        Ok(self.find_token(token_label)?.0)
    }

    /// Like [`Module::find_slot`], also returning the token's summary.
    ///
    /// # Errors
    ///
    /// As [`Module::find_slot`].
    pub fn find_token(&self, token_label: &str) -> Result<(Slot, TokenSummary)> {
        let slots = self.slots()?;
        let available = slots
            .iter()
            .filter(|(_, t)| t.initialized)
            .map(|(_, t)| t.label.clone())
            .collect::<Vec<_>>();
        let mut matching = slots
            .into_iter()
            .filter(|(_, t)| t.initialized && t.label == token_label);
        match (matching.next(), matching.next()) {
            (Some(found), None) => Ok(found),
            (None, _) => Err(Error::TokenNotFound {
                label: token_label.to_owned(),
                available,
            }),
            (Some(_), Some(_)) => Err(Error::DuplicateToken {
                label: token_label.to_owned(),
                count: 2 + matching.count(),
            }),
        }
    }

    /// Initialise a free token as `label`, with `so_pin`, and set its user PIN.
    ///
    /// Uses the first slot whose token is not initialised (SoftHSM2 always offers one).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidLabel`], [`Error::TokenExists`] when a token already has the label,
    /// [`Error::NoFreeSlot`], [`Error::Pkcs11`] from `C_InitToken`, `C_Login` or `C_InitPIN`.
    pub fn init_token(
        &self,
        label: &str,
        so_pin: &SoPin,
        user_pin: &UserPin,
    ) -> Result<TokenSummary> {
        check_token_label(label)?;
        let slots = self.slots()?;
        if slots.iter().any(|(_, t)| t.initialized && t.label == label) {
            return Err(Error::TokenExists {
                label: label.to_owned(),
            });
        }
        let (slot, _) = slots
            .into_iter()
            .find(|(_, t)| !t.initialized)
            .ok_or(Error::NoFreeSlot)?;
        let context = format!("initialising token {label:?}");
        self.ctx
            .init_token(slot, so_pin.secret(), label)
            .map_err(|e| Error::pkcs11(context.clone(), e))?;
        let session = self
            .ctx
            .open_rw_session(slot)
            .map_err(|e| Error::pkcs11(context.clone(), e))?;
        login(&session, UserType::So, so_pin.secret(), label, "SO PIN")?;
        session
            .init_pin(user_pin.secret())
            .map_err(|e| Error::pkcs11(format!("setting the user PIN of token {label:?}"), e))?;
        if let Err(e) = session.logout() {
            tracing::warn!(token = label, error = %e, "SO logout failed");
        }
        drop(session);
        // The slot may change after C_InitToken: look the token up again, by label.
        let (_, summary) = self.find_token(label)?;
        tracing::info!(token = label, serial = %summary.serial, "token initialised");
        Ok(summary)
    }

    /// Open a read-write session on the token labelled `token_label` and log in as user.
    ///
    /// Login is per application and token: when another session already logged in,
    /// `CKR_USER_ALREADY_LOGGED_IN` is success. Closing the last session logs out.
    ///
    /// Consequence (measured with SoftHSM2 2.6.1): while a session of this process is
    /// logged in, the token answers `CKR_USER_ALREADY_LOGGED_IN` *before* checking the
    /// PIN, so a wrong PIN is only detected by the process's first login. Treat the PIN
    /// as checked once per process, at start-up.
    ///
    /// # Errors
    ///
    /// As [`Module::find_slot`]; [`Error::WrongPin`], [`Error::PinLocked`],
    /// [`Error::Pkcs11`] from `C_OpenSession` or `C_Login`.
    pub fn open_session(&self, token_label: &str, user_pin: &UserPin) -> Result<TokenSession> {
        let slot = self.find_slot(token_label)?;
        let session = self
            .ctx
            .open_rw_session(slot)
            .map_err(|e| Error::pkcs11(format!("opening a session on token {token_label:?}"), e))?;
        login(
            &session,
            UserType::User,
            user_pin.secret(),
            token_label,
            "user PIN",
        )?;
        tracing::debug!(token = token_label, "session opened and logged in");
        Ok(TokenSession::new(session, token_label.to_owned()))
    }
}

fn login(
    session: &Session,
    user: UserType,
    pin: &secrecy::SecretString,
    token: &str,
    what: &'static str,
) -> Result<()> {
    match session.login(user, Some(pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => Err(Error::WrongPin {
            token: token.to_owned(),
            what,
        }),
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(Error::PinLocked {
            token: token.to_owned(),
            what,
        }),
        Err(e) => Err(Error::pkcs11(format!("logging in to token {token:?}"), e)),
    }
}

fn check_token_label(label: &str) -> Result<()> {
    let reason = if label.is_empty() {
        "empty"
    } else if label.len() > MAX_TOKEN_LABEL_LEN {
        "longer than 32 bytes"
    } else if label.trim() != label {
        "leading or trailing spaces (PKCS#11 pads labels with spaces)"
    } else {
        return Ok(());
    };
    Err(Error::InvalidLabel {
        label: label.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_labels_are_checked() {
        assert!(check_token_label("custody-dev").is_ok());
        assert!(check_token_label("").is_err());
        assert!(check_token_label(&"x".repeat(33)).is_err());
        assert!(check_token_label(" padded").is_err());
    }
}
