//! The invariant checker: reads the whole store and reports every broken invariant.

use std::fmt;

use serde::Serialize;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::error::LedgerError;
use crate::ids::{LedgerAccountId, TransactionId};

/// Most violations reported per kind.
const LIMIT: i64 = 100;

/// One broken invariant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum Violation {
    /// A transaction's debits and credits differ in one currency and layer.
    UnbalancedTransaction {
        /// The transaction.
        transaction_id: TransactionId,
        /// Currency code.
        currency: String,
        /// Layer.
        layer: String,
        /// Debits minus credits.
        difference: i128,
    },
    /// A transaction with fewer than two entries.
    TooFewEntries {
        /// The transaction.
        transaction_id: TransactionId,
        /// How many it has.
        entries: i64,
    },
    /// A void (an external id taken so that nothing posts it) with entries.
    VoidWithEntries {
        /// The transaction.
        transaction_id: TransactionId,
        /// How many it has.
        entries: i64,
    },
    /// The balances of one currency and layer, signed debit-positive, do not sum to zero.
    NonZeroTotal {
        /// Currency code.
        currency: String,
        /// Layer.
        layer: String,
        /// The sum.
        total: i128,
    },
    /// An account that may not go negative is below zero.
    NegativeBalance {
        /// The account.
        account_id: LedgerAccountId,
        /// Settled balance.
        settled: i64,
        /// Pending balance.
        pending: i64,
    },
    /// A stored balance differs from the sum of the account's entries.
    BalanceMismatch {
        /// The account.
        account_id: LedgerAccountId,
        /// Stored settled balance.
        stored_settled: i64,
        /// Stored pending balance.
        stored_pending: i64,
        /// Settled sum of entries.
        entries_settled: i128,
        /// Pending sum of entries.
        entries_pending: i128,
    },
    /// An entry's currency differs from its account's.
    CurrencyMismatch {
        /// The transaction.
        transaction_id: TransactionId,
        /// The account.
        account_id: LedgerAccountId,
    },
    /// A row refers to a journal, transaction or account that does not exist.
    Orphan {
        /// What kind of row ("entry", "transaction", "outbox event").
        row: String,
        /// What is missing ("transaction", "account", "journal").
        missing: String,
        /// The missing id.
        id: Uuid,
    },
    /// An account has no balance row, or its row disagrees with it on currency or sign rule.
    BalanceRowMismatch {
        /// The account.
        account_id: LedgerAccountId,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::UnbalancedTransaction {
                transaction_id,
                currency,
                layer,
                difference,
            } => write!(
                f,
                "transaction {transaction_id} unbalanced in {currency}/{layer} by {difference}"
            ),
            Violation::TooFewEntries {
                transaction_id,
                entries,
            } => write!(f, "transaction {transaction_id} has {entries} entries"),
            Violation::VoidWithEntries {
                transaction_id,
                entries,
            } => write!(f, "void {transaction_id} has {entries} entries"),
            Violation::NonZeroTotal {
                currency,
                layer,
                total,
            } => write!(f, "balances in {currency}/{layer} sum to {total}, not zero"),
            Violation::NegativeBalance {
                account_id,
                settled,
                pending,
            } => write!(
                f,
                "account {account_id} below zero: settled {settled}, pending {pending}"
            ),
            Violation::BalanceMismatch {
                account_id,
                stored_settled,
                stored_pending,
                entries_settled,
                entries_pending,
            } => write!(
                f,
                "account {account_id} stores {stored_settled}/{stored_pending} but its entries \
                 sum to {entries_settled}/{entries_pending}"
            ),
            Violation::CurrencyMismatch {
                transaction_id,
                account_id,
            } => write!(
                f,
                "transaction {transaction_id} has an entry on {account_id} in another currency"
            ),
            Violation::Orphan { row, missing, id } => {
                write!(f, "{row} refers to missing {missing} {id}")
            }
            Violation::BalanceRowMismatch { account_id } => {
                write!(
                    f,
                    "account {account_id} has a missing or inconsistent balance row"
                )
            }
        }
    }
}

/// What [`verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Accounts checked.
    pub accounts: i64,
    /// Transactions checked.
    pub transactions: i64,
    /// Entries checked.
    pub entries: i64,
    /// Broken invariants (at most 100 of each kind).
    pub violations: Vec<Violation>,
}

