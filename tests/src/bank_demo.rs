//! The bank part of the demo: the regtest stand-in and `coordinator serve` as separate
//! processes, a user registered through the GraphQL API, a deposit to the user's address
//! shown pending, then settled after a block; Lightning in and out over a channel between
//! the bank's node and an outside one (lightning_demo.rs); then a second `coordinator serve` replica on
//! the same database, a transfer through it, the first replica killed and the second
//! carrying on; then `coordinator ledger verify`.
#![allow(clippy::print_stdout, reason = "the demo narrates what it does")]

use std::path::Path;

use anyhow::Context as _;
use bitcoin::Amount;
use chain_standin::spawn::{Options, StandIn};
use test_support::ScratchDatabase;

use crate::bank_process::{
    Coordinator, ledger_verify, sibling_binary, staff_login, wait_until, write_onchain,
};
use crate::transfer_load::{Answer, User, send_once};

const DEPOSIT_SAT: u64 = 250_000;

/// Runs the bank demo, writing its files and the coordinator's log under `dir`.
///
/// # Errors
/// Any step that fails, with what it was doing.
pub async fn run(dir: &Path) -> anyhow::Result<()> {
    println!("\n== bank: a deposit, pending then settled ==");
    let standin = StandIn::start_with(Options {
        initial_blocks: 101,
        ..Options::default()
    })
    .context("starting the regtest stand-in")?;
    println!(
        "regtest stand-in (not a Bitcoin node) at {}",
        standin.esplora_url()
    );

    let admin_url = test_support::db::database_url_from_env();
    let db = ScratchDatabase::create(&admin_url, "bastion_demo")
        .await
        .context("creating the demo database (is PostgreSQL at DATABASE_URL?)")?;
    let db_url = db.url();

    let ln = crate::lightning_demo::start(dir, &standin).await?;
    let onchain = write_onchain(dir, standin.esplora_url(), 1)?;
    let args = [
        std::ffi::OsStr::new("--onchain"),
        onchain.as_os_str(),
        std::ffi::OsStr::new("--config"),
        ln.config.as_os_str(),
    ];
    let coordinator = sibling_binary("coordinator")?;
    let log = dir.join("coordinator.log");
    let server = Coordinator::serve_with(&coordinator, &db_url, &args, &log).await?;
    println!(
        "coordinator serving at {} (log: {})",
        server.url(),
        log.display()
    );

    let mut api = server.api();
    let email = "satoshi@example.com";
    let pool = db.pool(1).await?;
    api.register(&pool, email, "correct horse battery").await?;
    println!("registered {email} through the API");

    let (wallet, to) = api.deposit_address().await?;
    println!("deposit address of wallet {wallet}: {to}");

    let funded = standin
        .control()
        .fund(&to, Amount::from_sat(DEPOSIT_SAT))
        .await
        .context("funding from the stand-in")?;
    println!(
        "the stand-in paid {DEPOSIT_SAT} sat in {}:{} (mempool)",
        funded.txid, funded.vout
    );

    let pending = wait_until("the pending deposit", || async {
        let w = api.wallet().await?;
        Ok((w["pendingIncomingBalance"].as_i64() == Some(DEPOSIT_SAT as i64)).then_some(w))
    })
    .await?;
    println!(
        "pending: balance {} sat, pending incoming {} sat, {}",
        pending["balance"],
        pending["pendingIncomingBalance"],
        pending["pendingIncomingTransactions"][0]
    );

    standin.control().mine(1).await.context("mining")?;
    println!("mined one block (the demo credits after 1 confirmation)");
    let settled = wait_until("the settled deposit", || async {
        let w = api.wallet().await?;
        Ok((w["balance"].as_i64() == Some(DEPOSIT_SAT as i64)).then_some(w))
    })
    .await?;
    println!(
        "settled: balance {} sat, pending incoming {} sat, {}",
        settled["balance"],
        settled["pendingIncomingBalance"],
        settled["transactions"]["edges"][0]["node"]
    );

    crate::lightning_demo::run(&api, &wallet, &ln).await?;
    let treasury = staff_login(&coordinator, &db_url, &server, dir, "treasury").await?;
    crate::lightning_demo::show_node(&treasury).await?;

    println!("\n== bank: two replicas, one killed ==");
    let log2 = dir.join("coordinator-2.log");
    let replica_args = [
        std::ffi::OsStr::new("--onchain"),
        onchain.as_os_str(),
        std::ffi::OsStr::new("--config"),
        ln.replica_config.as_os_str(),
    ];
    let replica = Coordinator::serve_with(&coordinator, &db_url, &replica_args, &log2).await?;
    println!(
        "second replica serving at {} on the same database (each has its own ledger writer; \
         the embedded Lightning node stays with the first)",
        replica.url()
    );
    let mut bob = replica.api();
    bob.register(&pool, "hal@example.com", "another horse battery")
        .await?;
    let (bob_wallet, _) = bob.deposit_address().await?;
    let user = |api: &crate::bank_process::Api, wallet: &str| -> anyhow::Result<User> {
        Ok(User {
            token: api.token().context("logged in")?.to_owned(),
            wallet: wallet
                .parse()
                .map_err(|e| anyhow::anyhow!("wallet id {wallet}: {e:?}"))?,
        })
    };
    let (alice_user, bob_user) = (user(&api, &wallet)?, user(&bob, &bob_wallet)?);
    let http = reqwest::Client::new();
    let input = crate::transfer_load::send_input(&alice_user, &bob_user, 50_000);
    let paid = send_once(&http, &replica.url(), &alice_user.token, "demo-1", &input).await?;
    anyhow::ensure!(
        paid.as_ref().ok() == Some(&Answer::Paid),
        "the transfer: {paid:?}"
    );
    println!("satoshi paid hal 50000 sat through the second replica");
    server.crash()?;
    println!("first replica killed (SIGKILL)");
    let again = send_once(&http, &replica.url(), &alice_user.token, "demo-1", &input).await?;
    anyhow::ensure!(
        again.as_ref().ok() == Some(&Answer::Paid),
        "the replay: {again:?}"
    );
    let hal = bob.against(&replica).wallet().await?;
    let sat = api.against(&replica).wallet().await?;
    println!(
        "the second replica answers: the same request again is ALREADY_PAID; satoshi has {} \
         sat, hal {} sat",
        sat["balance"], hal["balance"]
    );

    print!("{}", ledger_verify(&coordinator, &db_url)?);
    pool.close().await;
    Ok(())
}
