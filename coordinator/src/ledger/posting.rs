//! A posting request: the typed, validated content of one ledger transaction.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::types::{Currency, Direction, Layer};
use crate::amount::Msats;
use crate::ids::{JournalId, LedgerAccountId};

/// Longest accepted external id, in bytes.
pub const MAX_EXTERNAL_ID_LEN: usize = 200;
/// Most entries in one transaction.
pub const MAX_ENTRIES: usize = 64;
/// Longest description, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 1_000;

/// Why a posting is malformed. Nothing is written for a malformed posting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PostingError {
    /// The external id is empty or too long.
    #[error("posting: external id must be 1 to {MAX_EXTERNAL_ID_LEN} bytes, got {len}")]
    BadExternalId {
        /// Its length in bytes.
        len: usize,
    },
    /// Fewer than two entries.
    #[error("posting: needs at least two entries, got {count}")]
    TooFewEntries {
        /// How many were given.
        count: usize,
    },
    /// More than [`MAX_ENTRIES`] entries.
    #[error("posting: at most {MAX_ENTRIES} entries, got {count}")]
    TooManyEntries {
        /// How many were given.
        count: usize,
    },
    /// An entry of zero.
    #[error("posting: entry {index} has a zero amount")]
    ZeroAmount {
        /// Index of the entry.
        index: usize,
    },
    /// Debits and credits differ in one currency and layer.
    #[error(
        "posting: unbalanced in {currency} ({layer:?}): debits {debits} msat, credits {credits} msat"
    )]
    Unbalanced {
        /// The currency.
        currency: Currency,
        /// The layer.
        layer: Layer,
        /// Sum of debits.
        debits: u128,
        /// Sum of credits.
        credits: u128,
    },
    /// The description is too long.
    #[error("posting: description longer than {MAX_DESCRIPTION_LEN} bytes ({len})")]
    DescriptionTooLong {
        /// Its length in bytes.
        len: usize,
    },
}

/// One side of a posting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct EntryInput {
    /// The account moved.
    pub account_id: LedgerAccountId,
    /// Debit or credit.
    pub direction: Direction,
    /// Settled or pending.
    pub layer: Layer,
    /// Currency; must be the account's.
    pub currency: Currency,
    /// Amount in the currency's ledger unit (millisatoshi for BTC); never zero.
    pub amount: Msats,
}

/// A validated posting: balanced per currency and layer, with an idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posting {
    external_id: String,
    journal_id: JournalId,
    description: String,
    metadata: Option<serde_json::Value>,
    entries: Vec<EntryInput>,
}

/// Builds a [`Posting`]; `build` validates it.
#[derive(Clone, Debug)]
pub struct PostingBuilder {
    external_id: String,
    journal_id: JournalId,
    description: String,
    metadata: Option<serde_json::Value>,
    entries: Vec<EntryInput>,
}

impl PostingBuilder {
    /// Sets the description (memo).
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Attaches JSON metadata.
    pub fn metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Adds an entry.
    pub fn entry(
        mut self,
        account_id: LedgerAccountId,
        direction: Direction,
        layer: Layer,
        currency: Currency,
        amount: Msats,
    ) -> Self {
        self.entries.push(EntryInput {
            account_id,
            direction,
            layer,
            currency,
            amount,
        });
        self
    }

    /// Adds a settled BTC debit.
    pub fn debit(self, account_id: LedgerAccountId, amount: Msats) -> Self {
        self.entry(
            account_id,
            Direction::Debit,
            Layer::Settled,
            Currency::Btc,
            amount,
        )
    }

    /// Adds a settled BTC credit.
    pub fn credit(self, account_id: LedgerAccountId, amount: Msats) -> Self {
        self.entry(
            account_id,
            Direction::Credit,
            Layer::Settled,
            Currency::Btc,
            amount,
        )
    }

    /// Validates and returns the posting.
    ///
    /// # Errors
    /// A [`PostingError`] naming the first problem found.
    pub fn build(self) -> Result<Posting, PostingError> {
        let len = self.external_id.len();
        if len == 0 || len > MAX_EXTERNAL_ID_LEN {
            return Err(PostingError::BadExternalId { len });
        }
        if self.description.len() > MAX_DESCRIPTION_LEN {
            return Err(PostingError::DescriptionTooLong {
                len: self.description.len(),
            });
        }
        let count = self.entries.len();
        if count < 2 {
            return Err(PostingError::TooFewEntries { count });
        }
        if count > MAX_ENTRIES {
            return Err(PostingError::TooManyEntries { count });
        }
        // u128 sums cannot overflow: at most 64 entries of at most 2.1e18.
        let mut sums: BTreeMap<(Currency, Layer), (u128, u128)> = BTreeMap::new();
        for (index, e) in self.entries.iter().enumerate() {
            if e.amount == Msats::ZERO {
                return Err(PostingError::ZeroAmount { index });
            }
            let s = sums.entry((e.currency, e.layer)).or_default();
            match e.direction {
                Direction::Debit => s.0 += u128::from(e.amount.to_msat()),
                Direction::Credit => s.1 += u128::from(e.amount.to_msat()),
            }
        }
        for ((currency, layer), (debits, credits)) in sums {
            if debits != credits {
                return Err(PostingError::Unbalanced {
                    currency,
                    layer,
                    debits,
                    credits,
                });
            }
        }
        Ok(Posting {
            external_id: self.external_id,
            journal_id: self.journal_id,
            description: self.description,
            metadata: self.metadata,
            entries: self.entries,
        })
    }
}