impl VerifyReport {
    /// True when no invariant is broken.
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }
}

fn big(s: &str) -> Result<i128, LedgerError> {
    s.parse::<i128>()
        .map_err(|e| LedgerError::Corrupt(format!("sum {s:?}: {e}")))
}

/// Checks the ledger invariants: every transaction balances per currency and layer and has
/// at least two entries; the balances of each currency and layer sum to zero; no account
/// that may not go negative is below zero; every stored balance equals the sum of its
/// entries; entries are in their account's currency; no entry, transaction or outbox event
/// refers to a missing transaction, account or journal. Reads in one repeatable-read
/// snapshot, so it can run while postings go on.
///
/// # Errors
/// [`LedgerError::Database`] if PostgreSQL fails; violations are in the report.
pub async fn verify(pool: &PgPool) -> Result<VerifyReport, LedgerError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let mut report = VerifyReport::default();
    let counts = sqlx::query(
        "SELECT (SELECT count(*) FROM ledger_accounts) AS accounts, \
                (SELECT count(*) FROM ledger_transactions) AS transactions, \
                (SELECT count(*) FROM ledger_entries) AS entries",
    )
    .fetch_one(&mut *tx)
    .await?;
    report.accounts = counts.try_get("accounts")?;
    report.transactions = counts.try_get("transactions")?;
    report.entries = counts.try_get("entries")?;

    for r in sqlx::query(
        "SELECT transaction_id, currency, layer, \
                sum(CASE direction WHEN 'debit' THEN amount ELSE -amount END)::text \
                  AS difference \
         FROM ledger_entries GROUP BY transaction_id, currency, layer \
         HAVING sum(CASE direction WHEN 'debit' THEN amount ELSE -amount END) <> 0 LIMIT $1",
    )
    .bind(LIMIT)
    .fetch_all(&mut *tx)
    .await?
    {
        let diff: String = r.try_get("difference")?;
        report.violations.push(Violation::UnbalancedTransaction {
            transaction_id: TransactionId::from_uuid(r.try_get("transaction_id")?),
            currency: r.try_get("currency")?,
            layer: r.try_get("layer")?,
            difference: big(&diff)?,
        });
    }

    for r in sqlx::query(
        "SELECT t.id, t.voided, count(e.seq) AS entries FROM ledger_transactions t \
         LEFT JOIN ledger_entries e ON e.transaction_id = t.id \
         GROUP BY t.id, t.voided \
         HAVING CASE WHEN t.voided THEN count(e.seq) > 0 ELSE count(e.seq) < 2 END LIMIT $1",
    )
    .bind(LIMIT)
    .fetch_all(&mut *tx)
    .await?
    {
        let transaction_id = TransactionId::from_uuid(r.try_get("id")?);
        let entries = r.try_get("entries")?;
        report.violations.push(if r.try_get("voided")? {
            Violation::VoidWithEntries {
                transaction_id,
                entries,
            }
        } else {
            Violation::TooFewEntries {
                transaction_id,
                entries,
            }
        });
    }

    for r in sqlx::query(
        "SELECT b.currency, \
                sum(CASE a.normal_balance WHEN 'debit' THEN b.settled ELSE -b.settled END)::text \
                  AS settled, \
                sum(CASE a.normal_balance WHEN 'debit' THEN b.pending ELSE -b.pending END)::text \
                  AS pending \
         FROM ledger_balances b JOIN ledger_accounts a ON a.id = b.account_id \
         GROUP BY b.currency",
    )
    .fetch_all(&mut *tx)
    .await?
    {
        let currency: String = r.try_get("currency")?;
        for layer in ["settled", "pending"] {
            let total: String = r.try_get(layer)?;
            let total = big(&total)?;
            if total != 0 {
                report.violations.push(Violation::NonZeroTotal {
                    currency: currency.clone(),
                    layer: layer.to_owned(),
                    total,
                });
            }
        }
    }

    for r in sqlx::query(
        "SELECT b.account_id, b.settled, b.pending \
         FROM ledger_balances b JOIN ledger_accounts a ON a.id = b.account_id \
         WHERE NOT a.allow_negative AND (b.settled < 0 OR b.settled + b.pending < 0) LIMIT $1",
    )
    .bind(LIMIT)
    .fetch_all(&mut *tx)
    .await?
    {
        report.violations.push(Violation::NegativeBalance {
            account_id: LedgerAccountId::from_uuid(r.try_get("account_id")?),
            settled: r.try_get("settled")?,
            pending: r.try_get("pending")?,
        });
    }

    for r in sqlx::query(
        "WITH s AS ( \
            SELECT e.account_id, \
              sum(CASE WHEN e.layer = 'settled' THEN \
                    CASE WHEN e.direction = a.normal_balance THEN e.amount ELSE -e.amount END \
                  ELSE 0 END) AS settled, \
              sum(CASE WHEN e.layer = 'pending' THEN \
                    CASE WHEN e.direction = a.normal_balance THEN e.amount ELSE -e.amount END \
                  ELSE 0 END) AS pending \
            FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id \
            GROUP BY e.account_id) \
         SELECT b.account_id, b.settled, b.pending, \
                coalesce(s.settled, 0)::text AS entries_settled, \
                coalesce(s.pending, 0)::text AS entries_pending \
         FROM ledger_balances b LEFT JOIN s ON s.account_id = b.account_id \
         WHERE b.settled <> coalesce(s.settled, 0) OR b.pending <> coalesce(s.pending, 0) \
         LIMIT $1",
    )
    .bind(LIMIT)
    .fetch_all(&mut *tx)
    .await?
    {
        let es: String = r.try_get("entries_settled")?;
        let ep: String = r.try_get("entries_pending")?;
        report.violations.push(Violation::BalanceMismatch {
            account_id: LedgerAccountId::from_uuid(r.try_get("account_id")?),
            stored_settled: r.try_get("settled")?,
            stored_pending: r.try_get("pending")?,
            entries_settled: big(&es)?,
            entries_pending: big(&ep)?,
        });
    }

    for r in sqlx::query(
        "SELECT e.transaction_id, e.account_id FROM ledger_entries e \
         JOIN ledger_accounts a ON a.id = e.account_id WHERE e.currency <> a.currency LIMIT $1",
    )
    .bind(LIMIT)
    .fetch_all(&mut *tx)
    .await?
    {
        report.violations.push(Violation::CurrencyMismatch {
            transaction_id: TransactionId::from_uuid(r.try_get("transaction_id")?),
            account_id: LedgerAccountId::from_uuid(r.try_get("account_id")?),
        });
    }

    for r in sqlx::query(
        "SELECT a.id FROM ledger_accounts a LEFT JOIN ledger_balances b ON b.account_id = a.id \
         WHERE b.account_id IS NULL OR b.currency <> a.currency \
            OR b.allow_negative <> a.allow_negative LIMIT $1",
    )
    .bind(LIMIT)
    .fetch_all(&mut *tx)
    .await?
    {
        let id: Uuid = r.try_get("id")?;
        report.violations.push(Violation::BalanceRowMismatch {
            account_id: LedgerAccountId::from_uuid(id),
        });
    }
    let orphans: [(&str, &str, &str); 4] = [
        (
            "entry",
            "transaction",
            "SELECT DISTINCT e.transaction_id AS id FROM ledger_entries e \
             LEFT JOIN ledger_transactions t ON t.id = e.transaction_id \
             WHERE t.id IS NULL LIMIT $1",
        ),
        (
            "entry",
            "account",
            "SELECT DISTINCT e.account_id AS id FROM ledger_entries e \
             LEFT JOIN ledger_accounts a ON a.id = e.account_id WHERE a.id IS NULL LIMIT $1",
        ),
        (
            "transaction",
            "journal",
            "SELECT DISTINCT t.journal_id AS id FROM ledger_transactions t \
             LEFT JOIN ledger_journals j ON j.id = t.journal_id WHERE j.id IS NULL LIMIT $1",
        ),
        (
            "outbox event",
            "transaction",
            "SELECT DISTINCT o.transaction_id AS id FROM ledger_outbox o \
             LEFT JOIN ledger_transactions t ON t.id = o.transaction_id \
             WHERE t.id IS NULL LIMIT $1",
        ),
    ];
    for (row, missing, sql) in orphans {
        for r in sqlx::query(sql).bind(LIMIT).fetch_all(&mut *tx).await? {
            report.violations.push(Violation::Orphan {
                row: row.to_owned(),
                missing: missing.to_owned(),
                id: r.try_get("id")?,
            });
        }
    }
    tx.commit().await?;
    Ok(report)
}
