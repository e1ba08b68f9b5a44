//! Helpers of the deposit tests: a scratch database with a bank and the hot wallet, the
//! regtest stand-in as a separate process, users with deposit addresses, and drivers.
#![allow(dead_code, reason = "each test file uses a different subset")]

#[path = "../common/mod.rs"]
mod common;
#[path = "../wallets_common/mod.rs"]
mod wallets_common;

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bdk_wallet::bitcoin::{Address, Amount, Network, OutPoint, Txid};
use chain_standin::spawn::{ControlClient, Options, StandIn};
use coordinator::chain::esplora::EsploraSource;
use coordinator::chain::{CallPolicy, ChainSource};
use coordinator::deposits::{
    AddressBookIndex, Deposit, DepositConfig, DepositDriver, DepositState, Deposits,
    credit_external_id,
};
use coordinator::wallets::{WalletInfo, Wallets};
use coordinator::{AccountId, Sats, WalletId};

pub use common::{TestBank, bank, signed_up};

/// One test's world: the stand-in, a bank on a scratch database, the hot wallet.
pub struct Env {
    pub standin: StandIn,
    pub chain: Arc<dyn ChainSource>,
    pub wallets: Wallets,
    pub hot: WalletInfo,
    pub deposits: Deposits,
    // Dropped last (drops the database).
    pub tb: TestBank,
}

/// A customer with a deposit address.
#[derive(Debug, Clone)]
pub struct Customer {
    pub account: AccountId,
    pub wallet: WalletId,
    pub address: Address,
}

/// Calls fail fast so a test of an outage does not wait for long retries.
pub fn quick_calls() -> CallPolicy {
    CallPolicy {
        timeout_ms: 1_000,
        retries: 1,
        min_backoff_ms: 50,
        max_backoff_ms: 200,
    }
}

/// Confirmations as given, quick polls and a short lease (a crashed driver's successor
/// waits for it).
pub fn config(confirmations: u32) -> DepositConfig {
    DepositConfig {
        confirmations,
        poll_interval: Duration::from_millis(50),
        lease_ttl: Duration::from_secs(2),
        ..DepositConfig::default()
    }
}

impl Env {
    /// The stand-in with 101 blocks mined (the first coinbase is spendable), and a bank.
    pub async fn new() -> Env {
        Env::with_blocks(101).await
    }

    pub async fn with_blocks(initial_blocks: u32) -> Env {
        let standin = StandIn::start_with(Options {
            initial_blocks,
            ..Options::default()
        })
        .expect("the regtest stand-in starts (cargo build -p chain-standin)");
        let chain: Arc<dyn ChainSource> = Arc::new(
            EsploraSource::new(standin.esplora_url(), quick_calls()).expect("esplora source"),
        );
        let tb = bank().await;
        let pool = tb.bank.ledger().pool().clone();
        let (wallets, hot) = wallets_common::hot_wallet(&pool).await;
        let deposits = Deposits::new(tb.bank.ledger().clone());
        Env {
            standin,
            chain,
            wallets,
            hot,
            deposits,
            tb,
        }
    }

    pub fn control(&self) -> &ControlClient {
        self.standin.control()
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        self.tb.bank.ledger().pool()
    }

    /// A driver of this world (a new lease holder each time).
    pub fn driver(&self, config: DepositConfig) -> DepositDriver {
        DepositDriver::new(
            self.tb.bank.ledger().clone(),
            self.chain.clone(),
            Arc::new(AddressBookIndex::new(self.wallets.clone())),
            config,
        )
    }

    /// A signed-up customer and its current deposit address.
    pub async fn customer(&self, who: &str) -> Customer {
        let (_, account, _) = signed_up(&self.tb.bank, who).await;
        let wallet = self
            .tb
            .bank
            .wallets_of(account)
            .await
            .expect("wallets")
            .first()
            .expect("a default wallet")
            .id;
        let record = self
            .wallets
            .current_address(self.hot.id, account)
            .await
            .expect("address revealed");
        Customer {
            account,
            wallet,
            address: record.address,
        }
    }

    /// Pays `sats` to the customer from the stand-in's coins, mining `blocks` after.
    pub async fn pay(&self, to: &Customer, sats: u64, blocks: u32) -> OutPoint {
        let f = self
            .control()
            .fund_and_mine(&to.address, Amount::from_sat(sats), blocks)
            .await
            .expect("the stand-in funds the address");
        OutPoint {
            txid: f.txid,
            vout: f.vout,
        }
    }

