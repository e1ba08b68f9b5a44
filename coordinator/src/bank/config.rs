//! Configuration of the bank service: limits per KYC level, token lifetimes, password cost.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::secrets::PasswordCost;
use super::types::Level;
use crate::amount::Sats;

/// Limits of one KYC level over a rolling 24 hours, in satoshis.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LevelLimits {
    /// Internal sends (to other wallets of this bank).
    pub internal_send: Sats,
    /// Withdrawals (on-chain and Lightning out).
    pub withdrawal: Sats,
}

/// Limits for levels 0 to 3.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Level 0: no identity checked.
    pub level0: LevelLimits,
    /// Level 1.
    pub level1: LevelLimits,
    /// Level 2.
    pub level2: LevelLimits,
    /// Level 3.
    pub level3: LevelLimits,
}

impl LimitsConfig {
    /// The limits of a level.
    pub fn of(&self, level: Level) -> LevelLimits {
        match level.get() {
            0 => self.level0,
            1 => self.level1,
            2 => self.level2,
            _ => self.level3,
        }
    }
}

const fn sats(v: u64) -> Sats {
    match Sats::new(v) {
        Ok(s) => s,
        Err(_) => Sats::ZERO,
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            level0: LevelLimits {
                internal_send: sats(100_000),
                withdrawal: sats(0),
            },
            level1: LevelLimits {
                internal_send: sats(1_000_000),
                withdrawal: sats(500_000),
            },
            level2: LevelLimits {
                internal_send: sats(10_000_000),
                withdrawal: sats(5_000_000),
            },
            level3: LevelLimits {
                internal_send: sats(100_000_000),
                withdrawal: sats(50_000_000),
            },
        }
    }
}

/// Everything the bank service is configured with.
#[derive(Clone, Debug)]
pub struct BankConfig {
    /// Limits per level.
    pub limits: LimitsConfig,
    /// How long a login session lasts.
    pub session_ttl: Duration,
    /// How long a one-time code is valid.
    pub code_ttl: Duration,
    /// How long a registration may stay unverified before it is deleted (its identity is
    /// then free again; an unverified registration never blocks the owner meanwhile).
    pub registration_ttl: Duration,
    /// Wrong guesses allowed per one-time code.
    pub max_code_attempts: i32,
    /// Argon2id cost for new password hashes.
    pub password_cost: PasswordCost,
    /// How long an authentication may be answered from memory (revocations still reach
    /// every instance at once); zero reads the database for every request.
    pub auth_cache_ttl: Duration,
}

impl Default for BankConfig {
    fn default() -> Self {
        BankConfig {
            limits: LimitsConfig::default(),
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            code_ttl: Duration::from_secs(10 * 60),
            registration_ttl: Duration::from_secs(24 * 3600),
            max_code_attempts: 5,
            password_cost: PasswordCost::default(),
            auth_cache_ttl: Duration::from_secs(30),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_load_from_toml_and_refuse_unknown_fields() {
        let text = r#"
            level0 = { internal_send = 1000, withdrawal = 0 }
            level1 = { internal_send = 2000, withdrawal = 100 }
            level2 = { internal_send = 3000, withdrawal = 200 }
            level3 = { internal_send = 4000, withdrawal = 300 }
        "#;
        let c: LimitsConfig = toml::from_str(text).unwrap();
        assert_eq!(c.of(Level::new(2).unwrap()).internal_send.to_sat(), 3000);
        let typo = text.replace("withdrawal = 300", "withdrawl = 300");
        assert!(toml::from_str::<LimitsConfig>(&typo).is_err());
        let too_much = text.replace("4000", "2100000000000001");
        assert!(toml::from_str::<LimitsConfig>(&too_much).is_err());
    }
}
