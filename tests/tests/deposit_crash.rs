//! A coordinator killed with SIGKILL between seeing a deposit and crediting it, the
//! confirmations mined while it is down, a new `coordinator serve` on the same database:
//! the deposit is credited once. Killed again after settlement and restarted: not credited
//! again. Real processes throughout: the regtest stand-in, `coordinator serve` (the
//! workspace's binary, as the demo runs it) and `coordinator ledger verify`.
//!
//! The in-process variant (a driver task aborted) is in
//! `coordinator/tests/deposits_recovery.rs`; this one also covers what only a process
//! crash does: no shutdown code runs, the lease is left to expire, and the restarted
//! instance starts from what PostgreSQL holds.

use std::path::Path;

use anyhow::{Context as _, ensure};
use bitcoin::{Amount, OutPoint};
use chain_standin::spawn::{Options, StandIn};
use coordinator::deposits::credit_external_id;
use serde_json::Value;
use sqlx::PgPool;
use sqlx::types::Uuid;
use sqlx::types::chrono::{DateTime, Utc};
use system_tests::bank_process::{
    Api, Coordinator, ledger_verify, sibling_binary, wait_until, write_onchain,
};
use test_support::ScratchDatabase;
use test_support::db::database_url_from_env;

const DEPOSIT_SAT: u64 = 80_000;
/// More than one, so the deposit stays pending in the mempool while the first instance
/// runs and the confirmations can be mined while none does.
const CONFIRMATIONS: u32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_killed_between_detection_and_credit_credits_once_after_restart() {
    let dir = tempfile::Builder::new()
        .prefix("deposit-crash")
        .tempdir()
        .expect("a temporary directory");
    if let Err(e) = run(dir.path()).await {
        // The coordinators' logs say what they did; keep them for whoever reads the failure.
        let kept = dir.keep();
        panic!("{e:#}\n(coordinator logs kept in {})", kept.display());
    }
}

async fn run(dir: &Path) -> anyhow::Result<()> {
    // Before anything starts, so a missing build fails with how to build it.
    let binary = sibling_binary("coordinator")?;
    let standin = StandIn::start_with(Options {
        initial_blocks: 101,
        ..Options::default()
    })
    .context("starting the regtest stand-in")?;
    let admin_url = database_url_from_env();
    let db = ScratchDatabase::create(&admin_url, "deposit_crash")
        .await
        .context("creating a scratch database (is PostgreSQL at DATABASE_URL?)")?;
    let db_url = db.url();
    let onchain = write_onchain(dir, standin.esplora_url(), CONFIRMATIONS)?;

    // The first instance migrates the database; only then does the test connect.
    let first = Coordinator::serve(&binary, &db_url, &onchain, &dir.join("coordinator-1.log"))
        .await
        .context("the first coordinator")?;
    let pool = db.pool(2).await?;
    let mut api = first.api();
    api.register(&pool, "alice@example.com", "correct horse battery")
        .await?;
    let (_, to) = api.deposit_address().await?;
    let funded = standin
        .control()
        .fund(&to, Amount::from_sat(DEPOSIT_SAT))
        .await
        .context("funding from the stand-in")?;
    let outpoint = OutPoint::new(funded.txid, funded.vout);
    wait_until("the deposit shown pending", || async {
        Ok(shown_pending(&api.wallet().await?, &outpoint).then_some(()))
    })
    .await?;
    let first_holder = lease_holder(&pool).await?;

    // Detected, not credited: crash, and confirm it while no coordinator runs.
    first.crash()?;
    standin
        .control()
        .mine(CONFIRMATIONS)
        .await
        .context("mining")?;
    ensure!(
        credits(&pool, &outpoint).await? == 0,
        "credited while no coordinator ran"
    );

    // A new process on the same database takes the lease over once it expires, and credits.
    let second = Coordinator::serve(&binary, &db_url, &onchain, &dir.join("coordinator-2.log"))
        .await
        .context("the restarted coordinator")?;
    let api = api.against(&second);
    // Waits for the status only: the balances are checked below, where a double credit
    // fails with the counts rather than a timeout.
    wait_until("the deposit shown settled", || async {
        let w = api.wallet().await?;
        let tx = &w["transactions"]["edges"][0]["node"];
        Ok((tx["status"] == "SUCCESS" && via(tx, &outpoint)).then_some(()))
    })
    .await?;
    // Then a block more and full passes of its driver: a second credit would show now.
    let tip = standin.control().mine(1).await.context("mining")?.height;
    let second_holder = driver_caught_up(&pool, tip, first_holder).await?;
    credited_once(&pool, &api, &outpoint).await?;
    books_balance(&binary, &db_url)?;

    // Settled: crash again, restart, one more block. The third instance must not credit.
    second.crash()?;
    let third = Coordinator::serve(&binary, &db_url, &onchain, &dir.join("coordinator-3.log"))
        .await
        .context("the coordinator restarted after settlement")?;
    let api = api.against(&third);
    let tip = standin.control().mine(1).await.context("mining")?.height;
    driver_caught_up(&pool, tip, second_holder).await?;
    credited_once(&pool, &api, &outpoint).await?;
    books_balance(&binary, &db_url)?;

    drop(third);
    pool.close().await;
    Ok(())
}

