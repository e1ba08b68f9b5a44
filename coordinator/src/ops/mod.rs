//! Running the coordinator: its configuration, metrics and readiness.

pub mod config;
pub mod defaults;
pub mod load;
pub mod secret;

pub use config::{Config, InvalidValue, LogFormat};
pub use load::{ConfigError, load};
pub use secret::DatabaseUrl;
pub mod readiness;

pub use readiness::{Readiness, ReadinessCheck, ReadinessReport};
pub mod metrics;
