//! The one error of the test support.

use std::path::PathBuf;

/// What can go wrong while preparing a test's database or token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Preparing a SoftHSM2 directory or running an isolated test failed.
    #[error("softhsm2 test support: {context}")]
    SoftHsm {
        /// What we were doing.
        context: String,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// `SOFTHSM2_CONF` is not set: refuse to touch the system-wide token directory.
    #[error("SOFTHSM2_CONF is not set: start the process with it (see test_support::softhsm)")]
    SoftHsmConfNotSet,

    /// The SoftHSM2 module could not be found.
    #[error("no SoftHSM2 module found (set SOFTHSM2_MODULE; tried {tried:?})")]
    SoftHsmModuleNotFound {
        /// The paths tried.
        tried: Vec<PathBuf>,
    },

    /// The token refused or failed an operation.
    #[error(transparent)]
    Token(#[from] hsm_config::Error),
}

/// The test support's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
