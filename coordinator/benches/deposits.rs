//! Deposits benchmark against the regtest stand-in (a separate process) and PostgreSQL:
//!
//! 1. block processing with 100,000 revealed addresses and a block of 2,000 transactions
//!    (one in ten pays one of our addresses): the driver's pass over that block, next to
//!    the chain source's fetch of the same block and the raw script-index lookup of its
//!    output scripts, measured in the same run (target: the pass under 1 s);
//! 2. deposit seen to pending credit: from the stand-in accepting a payment to the
//!    deposit's pending event in PostgreSQL (p50, p99; target 1 s), next to the driver's
//!    poll interval and one HTTP round trip to the stand-in.
//!
//! The 100,000 addresses are address-book rows written in bulk (the same table and index
//! `onChainAddressCreate` fills; deriving them one by one would only make the setup slow).
//!
//! `cargo build -p chain-standin && cargo bench -p coordinator --bench deposits`;
//! `DATABASE_URL` names the server (a superuser: a scratch database is created).
#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bdk_wallet::bitcoin::hashes::Hash;
use bdk_wallet::bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use bdk_wallet::bitcoin::{Address, Amount, Network, ScriptBuf, WScriptHash};
use chain_standin::spawn::{Options, StandIn};
use clap::Parser;
use coordinator::chain::esplora::EsploraSource;
use coordinator::chain::{BlockLocator, CallPolicy, ChainSource};
use coordinator::deposits::{
    AddressBookIndex, DepositConfig, DepositDriver, ScriptIndex, set_start_height,
};
use coordinator::ledger::NewAccount;
use coordinator::wallets::{WalletRole, Wallets};
use coordinator::{Ledger, LedgerAccountId, LedgerConfig};
use policies::{HsmKey, PolicyDocument, RecoveryKey, Template};
use rand::{Rng, SeedableRng};
use test_support::ScratchDatabase;
use uuid::Uuid;

#[derive(Parser, Debug)]
#[command(about = "Deposit detection: block processing and seen-to-pending latency")]
struct Args {
    /// Revealed addresses in the address book.
    #[arg(long, default_value_t = 100_000)]
    addresses: u32,
    /// Transactions in the measured block.
    #[arg(long, default_value_t = 2_000)]
    block_txs: u32,
    /// Deposits timed for the latency.
    #[arg(long, default_value_t = 50)]
    latency_samples: usize,
    // `cargo bench` passes `--bench`; accept and ignore it.
    #[arg(long, hide = true)]
    bench: bool,
}

const TPUB: &str = "tpubD6NzVbkrYhZ4XgiXtGrdW5XDAPFCL9h7we1vwNCpn8tGbBcgfVYjXyhWo4E1xkh56hjod1RhGjxbaTLV3X4FyWuejifB9jusQ46QzG87VKp";

fn hot_policy() -> anyhow::Result<PolicyDocument> {
    let sk = SecretKey::from_slice(&[1; 32])?;
    let template = Template::Hot {
        hsm_key: HsmKey::new("hot-1", PublicKey::from_secret_key(&Secp256k1::new(), &sk)),
        recovery: RecoveryKey::from_str(TPUB)?,
        recovery_after: 144,
    };
    Ok(PolicyDocument::new("hot", 1, Network::Regtest, &template)?)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    percentile(&v, 0.5)
}