/// The wallet shows the deposit pending incoming and nothing settled.
fn shown_pending(w: &Value, outpoint: &OutPoint) -> bool {
    let tx = &w["pendingIncomingTransactions"][0];
    w["balance"].as_i64() == Some(0)
        && w["pendingIncomingBalance"].as_u64() == Some(DEPOSIT_SAT)
        && tx["status"] == "PENDING"
        && via(tx, outpoint)
}

/// The wallet shows the deposit settled (SUCCESS) and nothing pending.
fn shown_settled(w: &Value, outpoint: &OutPoint) -> bool {
    let tx = &w["transactions"]["edges"][0]["node"];
    w["balance"].as_u64() == Some(DEPOSIT_SAT)
        && w["pendingIncomingBalance"].as_i64() == Some(0)
        && tx["status"] == "SUCCESS"
        && via(tx, outpoint)
}

fn via(tx: &Value, outpoint: &OutPoint) -> bool {
    let via = &tx["settlementVia"];
    via["transactionHash"].as_str() == Some(outpoint.txid.to_string().as_str())
        && via["vout"].as_u64() == Some(u64::from(outpoint.vout))
}

/// Ledger transactions with the deposit's external id (the idempotency key: 0 or 1).
async fn credits(pool: &PgPool, outpoint: &OutPoint) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM ledger_transactions WHERE external_id = $1")
            .bind(credit_external_id(outpoint))
            .fetch_one(pool)
            .await?,
    )
}

/// Exactly one credit, by every account of it: the posting under the deposit's key, the
/// user accounts' entries (a second credit under any other key would show there), the
/// deposit row pointing at that posting, and the API's balances.
async fn credited_once(pool: &PgPool, api: &Api, outpoint: &OutPoint) -> anyhow::Result<()> {
    ensure!(
        credits(pool, outpoint).await? == 1,
        "the deposit's credit posting is missing"
    );
    let (entries, msat): (i64, Option<i64>) = sqlx::query_as(
        "SELECT count(*), sum(e.amount)::BIGINT FROM ledger_entries e \
         JOIN ledger_accounts a ON a.id = e.account_id \
         WHERE a.kind = 'user' AND e.direction = 'credit'",
    )
    .fetch_one(pool)
    .await?;
    let deposit_msat = i64::try_from(DEPOSIT_SAT * 1_000)?;
    ensure!(
        (entries, msat) == (1, Some(deposit_msat)),
        "user accounts credited {entries} times, {msat:?} msat in all; expected once, {deposit_msat}"
    );
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT d.state FROM deposits d JOIN ledger_transactions t \
         ON t.id = d.ledger_transaction_id WHERE t.external_id = $1",
    )
    .bind(credit_external_id(outpoint))
    .fetch_all(pool)
    .await?;
    ensure!(rows == ["SETTLED"], "deposit rows of the credit: {rows:?}");
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM deposits")
        .fetch_one(pool)
        .await?;
    ensure!(all == 1, "{all} deposit rows for one payment");
    let w = api.wallet().await?;
    ensure!(shown_settled(&w, outpoint), "the API shows {w}");
    Ok(())
}

/// Who holds the deposit driver's lease.
async fn lease_holder(pool: &PgPool) -> anyhow::Result<Option<Uuid>> {
    Ok(
        sqlx::query_scalar("SELECT holder FROM deposit_driver WHERE id = 1")
            .fetch_one(pool)
            .await?,
    )
}

/// Waits until an instance other than `previous` holds the lease and has processed the
/// block at `tip`, then for its next pass to start (the lease is renewed at the start of
/// each), so the pass that saw `tip`, settlement included, is over. Returns the holder.
async fn driver_caught_up(
    pool: &PgPool,
    tip: u32,
    previous: Option<Uuid>,
) -> anyhow::Result<Option<Uuid>> {
    let query = "SELECT holder, lease_until, (SELECT max(height) FROM deposit_blocks) \
                 FROM deposit_driver WHERE id = 1";
    let (holder, seen_at) = wait_until("the new instance's driver to process the tip", || async {
        let (holder, until, height): (Option<Uuid>, DateTime<Utc>, Option<i32>) =
            sqlx::query_as(query).fetch_one(pool).await?;
        let caught_up = holder.is_some()
            && holder != previous
            && height.is_some_and(|h| i64::from(h) >= i64::from(tip));
        Ok(caught_up.then_some((holder, until)))
    })
    .await?;
    wait_until("the driver's next pass", || async {
        let until: DateTime<Utc> =
            sqlx::query_scalar("SELECT lease_until FROM deposit_driver WHERE id = 1")
                .fetch_one(pool)
                .await?;
        Ok((until > seen_at).then_some(()))
    })
    .await?;
    Ok(holder)
}

/// `coordinator ledger verify`, as an operator runs it: every invariant holds.
fn books_balance(binary: &Path, db_url: &str) -> anyhow::Result<()> {
    let report = ledger_verify(binary, db_url)?;
    ensure!(
        report.contains("ledger OK: every invariant holds"),
        "ledger verify: {report}"
    );
    Ok(())
}
