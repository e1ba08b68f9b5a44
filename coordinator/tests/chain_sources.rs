//! Both chain source adapters against the regtest stand-in, a separate process: Esplora over
//! its HTTP API, Bitcoin Core's JSON-RPC over its RPC face. The same scenario runs on both:
//! tip, blocks, mempool, transaction status, a reorg, broadcast (idempotent, and refusals),
//! fee estimates. Then the outage: the process stopped, calls fail as unavailable and health
//! says so; the process continued, calls recover.
//!
//! The stand-in binary must be built (`cargo build -p chain-standin`); `cargo nextest run
//! --workspace` builds it.
#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod wallets_common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use bdk_wallet::bitcoin::hashes::Hash as _;
use bdk_wallet::bitcoin::{
    Address, Amount, FeeRate, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid,
    Witness, absolute, transaction,
};
use chain_standin::spawn::{Options, StandIn};
use coordinator::chain::{
    BitcoindAuth, BlockId, BlockLocator, CallPolicy, ChainError, ChainSource, ChainSourceConfig,
    TxStatus, connect,
};
use policies::Keychain;
use wallets_common::hot_policy;

fn standin() -> StandIn {
    StandIn::start_with(Options {
        // Coinbases of the first blocks are mature: the stand-in can fund addresses.
        initial_blocks: 101,
        ..Options::default()
    })
    .expect("the stand-in starts (build it with `cargo build -p chain-standin`)")
}

fn fast() -> CallPolicy {
    CallPolicy {
        timeout_ms: 500,
        retries: 1,
        min_backoff_ms: 10,
        max_backoff_ms: 50,
    }
}

fn esplora(s: &StandIn, call: CallPolicy) -> Arc<dyn ChainSource> {
    connect(&ChainSourceConfig::Esplora {
        url: s.esplora_url().to_owned(),
        call,
    })
    .unwrap()
}

/// A bitcoind source whose password comes from a file in `dir`.
fn bitcoind(s: &StandIn, dir: &tempfile::TempDir, call: CallPolicy) -> Arc<dyn ChainSource> {
    let (user, password) = s.rpc_credentials();
    let password_file = dir.path().join("rpc-password");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    connect(&ChainSourceConfig::Bitcoind {
        url: s.rpc_url().to_owned(),
        auth: BitcoindAuth::UserPassword {
            user: user.to_owned(),
            password_file,
        },
        call,
    })
    .unwrap()
}

fn our_address(index: u32) -> Address {
    hot_policy().address(Keychain::Receive, index).unwrap()
}

/// A transaction spending an output that never existed.
fn spends_nothing(to: ScriptBuf) -> Transaction {
    Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::new(Txid::from_byte_array([7; 32]), 0),
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(10_000),
            script_pubkey: to,
        }],
    }
}