/// 100 customer accounts with a wallet each, and `n` address-book rows spread over them.
async fn address_book(
    pool: &sqlx::PgPool,
    ledger: &Ledger,
    wallets: &Wallets,
    n: u32,
) -> anyhow::Result<Vec<(ScriptBuf, Address)>> {
    let hot = wallets
        .register("hot", WalletRole::Hot, &hot_policy()?, None)
        .await?;
    let mut accounts = Vec::new();
    for i in 0..100 {
        let (user, account) = (Uuid::now_v7(), Uuid::now_v7());
        let wallet = ledger
            .create_account(NewAccount {
                id: Some(LedgerAccountId::new()),
                ..NewAccount::user_wallet(format!("bench-{i}"))
            })
            .await?
            .id
            .as_uuid();
        sqlx::query("INSERT INTO users (id, email, password_hash) VALUES ($1, $2, 'x')")
            .bind(user)
            .bind(format!("bench{i}@example.com"))
            .execute(pool)
            .await?;
        let mut tx = pool.begin().await?;
        sqlx::query("INSERT INTO accounts (id, user_id, default_wallet_id) VALUES ($1, $2, $3)")
            .bind(account)
            .bind(user)
            .bind(wallet)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO wallets (id, account_id, currency) VALUES ($1, $2, 'BTC')")
            .bind(wallet)
            .bind(account)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        accounts.push(account);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut out = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        let mut scripts = Vec::new();
        let mut addresses = Vec::new();
        let mut owners = Vec::new();
        for i in chunk {
            let script = ScriptBuf::new_p2wsh(&WScriptHash::from_byte_array(rng.r#gen()));
            let address = Address::from_script(&script, Network::Regtest)?;
            scripts.push(script.to_bytes());
            addresses.push(address.to_string());
            owners.push(accounts[*i as usize % accounts.len()]);
            out.push((script, address));
        }
        let indexes: Vec<i32> = chunk.iter().map(|i| *i as i32).collect();
        sqlx::query(
            "INSERT INTO onchain_scripts (script_pubkey, wallet_id, keychain, derivation_index, \
             account_id, address) \
             SELECT s, $2, 'receive', i, a, ad FROM unnest($1::bytea[], $3::int4[], $4::uuid[], \
             $5::text[]) AS t(s, i, a, ad)",
        )
        .bind(&scripts)
        .bind(hot.id.as_uuid())
        .bind(&indexes)
        .bind(&owners)
        .bind(&addresses)
        .execute(pool)
        .await?;
    }
    sqlx::query("ANALYZE onchain_scripts").execute(pool).await?;
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let standin = StandIn::start_with(Options {
        initial_blocks: 250,
        ..Options::default()
    })
    .context("start the stand-in: cargo build -p chain-standin")?;
    let chain: Arc<dyn ChainSource> = Arc::new(EsploraSource::new(
        standin.esplora_url(),
        CallPolicy::default(),
    )?);
    let (_db, pool) =
        ScratchDatabase::migrated("coordinator_bench_deposits", 16, &coordinator::db::MIGRATOR)
            .await?;
    let ledger = Ledger::start(pool.clone(), LedgerConfig::default()).await?;
    let wallets = Wallets::new(pool.clone());
    let t = Instant::now();
    let ours = address_book(&pool, &ledger, &wallets, args.addresses).await?;
    println!(
        "address book: {} addresses in {:.1} s",
        ours.len(),
        t.elapsed().as_secs_f64()
    );

    // The block: one payment in ten to one of our addresses, the others elsewhere.
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let t = Instant::now();
    for i in 0..args.block_txs {
        let to = if i % 10 == 0 {
            ours[rng.gen_range(0..ours.len())].1.clone()
        } else {
            let s = ScriptBuf::new_p2wsh(&WScriptHash::from_byte_array(rng.r#gen()));
            Address::from_script(&s, Network::Regtest)?
        };
        standin
            .control()
            .fund(&to, Amount::from_sat(10_000 + u64::from(i)))
            .await?;
    }
    let mined = standin.control().mine(1).await?;
    let height = mined.height;
    println!(
        "block {height}: {} payments made in {:.1} s",
        args.block_txs,
        t.elapsed().as_secs_f64()
    );

    // The chain source's fetch of that block alone.
    let parent = chain
        .blocks_since(&BlockLocator::from_height(height - 1), 1)
        .await?
        .connected[0]
        .id();
    let mut fetches = Vec::new();
    let mut block = None;
    for _ in 0..5 {
        let t = Instant::now();
        let b = chain
            .blocks_since(
                &BlockLocator {
                    known: vec![parent],
                    start_height: 0,
                },
                1,
            )
            .await?;
        fetches.push(t.elapsed());
        block = b.connected.into_iter().next();
    }
    let block = block.context("the block")?;
    let txs = block.block.txdata.len();
    let scripts: Vec<ScriptBuf> = block
        .block
        .txdata
        .iter()
        .flat_map(|t| t.output.iter().map(|o| o.script_pubkey.clone()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();

    // The raw script-index lookup of every output script of the block.
    let index = AddressBookIndex::new(wallets.clone());
    let mut lookups = Vec::new();
    let mut found = 0;
    for _ in 0..5 {
        let t = Instant::now();
        found = index.owners(&scripts).await?.len();
        lookups.push(t.elapsed());
    }

    // The driver's pass over the block (fetch, match, record; nothing due: 6 confirmations).
    let config = DepositConfig {
        confirmations: 6,
        ..DepositConfig::default()
    };
    let mut passes = Vec::new();
    let mut pending = 0;
    for _ in 0..3 {
        for table in [
            "deposit_events",
            "deposit_alerts",
            "deposits",
            "deposit_blocks",
        ] {
            sqlx::query(&format!("DELETE FROM {table}"))
                .execute(&pool)
                .await?;
        }
        set_start_height(&pool, height).await?;
        let mut driver = DepositDriver::new(
            ledger.clone(),
            chain.clone(),
            Arc::new(AddressBookIndex::new(wallets.clone())),
            config.clone(),
        );
        let t = Instant::now();
        let r = driver.tick().await?;
        passes.push(t.elapsed());
        pending = r.pending;
        sqlx::query("UPDATE deposit_driver SET holder = NULL, lease_until = '-infinity'")
            .execute(&pool)
            .await?;
    }
    let (pass, fetch, lookup) = (median(passes), median(fetches), median(lookups));
    println!(
        "\nblock processing, {} revealed addresses, block of {txs} transactions ({} distinct output scripts, {found} ours, {pending} deposits recorded):",
        ours.len(),
        scripts.len()
    );
    println!(
        "  driver pass {:.1} ms (target < 1000 ms): {:.2}x the target",
        ms(pass),
        pass.as_secs_f64()
    );
    println!(
        "  chain source fetch of the same block {:.1} ms: the pass is {:.2}x the fetch",
        ms(fetch),
        pass.as_secs_f64() / fetch.as_secs_f64()
    );
    println!(
        "  raw script-index lookup of its {} scripts {:.1} ms ({:.0} lookups/s): {:.0}% of the pass",
        scripts.len(),
        ms(lookup),
        scripts.len() as f64 / lookup.as_secs_f64(),
        100.0 * lookup.as_secs_f64() / pass.as_secs_f64()
    );

    // Seen to pending: a running driver, one payment at a time.
    sqlx::query("UPDATE deposit_driver SET holder = NULL, lease_until = '-infinity'")
        .execute(&pool)
        .await?;
    let handle = DepositDriver::new(
        ledger.clone(),
        chain.clone(),
        Arc::new(AddressBookIndex::new(wallets.clone())),
        config.clone(),
    )
    .spawn();
    let http = reqwest::Client::new();
    let tip_url = format!("{}/blocks/tip/height", standin.esplora_url());
    let mut round_trips = Vec::new();
    let mut latencies = Vec::new();
    for i in 0..args.latency_samples {
        let t = Instant::now();
        http.get(&tip_url).send().await?.text().await?;
        round_trips.push(t.elapsed());
        let to = &ours[(i * 7_919) % ours.len()].1;
        // A payment arrives at any moment of the driver's poll cycle, not just after the
        // pass that saw the previous one.
        let phase = rng.gen_range(0..config.poll_interval.as_millis() as u64);
        tokio::time::sleep(Duration::from_millis(phase)).await;
        let funded = standin.control().fund(to, Amount::from_sat(20_000)).await?;
        let seen = Instant::now();
        loop {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM deposit_events e JOIN deposits d ON d.id = e.deposit_id \
                 WHERE d.txid = $1 AND e.kind = 'PENDING'",
            )
            .bind(funded.txid.to_byte_array().to_vec())
            .fetch_one(&pool)
            .await?;
            if n > 0 {
                break;
            }
            anyhow::ensure!(seen.elapsed() < Duration::from_secs(10), "never pending");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(seen.elapsed());
    }
    handle.stop().await;
    latencies.sort();
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    println!(
        "\ndeposit seen -> pending credit, {} payments: p50 {:.0} ms, p99 {:.0} ms (target 1000 ms; p99 {:.2}x the target)",
        latencies.len(),
        ms(p50),
        ms(p99),
        p99.as_secs_f64()
    );
    println!(
        "  compared with the driver's poll interval {:.0} ms (p50 expected near half of it) and one HTTP round trip to the chain source {:.2} ms (p50)",
        ms(config.poll_interval),
        ms(median(round_trips))
    );
    Ok(())
}
