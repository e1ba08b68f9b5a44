//! The script index's cost against the number of addresses revealed, printed as a ratio
//! measured in one run on one PostgreSQL server:
//!
//! 1. `Wallets::lookup_scripts` with every output script of a block of 2,000 transactions
//!    (4,000 scripts, 10 of them ours), with 1,000 addresses revealed (the baseline) and
//!    with 10,000 and with 100,000 (target: under 1 s per block; one index probe per script,
//!    so the cost grows with the B-tree's depth, not with the addresses ever handed out);
//! 2. `Wallets::open` and its first update (bdk derives every revealed script) at each size,
//!    for startup time (this one does grow).
//!
//! `cargo bench -p coordinator --bench wallets_scan [-- --large 100000 --rounds 20]`.
#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Context;
use bdk_wallet::bitcoin::hashes::Hash;
use bdk_wallet::bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use bdk_wallet::bitcoin::{Network, ScriptBuf, WPubkeyHash};
use clap::Parser;
use coordinator::wallets::{WalletRole, Wallets};
use policies::{HsmKey, Keychain, PolicyDocument, RecoveryKey, Template};
use rand::{Rng, SeedableRng};
use test_support::ScratchDatabase;

#[derive(Parser, Debug)]
#[command(about = "Script index lookups against the number of revealed addresses")]
struct Args {
    /// Addresses revealed for the baseline.
    #[arg(long, default_value_t = 1_000)]
    small: u32,
    /// Addresses revealed for the measured point.
    #[arg(long, default_value_t = 100_000)]
    large: u32,
    /// Transactions in the scanned block (two outputs each).
    #[arg(long, default_value_t = 2_000)]
    block_txs: usize,
    /// Lookups measured per size.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn policy() -> anyhow::Result<PolicyDocument> {
    let sk = SecretKey::from_slice(&[1; 32])?;
    let template = Template::Hot {
        hsm_key: HsmKey::new("hot-1", PublicKey::from_secret_key(&Secp256k1::new(), &sk)),
        recovery: RecoveryKey::from_str(
            "tpubD6NzVbkrYhZ4XgiXtGrdW5XDAPFCL9h7we1vwNCpn8tGbBcgfVYjXyhWo4E1xkh56hjod1RhGjxbaTLV3X4FyWuejifB9jusQ46QzG87VKp",
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?,
        recovery_after: 144,
    };
    Ok(PolicyDocument::new("hot", 1, Network::Regtest, &template)?)
}

struct Point {
    lookup: Vec<Duration>,
    first_open: Duration,
    open: Duration,
    found: usize,
}

/// A wallet with `n` receive scripts in the index, then the measurements.
async fn measure(n: u32, args: &Args) -> anyhow::Result<Point> {
    let (_db, pool) =
        ScratchDatabase::migrated("coordinator_wallets_bench", 4, &coordinator::db::MIGRATOR)
            .await?;
    let wallets = Wallets::new(pool.clone());
    let doc = policy()?;
    let info = wallets.register("hot", WalletRole::Hot, &doc, None).await?;
    // Filled in bulk (the reveal path is one transaction per address, tested elsewhere).
    let mut ours = Vec::new();
    for start in (0..n).step_by(5_000) {
        let end = (start + 5_000).min(n);
        let mut scripts = Vec::new();
        let mut addresses = Vec::new();
        let mut indexes = Vec::new();
        for i in start..end {
            let a = doc.address(Keychain::Receive, i)?;
            if i % (n / 10).max(1) == 0 {
                ours.push(a.script_pubkey());
            }
            scripts.push(a.script_pubkey().into_bytes());
            addresses.push(a.to_string());
            indexes.push(i32::try_from(i)?);
        }
        sqlx::query(
            "INSERT INTO onchain_scripts (script_pubkey, wallet_id, keychain, derivation_index, address)
             SELECT s, $1, 'receive', i, a FROM unnest($2::bytea[], $3::int[], $4::text[]) AS t(s, i, a)",
        )
        .bind(info.id.as_uuid())
        .bind(&scripts)
        .bind(&indexes)
        .bind(&addresses)
        .execute(&pool)
        .await?;
    }
    sqlx::query("UPDATE onchain_wallets SET next_receive_index = $2 WHERE id = $1")
        .bind(info.id.as_uuid())
        .bind(i32::try_from(n)?)
        .execute(&pool)
        .await?;
    sqlx::query("ANALYZE onchain_scripts")
        .execute(&pool)
        .await?;

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut block: Vec<ScriptBuf> = (0..args.block_txs * 2 - ours.len())
        .map(|_| ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array(rng.r#gen())))
        .collect();
    block.extend(ours.iter().cloned());

    let mut lookup = Vec::new();
    let mut found = 0;
    for _ in 0..args.rounds {
        let t = Instant::now();
        found = wallets.lookup_scripts(&block).await?.len();
        lookup.push(t.elapsed());
    }
    lookup.sort();
    // Open, then the first change, which makes bdk derive every revealed script (the bulk
    // fill above bypassed bdk) and store them in its changeset; then open again from there.
    let t = Instant::now();
    let wallet = wallets.open(info.id).await?;
    wallet.apply_unconfirmed(Vec::new()).await?;
    let first_open = t.elapsed();
    drop(wallet);
    let t = Instant::now();
    let wallet = wallets.open(info.id).await?;
    wallet.apply_unconfirmed(Vec::new()).await?;
    let open = t.elapsed();
    drop(wallet);
    pool.close().await;
    Ok(Point {
        lookup,
        first_open,
        open,
        found,
    })
}

fn pct(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() - 1) * p / 100]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let small = measure(args.small, &args).await.context("baseline")?;
    let middle = measure(args.small * 10, &args).await.context("middle")?;
    let large = measure(args.large, &args).await.context("large")?;
    println!(
        "script index lookup, block of {} txs ({} output scripts):",
        args.block_txs,
        args.block_txs * 2
    );
    for (n, p) in [
        (args.small, &small),
        (args.small * 10, &middle),
        (args.large, &large),
    ] {
        println!(
            "  {n:>7} revealed: p50 {:>8.2?}  p99 {:>8.2?}  ({} ours found)  open + update: deriving {:>8.2?}, from the cache {:>8.2?}",
            pct(&p.lookup, 50),
            pct(&p.lookup, 99),
            p.found,
            p.first_open,
            p.open
        );
    }
    let ratio = pct(&large.lookup, 50).as_secs_f64() / pct(&small.lookup, 50).as_secs_f64();
    println!(
        "  lookup p50 ratio {} / {} revealed: {ratio:.2} (target: p50 under 1 s per block at {} revealed)",
        args.large, args.small, args.large
    );
    Ok(())
}