async fn scenario(s: &StandIn, source: Arc<dyn ChainSource>) {
    let control = s.control();

    // Tip and blocks from a start height, in batches, each linked to the one before.
    let tip = source.tip().await.unwrap();
    let expected = control.tip().await.unwrap();
    assert_eq!((tip.height, tip.hash), (expected.height, expected.hash));
    let first = source
        .blocks_since(&BlockLocator::from_height(90), 5)
        .await
        .unwrap();
    assert_eq!(
        first.connected.iter().map(|b| b.height).collect::<Vec<_>>(),
        vec![90, 91, 92, 93, 94]
    );
    let mut known: Vec<BlockId> = first.connected.iter().map(|b| b.id()).collect();
    let rest = source
        .blocks_since(
            &BlockLocator {
                known: known.clone(),
                start_height: 90,
            },
            100,
        )
        .await
        .unwrap();
    assert!(rest.disconnected.is_empty());
    assert_eq!(rest.connected.first().map(|b| b.height), Some(95));
    assert_eq!(
        rest.connected.first().map(|b| b.prev_hash()),
        known.last().map(|b| b.hash)
    );
    assert_eq!(rest.connected.last().map(|b| b.id()), Some(tip));
    known.extend(rest.connected.iter().map(|b| b.id()));

    // A payment to one of our addresses: in the mempool, then mined.
    let to = our_address(3);
    let funded = control.fund(&to, Amount::from_sat(123_456)).await.unwrap();
    let txid = funded.txid;
    assert!(source.mempool_txids().await.unwrap().contains(&txid));
    let snapshot = source.mempool_since(&HashSet::new()).await.unwrap();
    let seen = snapshot
        .new
        .iter()
        .find(|tx| tx.compute_txid() == txid)
        .expect("the new mempool transaction is fetched");
    assert_eq!(
        seen.output[funded.vout as usize],
        TxOut {
            value: Amount::from_sat(123_456),
            script_pubkey: to.script_pubkey()
        }
    );
    let again = source.mempool_since(&snapshot.txids).await.unwrap();
    assert!(again.new.is_empty(), "nothing new the second time");
    assert_eq!(source.tx_status(txid).await.unwrap(), TxStatus::Mempool);
    let fetched = source.transaction(txid).await.unwrap().expect("known");
    assert_eq!(fetched.compute_txid(), txid);
    assert_eq!(
        source
            .transaction(Txid::from_byte_array([9; 32]))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        source
            .tx_status(Txid::from_byte_array([9; 32]))
            .await
            .unwrap(),
        TxStatus::Unknown
    );

    let mined = control.mine(1).await.unwrap();
    let batch = source
        .blocks_since(
            &BlockLocator {
                known: known.clone(),
                start_height: 90,
            },
            100,
        )
        .await
        .unwrap();
    assert_eq!(batch.connected.len(), 1);
    let block = &batch.connected[0];
    assert_eq!(block.id().hash, mined.hashes[0]);
    assert!(block.block.txdata.iter().any(|t| t.compute_txid() == txid));
    known.push(block.id());
    assert_eq!(
        source.tx_status(txid).await.unwrap(),
        TxStatus::Confirmed { block: block.id() }
    );

    // A reorg: the block is invalidated, its transaction goes back to the mempool.
    let invalidated = control.invalidate(1).await.unwrap();
    assert_eq!(invalidated.removed, vec![block.id().hash]);
    let locator = BlockLocator {
        known: known.clone(),
        start_height: 90,
    };
    let batch = source.blocks_since(&locator, 100).await.unwrap();
    assert_eq!(batch.disconnected, vec![block.id()]);
    assert!(batch.connected.is_empty());
    assert_eq!(source.tx_status(txid).await.unwrap(), TxStatus::Mempool);
    // A longer branch: two new blocks, from the block below the invalidated one.
    control.mine(2).await.unwrap();
    let batch = source.blocks_since(&locator, 100).await.unwrap();
    assert_eq!(batch.disconnected, vec![block.id()]);
    assert_eq!(batch.connected.len(), 2);
    assert_eq!(batch.connected[0].height, block.height);
    assert_ne!(batch.connected[0].id(), block.id());
    assert_eq!(batch.connected[0].prev_hash(), known[known.len() - 2].hash);
    assert!(matches!(
        source.tx_status(txid).await.unwrap(),
        TxStatus::Confirmed { block } if block == batch.connected[0].id()
    ));

    // Broadcast: the same transaction again is not an error; a bad one is refused.
    assert_eq!(source.broadcast(&fetched).await.unwrap(), txid);
    let refused = source
        .broadcast(&spends_nothing(to.script_pubkey()))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, ChainError::Rejected { reason } if !reason.is_empty()),
        "{refused:?}"
    );

    // Fee estimates as the stand-in was told.
    let rates = BTreeMap::from([
        (1u16, FeeRate::from_sat_per_vb_u32(20)),
        (6, FeeRate::from_sat_per_vb_u32(5)),
    ]);
    control.set_fee_estimates(&rates).await.unwrap();
    let estimates = source.fee_estimates().await.unwrap();
    assert_eq!(
        estimates.for_target(1),
        Some(FeeRate::from_sat_per_vb_u32(20))
    );
    assert_eq!(
        estimates.for_target(6),
        Some(FeeRate::from_sat_per_vb_u32(5))
    );

    let health = source.health();
    assert!(health.is_up(), "{health:?}");
}

#[tokio::test]
async fn esplora_source_against_the_standin() {
    let s = standin();
    scenario(&s, esplora(&s, CallPolicy::default())).await;
}

#[tokio::test]
async fn bitcoind_source_against_the_standin_rpc_face() {
    let s = standin();
    let dir = tempfile::tempdir().unwrap();
    scenario(&s, bitcoind(&s, &dir, CallPolicy::default())).await;
}

