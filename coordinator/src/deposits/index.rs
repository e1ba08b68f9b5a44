//! The [`ScriptIndex`] over the wallets' address book (`onchain_scripts`).

use std::collections::HashMap;

use async_trait::async_trait;
use bdk_wallet::bitcoin::ScriptBuf;
use sqlx::Row;
use uuid::Uuid;

use super::{DepositError, ScriptIndex, ScriptOwner};
use crate::ids::{AccountId, WalletId};
use crate::wallets::Wallets;

/// Our scripts as the wallets' address book knows them, each credited to its account's
/// default (BTC) wallet.
#[derive(Debug, Clone)]
pub struct AddressBookIndex {
    wallets: Wallets,
}

impl AddressBookIndex {
    /// Over the wallets' address book.
    pub fn new(wallets: Wallets) -> AddressBookIndex {
        AddressBookIndex { wallets }
    }
}

#[async_trait]
impl ScriptIndex for AddressBookIndex {
    async fn owners(
        &self,
        scripts: &[ScriptBuf],
    ) -> Result<HashMap<ScriptBuf, ScriptOwner>, DepositError> {
        let records = self
            .wallets
            .lookup_scripts(scripts)
            .await
            .map_err(|e| DepositError::Index(e.to_string()))?;
        // The bank's own scripts (change) have no account: they are not deposits.
        let accounts: Vec<Uuid> = records
            .iter()
            .filter_map(|r| r.account.map(|a| a.as_uuid()))
            .collect();
        if accounts.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = sqlx::query(
            "SELECT id, default_wallet_id FROM accounts \
             WHERE id = ANY($1) AND default_wallet_id IS NOT NULL",
        )
        .bind(&accounts)
        .fetch_all(self.wallets.pool())
        .await?;
        let mut wallet_of: HashMap<Uuid, Uuid> = HashMap::new();
        for r in rows {
            wallet_of.insert(r.try_get("id")?, r.try_get("default_wallet_id")?);
        }
        Ok(records
            .into_iter()
            .filter_map(|r| {
                let account = r.account?;
                let wallet = wallet_of.get(&account.as_uuid())?;
                Some((
                    r.script_pubkey,
                    ScriptOwner {
                        wallet_id: WalletId::from_uuid(*wallet),
                        account_id: AccountId::from_uuid(account.as_uuid()),
                        address: r.address.to_string(),
                    },
                ))
            })
            .collect())
    }
}