impl Posting {
    /// Starts a posting in `journal_id` with the caller's idempotency key.
    pub fn builder(journal_id: JournalId, external_id: impl Into<String>) -> PostingBuilder {
        PostingBuilder {
            external_id: external_id.into(),
            journal_id,
            description: String::new(),
            metadata: None,
            entries: Vec::new(),
        }
    }

    /// A settled BTC transfer: debit `from`, credit `to`. Between two user wallets (both
    /// credit-normal) this moves `amount` from `from` to `to`.
    ///
    /// # Errors
    /// As [`PostingBuilder::build`].
    pub fn transfer(
        journal_id: JournalId,
        external_id: impl Into<String>,
        from: LedgerAccountId,
        to: LedgerAccountId,
        amount: Msats,
        description: impl Into<String>,
    ) -> Result<Posting, PostingError> {
        Posting::builder(journal_id, external_id)
            .description(description)
            .debit(from, amount)
            .credit(to, amount)
            .build()
    }

    /// The idempotency key.
    pub fn external_id(&self) -> &str {
        &self.external_id
    }

    /// The journal.
    pub fn journal_id(&self) -> JournalId {
        self.journal_id
    }

    /// The description (memo).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The metadata.
    pub fn metadata(&self) -> Option<&serde_json::Value> {
        self.metadata.as_ref()
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[EntryInput] {
        &self.entries
    }

    /// SHA-256 of the canonical content, used to tell a replay (same content) from a
    /// conflicting reuse of the external id.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        };
        field(b"posting-v1");
        field(self.external_id.as_bytes());
        field(self.journal_id.as_uuid().as_bytes());
        field(self.description.as_bytes());
        // serde_json's map is ordered by key, so this encoding is canonical.
        let meta = self
            .metadata
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default();
        field(meta.as_bytes());
        for e in &self.entries {
            field(e.account_id.as_uuid().as_bytes());
            field(e.direction.as_str().as_bytes());
            field(e.layer.as_str().as_bytes());
            field(e.currency.code().as_bytes());
            field(&e.amount.to_msat().to_be_bytes());
        }
        h.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::types::system::MAIN_JOURNAL;

    fn m(v: u64) -> Msats {
        Msats::new(v).unwrap()
    }

    #[test]
    fn rejects_malformed_postings() {
        let a = LedgerAccountId::new();
        let b = LedgerAccountId::new();
        assert_eq!(
            Posting::transfer(MAIN_JOURNAL, "", a, b, m(1), "").unwrap_err(),
            PostingError::BadExternalId { len: 0 }
        );
        assert_eq!(
            Posting::transfer(MAIN_JOURNAL, "x".repeat(201), a, b, m(1), "").unwrap_err(),
            PostingError::BadExternalId { len: 201 }
        );
        assert_eq!(
            Posting::transfer(MAIN_JOURNAL, "t", a, b, Msats::ZERO, "").unwrap_err(),
            PostingError::ZeroAmount { index: 0 }
        );
        assert_eq!(
            Posting::builder(MAIN_JOURNAL, "t")
                .debit(a, m(5))
                .build()
                .unwrap_err(),
            PostingError::TooFewEntries { count: 1 }
        );
        let unbalanced = Posting::builder(MAIN_JOURNAL, "t")
            .debit(a, m(5))
            .credit(b, m(4))
            .build()
            .unwrap_err();
        assert!(matches!(
            unbalanced,
            PostingError::Unbalanced {
                debits: 5,
                credits: 4,
                ..
            }
        ));
        // Balanced in total but not per layer.
        let cross_layer = Posting::builder(MAIN_JOURNAL, "t")
            .debit(a, m(5))
            .entry(b, Direction::Credit, Layer::Pending, Currency::Btc, m(5))
            .build()
            .unwrap_err();
        assert!(matches!(cross_layer, PostingError::Unbalanced { .. }));
    }

    #[test]
    fn fingerprint_depends_on_content() {
        let a = LedgerAccountId::new();
        let b = LedgerAccountId::new();
        let p1 = Posting::transfer(MAIN_JOURNAL, "t", a, b, m(5), "memo").unwrap();
        let p2 = Posting::transfer(MAIN_JOURNAL, "t", a, b, m(5), "memo").unwrap();
        let p3 = Posting::transfer(MAIN_JOURNAL, "t", a, b, m(6), "memo").unwrap();
        let p4 = Posting::transfer(MAIN_JOURNAL, "t", b, a, m(5), "memo").unwrap();
        assert_eq!(p1.fingerprint(), p2.fingerprint());
        assert_ne!(p1.fingerprint(), p3.fingerprint());
        assert_ne!(p1.fingerprint(), p4.fingerprint());
    }
}
