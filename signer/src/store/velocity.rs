//! The velocity ledger: value leaving each policy, read again and written
//! under the policy's row lock in the transaction that records the signature
//! (a lock-free read before the HSM call is only a pre-check).

use bitcoin::Amount;
use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::{RequestId, Store, StoreError, Tx};

/// One payment to count.
#[derive(Debug, Clone)]
pub struct Payment<'a> {
    /// The policy it leaves.
    pub policy_id: &'a str,
    /// `PayoutFingerprint::payout_digest`: SHA-256 over its sorted payouts.
    pub payout_fingerprint: [u8; 32],
    /// The outpoints it spends.
    pub inputs: Vec<String>,
    /// Payouts plus fee.
    pub value_out: Amount,
    /// The request that signed it.
    pub request_id: RequestId,
}

/// What [`Store::record_payment_in_tx`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// A new payment: its whole value counts.
    New,
    /// A replacement of an earlier payment: only the increase (if any) counts.
    Replacement {
        /// The value counted before.
        previous: Amount,
    },
}

fn sat(amount: Amount) -> Result<i64, StoreError> {
    i64::try_from(amount.to_sat()).map_err(|_| StoreError::Invalid {
        what: "amount",
        detail: format!("{amount} does not fit a BIGINT"),
    })
}

impl Store {
    /// Locks the policy's state row for the rest of `tx` and returns the highest
    /// receive and change indexes used so far. Every signing of the policy takes
    /// this lock before it re-reads the velocity facts and records its payment,
    /// so those reads and writes never race.
    ///
    /// # Errors
    /// A database failure, or an unregistered policy.
    pub async fn lock_policy_in_tx(
        tx: &mut Tx,
        policy_id: &str,
    ) -> Result<(Option<u32>, Option<u32>), StoreError> {
        Store::policy_indexes_in_tx(tx, policy_id, true).await
    }

    /// The highest receive and change indexes used so far; with `lock`, the
    /// policy's state row stays locked for the rest of `tx` (see
    /// [`Store::lock_policy_in_tx`]), without it this is a plain read (a
    /// pre-check whose answer may be stale by the time it is used).
    ///
    /// # Errors
    /// A database failure, or an unregistered policy.
    pub async fn policy_indexes_in_tx(
        tx: &mut Tx,
        policy_id: &str,
        lock: bool,
    ) -> Result<(Option<u32>, Option<u32>), StoreError> {
        let sql = if lock {
            "SELECT highest_receive_index, highest_change_index FROM signer_policy_state
             WHERE policy_id = $1 FOR UPDATE"
        } else {
            "SELECT highest_receive_index, highest_change_index FROM signer_policy_state
             WHERE policy_id = $1"
        };
        let row = sqlx::query(sql)
            .bind(policy_id)
            .fetch_optional(&mut **tx)
            .await?;
        let row = row.ok_or(StoreError::Invalid {
            what: "policy",
            detail: format!("policy {policy_id} is not registered"),
        })?;
        let receive: i64 = row.try_get("highest_receive_index")?;
        let change: i64 = row.try_get("highest_change_index")?;
        Ok((u32::try_from(receive).ok(), u32::try_from(change).ok()))
    }

