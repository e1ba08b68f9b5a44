//! Identifier newtypes. Each is a UUIDv7 (time-ordered), and each is its own type, so that
//! an account id can never be passed where a transaction id is meant.

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(uuid::Uuid);

        impl $name {
            /// A fresh, time-ordered id (UUIDv7).
            #[allow(clippy::new_without_default, reason = "a fresh id is not a default value")]
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7())
            }

            /// Wraps an existing UUID (from storage or a request).
            pub const fn from_uuid(id: uuid::Uuid) -> Self {
                Self(id)
            }

            /// The underlying UUID.
            pub const fn as_uuid(&self) -> uuid::Uuid {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                uuid::Uuid::parse_str(s).map(Self)
            }
        }

        impl From<$name> for uuid::Uuid {
            fn from(id: $name) -> uuid::Uuid {
                id.0
            }
        }
    };
}

id_type!(
    /// A ledger account (a user wallet, an omnibus or a system account).
    LedgerAccountId
);
id_type!(
    /// A customer's account (holds wallets).
    AccountId
);
id_type!(
    /// A wallet: the customer-facing view of one ledger account, with the same id.
    WalletId
);
id_type!(
    /// A registered user.
    UserId
);
id_type!(
    /// An API key.
    ApiKeyId
);
id_type!(
    /// A staff member.
    StaffId
);
id_type!(
    /// An internal payment.
    PaymentId
);
id_type!(
    /// A ledger journal.
    JournalId
);
id_type!(
    /// A posted ledger transaction.
    TransactionId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_v7_and_ordered() {
        let a = TransactionId::new();
        let b = TransactionId::new();
        assert_eq!(a.as_uuid().get_version_num(), 7);
        assert!(a < b);
        let parsed: TransactionId = a.to_string().parse().unwrap();
        assert_eq!(parsed, a);
    }
}
