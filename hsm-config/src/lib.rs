#![doc = include_str!("../README.md")]

pub mod ecdsa;
pub mod error;
pub mod pin;
pub mod profile;
pub mod token;

pub use error::{Error, Result};
pub use pin::{SoPin, UserPin};
pub use profile::Profile;
pub use token::{KeyAttributes, KeyInfo, Module, ObjectHandle, TokenSession, TokenSummary};