/// Stops the process (SIGSTOP: it keeps its port and state but answers nothing).
fn signal(s: &StandIn, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &s.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    if sig == "-STOP" {
        // The stop reaches every thread asynchronously: wait until the kernel reports the
        // process stopped ("T" in /proc/<pid>/stat), so no request is answered after this.
        let stat = format!("/proc/{}/stat", s.pid());
        for _ in 0..200 {
            let text = std::fs::read_to_string(&stat).unwrap();
            let state = text.rsplit(')').next().unwrap().split_whitespace().next();
            if state == Some("T") {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the stand-in did not stop");
    }
}

async fn down_then_back(s: &StandIn, source: Arc<dyn ChainSource>) {
    let before = source.tip().await.unwrap();
    assert!(source.health().is_up());

    signal(s, "-STOP");
    let down = source.tip().await;
    let blocks = source.blocks_since(&BlockLocator::from_height(0), 10).await;
    signal(s, "-CONT");
    assert!(
        matches!(&down, Err(ChainError::Unavailable { .. })),
        "{down:?}"
    );
    assert!(
        matches!(&blocks, Err(ChainError::Unavailable { .. })),
        "{blocks:?}"
    );
    let health = source.health();
    assert!(!health.is_up());
    assert!(
        health.consecutive_failures >= 4,
        "two calls, two attempts each: {health:?}"
    );
    assert!(health.last_error.is_some());

    // Back: the same source answers again, and health says so.
    let after = source.tip().await.unwrap();
    assert_eq!(after, before);
    let health = source.health();
    assert!(health.is_up());
    assert_eq!(health.consecutive_failures, 0);
}

#[tokio::test]
async fn esplora_source_down_then_back() {
    let s = standin();
    down_then_back(&s, esplora(&s, fast())).await;
}

#[tokio::test]
async fn bitcoind_source_down_then_back() {
    let s = standin();
    let dir = tempfile::tempdir().unwrap();
    down_then_back(&s, bitcoind(&s, &dir, fast())).await;
}

#[tokio::test]
async fn a_source_that_never_answered_is_unavailable_not_a_crash() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let source = connect(&ChainSourceConfig::Esplora {
        url: format!("http://127.0.0.1:{port}"),
        call: fast(),
    })
    .unwrap();
    let r = source.fee_estimates().await;
    assert!(matches!(r, Err(ChainError::Unavailable { .. })), "{r:?}");
    let health = source.health();
    assert!(!health.is_up());
    assert_eq!(health.last_success, None);
    assert_eq!(
        health.consecutive_failures, 2,
        "the first attempt and one retry"
    );
}

#[tokio::test]
async fn bitcoind_cookie_is_read_again_when_refused() {
    let s = StandIn::start_with(Options {
        rpc_password: "cookie-secret-7f3a".into(),
        ..Options::default()
    })
    .unwrap();
    let (user, password) = s.rpc_credentials();
    let dir = tempfile::tempdir().unwrap();
    let cookie = dir.path().join(".cookie");
    std::fs::write(&cookie, format!("{user}:not-the-password")).unwrap();
    let source = connect(&ChainSourceConfig::Bitcoind {
        url: s.rpc_url().to_owned(),
        auth: BitcoindAuth::Cookie {
            cookie_file: cookie.clone(),
        },
        call: CallPolicy {
            retries: 0,
            ..fast()
        },
    })
    .unwrap();
    let refused = source.tip().await;
    assert!(
        matches!(&refused, Err(ChainError::Unavailable { reason, .. }) if reason.contains("401")),
        "{refused:?}"
    );
    assert!(
        !format!("{refused:?}{:?}", source.health()).contains("not-the-password"),
        "the secret is in no error or health"
    );
    // The node "restarted" with a new cookie: the next call reads it.
    std::fs::write(&cookie, format!("{user}:{password}")).unwrap();
    assert!(source.tip().await.is_ok());
    assert!(
        !format!("{source:?}").contains(password),
        "Debug redacts the password"
    );

    // Credentials in the URL are refused: they would end up in logs.
    let in_url = connect(&ChainSourceConfig::Bitcoind {
        url: s
            .rpc_url()
            .replace("http://", &format!("http://{user}:{password}@")),
        auth: BitcoindAuth::Cookie {
            cookie_file: cookie,
        },
        call: fast(),
    });
    assert!(matches!(in_url, Err(ChainError::Config { .. })));
}