    /// Raises the policy's highest used indexes (never lowers them).
    ///
    /// # Errors
    /// A database failure, or an index of 2^31 or more.
    pub async fn raise_indexes_in_tx(
        tx: &mut Tx,
        policy_id: &str,
        receive: Option<u32>,
        change: Option<u32>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE signer_policy_state
             SET highest_receive_index = GREATEST(highest_receive_index, $2),
                 highest_change_index = GREATEST(highest_change_index, $3)
             WHERE policy_id = $1",
        )
        .bind(policy_id)
        .bind(receive.map_or(-1, i64::from))
        .bind(change.map_or(-1, i64::from))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Value that left the policy at or after `since` (exact under the policy lock,
    /// a pre-check without it).
    ///
    /// # Errors
    /// A database failure, or a sum past 21 million BTC (a corrupt ledger).
    pub async fn spent_since_in_tx(
        tx: &mut Tx,
        policy_id: &str,
        since: DateTime<Utc>,
    ) -> Result<Amount, StoreError> {
        let total: Option<i64> = sqlx::query_scalar(
            "SELECT SUM(value_out_sat)::BIGINT FROM signer_velocity
             WHERE policy_id = $1 AND signed_at >= $2",
        )
        .bind(policy_id)
        .bind(since)
        .fetch_one(&mut **tx)
        .await?;
        let total = u64::try_from(total.unwrap_or(0)).map_err(|_| StoreError::Corrupt {
            what: "velocity ledger",
            detail: "negative sum".into(),
        })?;
        Amount::from_sat(total)
            .checked_add(Amount::ZERO)
            .filter(|a| *a <= Amount::MAX_MONEY)
            .ok_or(StoreError::Corrupt {
                what: "velocity ledger",
                detail: "sum above the money supply".into(),
            })
    }

    /// The value an earlier payment with the same payouts and a shared input
    /// already counted, if `payment` replaces one (call under the policy lock).
    ///
    /// # Errors
    /// A database failure.
    pub async fn replaced_value_in_tx(
        tx: &mut Tx,
        policy_id: &str,
        payout_fingerprint: &[u8; 32],
        inputs: &[String],
    ) -> Result<Option<Amount>, StoreError> {
        let previous: Option<i64> = sqlx::query_scalar(
            "SELECT value_out_sat FROM signer_velocity
             WHERE policy_id = $1 AND payout_fingerprint = $2 AND inputs && $3
             ORDER BY signed_at LIMIT 1",
        )
        .bind(policy_id)
        .bind(payout_fingerprint.as_slice())
        .bind(inputs)
        .fetch_optional(&mut **tx)
        .await?;
        previous
            .map(|v| {
                u64::try_from(v)
                    .map(Amount::from_sat)
                    .map_err(|_| StoreError::Corrupt {
                        what: "velocity ledger",
                        detail: "negative value".into(),
                    })
            })
            .transpose()
    }

    /// Counts `payment` in the policy's velocity (call under the policy lock): a
    /// replacement raises its earlier row to the higher value; anything else adds a row.
    ///
    /// # Errors
    /// A database failure.
    pub async fn record_payment_in_tx(
        tx: &mut Tx,
        payment: &Payment<'_>,
        now: DateTime<Utc>,
    ) -> Result<Counted, StoreError> {
        let value = sat(payment.value_out)?;
        if let Some(previous) = Store::replaced_value_in_tx(
            tx,
            payment.policy_id,
            &payment.payout_fingerprint,
            &payment.inputs,
        )
        .await?
        {
            sqlx::query(
                "UPDATE signer_velocity
                 SET value_out_sat = GREATEST(value_out_sat, $4),
                     inputs = ARRAY(SELECT DISTINCT unnest(inputs || $3)),
                     last_request_id = $5
                 WHERE id = (SELECT id FROM signer_velocity
                             WHERE policy_id = $1 AND payout_fingerprint = $2 AND inputs && $3
                             ORDER BY signed_at LIMIT 1)",
            )
            .bind(payment.policy_id)
            .bind(payment.payout_fingerprint.as_slice())
            .bind(&payment.inputs)
            .bind(value)
            .bind(payment.request_id.0)
            .execute(&mut **tx)
            .await?;
            return Ok(Counted::Replacement { previous });
        }
        sqlx::query(
            "INSERT INTO signer_velocity (id, policy_id, payout_fingerprint, inputs, value_out_sat,
               first_request_id, last_request_id, signed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
        )
        .bind(Uuid::now_v7())
        .bind(payment.policy_id)
        .bind(payment.payout_fingerprint.as_slice())
        .bind(&payment.inputs)
        .bind(value)
        .bind(payment.request_id.0)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(Counted::New)
    }
}
