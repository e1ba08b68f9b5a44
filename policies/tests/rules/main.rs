//! The rules engine on PSBTs built by bdk_wallet: each rule passing, and each rule attacked.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;
mod support;

mod amounts;
mod outputs;
mod quorum;
mod transaction;
