#![doc = include_str!("../README.md")]

pub mod db;
pub mod error;
pub mod softhsm;

pub use db::ScratchDatabase;
pub use error::{Error, Result};
