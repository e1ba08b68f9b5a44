//! Starts the LND stand-in from tests (see this crate's README).
pub mod spawn;