    pub async fn deposit(&self, outpoint: &OutPoint) -> Option<Deposit> {
        self.deposits
            .by_outpoint(outpoint)
            .await
            .expect("deposit read")
    }

    /// Settled balance of a wallet in msat.
    pub async fn balance(&self, wallet: WalletId) -> i64 {
        self.tb
            .bank
            .ledger()
            .balance(coordinator::bank::Bank::ledger_account(wallet))
            .await
            .expect("balance")
            .settled
    }

    /// Pending incoming as the bank shows it, in sats.
    pub async fn pending_incoming(&self, c: &Customer) -> u64 {
        self.tb
            .bank
            .wallets_of(c.account)
            .await
            .expect("wallets")
            .first()
            .expect("a wallet")
            .pending_incoming
            .to_sat()
    }

    /// Ledger transactions posted with this deposit's credit id (0 or 1).
    pub async fn credits(&self, outpoint: &OutPoint) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM ledger_transactions WHERE external_id = $1")
            .bind(credit_external_id(outpoint))
            .fetch_one(self.pool())
            .await
            .expect("count")
    }

    pub async fn verify_ledger(&self) {
        let report = self.tb.bank.ledger().verify().await.expect("verify runs");
        assert!(report.is_ok(), "ledger invariants: {report:?}");
    }

    /// Waits until the deposit at `outpoint` is in `state` (10 s at most).
    pub async fn wait_state(&self, outpoint: &OutPoint, state: DepositState) -> Deposit {
        let found =
            eventually(|| async { self.deposit(outpoint).await.filter(|d| d.state == state) })
                .await;
        match found {
            Some(d) => d,
            None => panic!(
                "deposit {outpoint} never reached {state:?}; it is {:?}",
                self.deposit(outpoint).await
            ),
        }
    }
}

/// Polls `f` every 50 ms until it gives `Some`, for 10 s at most.
pub async fn eventually<T, F, Fut>(f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_for(Duration::from_secs(10), f).await
}

/// Polls `f` every 50 ms until it gives `Some`, for `limit` at most.
pub async fn eventually_for<T, F, Fut>(limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn sats(v: u64) -> Sats {
    Sats::new(v).expect("test amount")
}

pub fn regtest(a: &str) -> Address {
    Address::from_str(a)
        .expect("address")
        .require_network(Network::Regtest)
        .expect("regtest")
}

pub fn txid(s: &str) -> Txid {
    s.parse().expect("txid")
}

/// One transaction paying several addresses: the stand-in funds a key of this test
/// (P2WPKH), which then spends that output to `outputs` (1,000 sat fee, no change) and
/// broadcasts it through Esplora's `POST /tx`, as any sender would.
pub async fn pay_many(env: &Env, outputs: &[(&Address, u64)]) -> Txid {
    use bdk_wallet::bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
    use bdk_wallet::bitcoin::sighash::{EcdsaSighashType, SighashCache};
    use bdk_wallet::bitcoin::transaction::Version;
    use bdk_wallet::bitcoin::{
        CompressedPublicKey, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness, absolute,
        ecdsa,
    };

    let secp = Secp256k1::new();
    let sk = SecretKey::from_slice(&[7u8; 32]).expect("test key");
    let pk = CompressedPublicKey(sk.public_key(&secp));
    let from = Address::p2wpkh(&pk, Network::Regtest);
    let fee = 1_000u64;
    let total: u64 = outputs.iter().map(|(_, v)| v).sum::<u64>() + fee;
    let funded = env
        .control()
        .fund(&from, Amount::from_sat(total))
        .await
        .expect("funded");
    let mut tx = Transaction {
        version: Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: funded.txid,
                vout: funded.vout,
            },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: outputs
            .iter()
            .map(|(a, v)| TxOut {
                value: Amount::from_sat(*v),
                script_pubkey: a.script_pubkey(),
            })
            .collect(),
    };
    let sighash = SighashCache::new(&tx)
        .p2wpkh_signature_hash(
            0,
            &from.script_pubkey(),
            Amount::from_sat(total),
            EcdsaSighashType::All,
        )
        .expect("sighash");
    let sig = secp.sign_ecdsa(&Message::from(sighash), &sk);
    let sig = ecdsa::Signature {
        signature: sig,
        sighash_type: EcdsaSighashType::All,
    };
    tx.input[0].witness = Witness::p2wpkh(&sig, &pk.0);
    env.control()
        .broadcast(&tx)
        .await
        .expect("broadcast accepted")
}
