//! The PKCS#11 module, tokens and sessions.

mod generate;
mod keys;
mod lookup;
mod module;
mod session;

pub use cryptoki::object::ObjectHandle;
pub use cryptoki::slot::Slot;

pub use keys::{KeyAttributes, KeyInfo};
pub use module::{Module, TokenSummary};
pub use session::TokenSession;

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}

    #[test]
    fn module_is_send_sync_and_session_is_send() {
        assert_send_sync::<Module>();
        assert_send::<TokenSession>();
    }
}
