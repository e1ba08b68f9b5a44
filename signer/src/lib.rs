#![doc = include_str!("../README.md")]

pub mod approvals;
pub mod audit;
pub mod error;
pub mod hsm;
pub mod psbt_io;
pub mod service;
pub mod sign;
pub mod store;

pub use error::SignError;
pub use hsm::{Hsm, HsmError, HsmKeyInfo, Pkcs11Hsm, SignRequest};
pub use sign::{MadeSignature, Signed, finalize_and_extract, sign_psbt};
