//! Compliance alerts of reorgs after settlement, and the operators' resolutions: reverse
//! the credit (one ledger transaction, idempotent) or dismiss.

use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::{DEPOSIT_COLUMNS, corrupt, deposit_from_row};
use crate::deposits::{AlertResolution, DepositAlert, DepositError};
use crate::ids::TransactionId;
use crate::ledger::{Ledger, LedgerError, Posting, system};

pub(in crate::deposits) async fn alerts(
    pool: &PgPool,
    open_only: bool,
    id: Option<Uuid>,
) -> Result<Vec<DepositAlert>, DepositError> {
    let rows = sqlx::query(&format!(
        "SELECT {DEPOSIT_COLUMNS}, a.id AS alert_id, a.kind, a.block_height AS alert_height, \
                a.created_at AS alert_created_at, a.resolution, a.resolved_by, \
                a.resolution_reason, a.reversal_transaction_id \
         FROM deposit_alerts a JOIN deposits d ON d.id = a.deposit_id \
         WHERE (NOT $1 OR a.resolution IS NULL) AND ($2::uuid IS NULL OR a.id = $2) \
         ORDER BY a.created_at, a.id LIMIT 1000"
    ))
    .bind(open_only)
    .bind(id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let resolution: Option<String> = r.try_get("resolution")?;
            let height: i32 = r.try_get("alert_height")?;
            let reversal: Option<Uuid> = r.try_get("reversal_transaction_id")?;
            Ok(DepositAlert {
                deposit: deposit_from_row(r)?,
                id: r.try_get("alert_id")?,
                kind: r.try_get("kind")?,
                block_height: u32::try_from(height).map_err(corrupt)?,
                created_at: r.try_get("alert_created_at")?,
                resolution: match resolution.as_deref() {
                    None => None,
                    Some("REVERSED") => Some(AlertResolution::Reversed),
                    Some("DISMISSED") => Some(AlertResolution::Dismissed),
                    Some(other) => return Err(corrupt(format!("alert resolution {other:?}"))),
                },
                resolved_by: r.try_get("resolved_by")?,
                resolution_reason: r.try_get("resolution_reason")?,
                reversal_transaction_id: reversal.map(TransactionId::from_uuid),
            })
        })
        .collect()
}

async fn alert(pool: &PgPool, id: Uuid) -> Result<DepositAlert, DepositError> {
    alerts(pool, false, Some(id))
        .await?
        .pop()
        .ok_or(DepositError::NotFound { what: "alert" })
}

/// Whether `a` is already resolved as `wanted` (asking again answers the same); `false`
/// while it is open.
///
/// # Errors
/// [`DepositError::AlreadyResolved`] if it was resolved the other way, which cannot change.
fn resolved_as(a: &DepositAlert, wanted: AlertResolution) -> Result<bool, DepositError> {
    match a.resolution {
        None => Ok(false),
        Some(r) if r == wanted => Ok(true),
        Some(other) => Err(DepositError::AlreadyResolved {
            alert: a.id,
            resolution: match other {
                AlertResolution::Reversed => "REVERSED",
                AlertResolution::Dismissed => "DISMISSED",
            }
            .into(),
        }),
    }
}

pub(in crate::deposits) async fn reverse(
    pool: &PgPool,
    ledger: &Ledger,
    id: Uuid,
    actor: &str,
    reason: &str,
) -> Result<DepositAlert, DepositError> {
    let a = alert(pool, id).await?;
    if resolved_as(&a, AlertResolution::Reversed)? {
        return Ok(a);
    }
    let d = &a.deposit;
    let posting = Posting::transfer(
        system::MAIN_JOURNAL,
        crate::deposits::reversal_external_id(&d.outpoint),
        crate::bank::Bank::ledger_account(d.wallet_id),
        system::BANK_ONCHAIN,
        d.amount.to_msats(),
        format!("reversal of on-chain deposit {} (reorg)", d.outpoint),
    )
    .map_err(|e| DepositError::Ledger(LedgerError::from(e)))?;
    // Idempotent by external id: a crash after posting posts again and gets the original.
    let posted = ledger.post(posting).await?;
    let mut tx = pool.begin().await?;
    let updated = sqlx::query(
        "UPDATE deposit_alerts SET resolution = 'REVERSED', resolved_by = $2, \
         resolution_reason = $3, resolved_at = now(), reversal_transaction_id = $4 \
         WHERE id = $1 AND resolution IS NULL",
    )
    .bind(id)
    .bind(actor)
    .bind(reason)
    .bind(posted.id.as_uuid())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 1 {
        sqlx::query(
            "UPDATE deposits SET state = 'REVERSED', updated_at = now() \
             WHERE id = $1 AND state = 'SETTLED'",
        )
        .bind(d.id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    alert(pool, id).await
}

pub(in crate::deposits) async fn dismiss(
    pool: &PgPool,
    id: Uuid,
    actor: &str,
    reason: &str,
) -> Result<DepositAlert, DepositError> {
    let a = alert(pool, id).await?;
    if resolved_as(&a, AlertResolution::Dismissed)? {
        return Ok(a);
    }
    sqlx::query(
        "UPDATE deposit_alerts SET resolution = 'DISMISSED', resolved_by = $2, \
         resolution_reason = $3, resolved_at = now() WHERE id = $1 AND resolution IS NULL",
    )
    .bind(id)
    .bind(actor)
    .bind(reason)
    .execute(pool)
    .await?;
    // If another operator reversed it meanwhile, the UPDATE changed nothing: say so.
    let a = alert(pool, id).await?;
    resolved_as(&a, AlertResolution::Dismissed)?;
    Ok(a)
}
