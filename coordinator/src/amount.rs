//! Money amounts: integer newtypes with checked arithmetic. There are no floats here.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Satoshis in 21 million bitcoin: no amount of bitcoin can exceed this.
pub const MAX_MONEY_SATS: u64 = 21_000_000 * 100_000_000;

/// Millisatoshis per satoshi.
pub const MSATS_PER_SAT: u64 = 1_000;

/// An amount arithmetic or conversion that would leave the valid range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AmountError {
    /// The result exceeds 21 million bitcoin.
    #[error("amount {msats} msat exceeds 21 million bitcoin")]
    TooLarge {
        /// The offending amount in millisatoshi (saturated if it overflowed).
        msats: u128,
    },
    /// A subtraction would go below zero.
    #[error("amount would go below zero")]
    Negative,
    /// A millisatoshi amount is not a whole number of satoshis.
    #[error("{msats} msat is not a whole number of satoshis")]
    FractionalSats {
        /// The amount in millisatoshi.
        msats: u64,
    },
}

/// An amount in satoshis, at most 21 million bitcoin.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "u64", into = "u64")]
pub struct Sats(u64);

/// An amount in millisatoshis (Lightning precision), at most 21 million bitcoin.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "u64", into = "u64")]
pub struct Msats(u64);

impl Sats {
    /// Zero satoshis.
    pub const ZERO: Sats = Sats(0);

    /// A satoshi amount.
    ///
    /// # Errors
    /// [`AmountError::TooLarge`] above 21 million bitcoin.
    pub const fn new(sats: u64) -> Result<Self, AmountError> {
        if sats > MAX_MONEY_SATS {
            return Err(AmountError::TooLarge {
                msats: sats as u128 * MSATS_PER_SAT as u128,
            });
        }
        Ok(Sats(sats))
    }

    /// The number of satoshis.
    pub const fn to_sat(self) -> u64 {
        self.0
    }

    /// The same amount in millisatoshis (always exact).
    pub const fn to_msats(self) -> Msats {
        // Cannot overflow: at most 2.1e15 sats times 1000 is 2.1e18 < u64::MAX.
        Msats(self.0 * MSATS_PER_SAT)
    }

    /// `self + other`.
    ///
    /// # Errors
    /// [`AmountError::TooLarge`] above 21 million bitcoin.
    pub fn checked_add(self, other: Sats) -> Result<Sats, AmountError> {
        Sats::new(self.0.saturating_add(other.0))
    }

    /// `self - other`.
    ///
    /// # Errors
    /// [`AmountError::Negative`] if `other > self`.
    pub fn checked_sub(self, other: Sats) -> Result<Sats, AmountError> {
        self.0
            .checked_sub(other.0)
            .map(Sats)
            .ok_or(AmountError::Negative)
    }
}

impl Msats {
    /// Zero millisatoshis.
    pub const ZERO: Msats = Msats(0);

    /// The largest amount: 21 million bitcoin in millisatoshis.
    pub const MAX: Msats = Msats(MAX_MONEY_SATS * MSATS_PER_SAT);

    /// A millisatoshi amount.
    ///
    /// # Errors
    /// [`AmountError::TooLarge`] above 21 million bitcoin.
    pub const fn new(msats: u64) -> Result<Self, AmountError> {
        if msats > Self::MAX.0 {
            return Err(AmountError::TooLarge {
                msats: msats as u128,
            });
        }
        Ok(Msats(msats))
    }

    /// The number of millisatoshis.
    pub const fn to_msat(self) -> u64 {
        self.0
    }

    /// The amount as a signed ledger value (always fits: at most 2.1e18).
    pub const fn to_i64(self) -> i64 {
        // At most MAX (2.1e18) which is below i64::MAX (9.2e18).
        self.0 as i64
    }

    /// Whole satoshis, rounding down (the sub-satoshi part is dropped).
    pub const fn to_sats_floor(self) -> Sats {
        Sats(self.0 / MSATS_PER_SAT)
    }

    /// Exact conversion to satoshis.
    ///
    /// # Errors
    /// [`AmountError::FractionalSats`] if the amount is not a whole number of satoshis.
    pub const fn to_sats_exact(self) -> Result<Sats, AmountError> {
        if !self.0.is_multiple_of(MSATS_PER_SAT) {
            return Err(AmountError::FractionalSats { msats: self.0 });
        }
        Ok(Sats(self.0 / MSATS_PER_SAT))
    }

    /// `self + other`.
    ///
    /// # Errors
    /// [`AmountError::TooLarge`] above 21 million bitcoin.
    pub fn checked_add(self, other: Msats) -> Result<Msats, AmountError> {
        Msats::new(self.0.saturating_add(other.0))
    }

    /// `self - other`.
    ///
    /// # Errors
    /// [`AmountError::Negative`] if `other > self`.
    pub fn checked_sub(self, other: Msats) -> Result<Msats, AmountError> {
        self.0
            .checked_sub(other.0)
            .map(Msats)
            .ok_or(AmountError::Negative)
    }
}

impl From<Sats> for Msats {
    fn from(s: Sats) -> Self {
        s.to_msats()
    }
}

impl TryFrom<u64> for Sats {
    type Error = AmountError;
    fn try_from(v: u64) -> Result<Self, Self::Error> {
        Sats::new(v)
    }
}

impl TryFrom<u64> for Msats {
    type Error = AmountError;
    fn try_from(v: u64) -> Result<Self, Self::Error> {
        Msats::new(v)
    }
}

impl From<Sats> for u64 {
    fn from(s: Sats) -> u64 {
        s.0
    }
}

impl From<Msats> for u64 {
    fn from(s: Msats) -> u64 {
        s.0
    }
}

impl fmt::Display for Sats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} sat", self.0)
    }
}

impl fmt::Display for Msats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} msat", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_enforced() {
        assert!(Sats::new(MAX_MONEY_SATS).is_ok());
        assert!(matches!(
            Sats::new(MAX_MONEY_SATS + 1),
            Err(AmountError::TooLarge { .. })
        ));
        assert!(Msats::new(MAX_MONEY_SATS * 1000 + 1).is_err());
        assert_eq!(Sats::new(MAX_MONEY_SATS).unwrap().to_msats(), Msats::MAX);
        assert!(Msats::MAX.checked_add(Msats::new(1).unwrap()).is_err());
        assert_eq!(
            Msats::ZERO.checked_sub(Msats::new(1).unwrap()),
            Err(AmountError::Negative)
        );
    }

    #[test]
    fn sat_conversions() {
        let m = Msats::new(1_999).unwrap();
        assert_eq!(m.to_sats_floor(), Sats::new(1).unwrap());
        assert_eq!(
            m.to_sats_exact(),
            Err(AmountError::FractionalSats { msats: 1_999 })
        );
        assert_eq!(
            Msats::new(2_000).unwrap().to_sats_exact(),
            Ok(Sats::new(2).unwrap())
        );
    }

    #[test]
    fn serde_rejects_out_of_range() {
        let too_big = format!("{}", MAX_MONEY_SATS + 1);
        assert!(serde_json::from_str::<Sats>(&too_big).is_err());
        assert_eq!(
            serde_json::from_str::<Sats>("5").unwrap(),
            Sats::new(5).unwrap()
        );
    }
}
