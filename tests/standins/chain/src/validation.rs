//! Whether a transaction may enter the mempool, and if not, why, in Bitcoin
//! Core's words and order (`PreChecks`, then `CheckTxInputs`, then scripts).
//!
//! Scripts run in Bitcoin Core's interpreter (libbitcoinconsensus) with every
//! flag it exposes: P2SH, DERSIG, NULLDUMMY, CHECKLOCKTIMEVERIFY,
//! CHECKSEQUENCEVERIFY and WITNESS. Policy flags the library does not expose
//! are checked here where custody depends on them (LOW_S); others are not.

use std::collections::HashSet;

use bitcoin::consensus::encode::serialize;
use bitcoin::script::Instruction;
use bitcoin::{Amount, OutPoint, Sequence, Transaction, absolute, ecdsa};

use crate::block::COINBASE_MATURITY;
use crate::chain::Chain;
use crate::mempool::Mempool;
use crate::utxo::Coin;

/// Bitcoin Core's `MAX_STANDARD_TX_WEIGHT`.
const MAX_STANDARD_TX_WEIGHT: u64 = 400_000;
/// Bitcoin Core's `MIN_STANDARD_TX_NONWITNESS_SIZE`.
const MIN_STANDARD_TX_NONWITNESS_SIZE: usize = 65;
/// BIP68: the relative lock's value bits, and the flag for time (512 s units).
const SEQUENCE_LOCKTIME_MASK: u32 = 0x0000_ffff;
const SEQUENCE_LOCKTIME_TYPE_FLAG: u32 = 1 << 22;
const SEQUENCE_LOCKTIME_GRANULARITY: u32 = 9;

/// Why a transaction was refused. `Display` is Bitcoin Core's reject reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// An input's output does not exist or is already spent in the chain.
    #[error("bad-txns-inputs-missingorspent")]
    MissingInputs,
    /// The transaction is already confirmed (some of its outputs are unspent).
    #[error("Transaction outputs already in utxo set")]
    AlreadyInChain,
    /// Any other refusal (the reason as bitcoind gives it).
    #[error("{0}")]
    Rejected(String),
}

impl Reject {
    /// The JSON-RPC error code `sendrawtransaction` answers with.
    pub fn rpc_code(&self) -> i32 {
        match self {
            // RPC_TRANSACTION_ERROR (TransactionError::MISSING_INPUTS).
            Self::MissingInputs => -25,
            // RPC_TRANSACTION_ALREADY_IN_CHAIN.
            Self::AlreadyInChain => -27,
            // RPC_TRANSACTION_REJECTED.
            Self::Rejected(_) => -26,
        }
    }

    fn new(reason: impl Into<String>) -> Self {
        Self::Rejected(reason.into())
    }
}

/// What an accepted transaction costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Inputs minus outputs.
    pub fee: Amount,
}

/// Checks `tx` for the mempool on top of `chain` and `mempool`.
///
/// # Errors
/// The first rule broken, in Bitcoin Core's order.
pub fn check(tx: &Transaction, chain: &Chain, mempool: &Mempool) -> Result<Accepted, Reject> {
    check_transaction(tx)?;
    check_standard(tx)?;
    let next_height = chain.tip_height() + 1;
    let tip_mtp = chain.median_time_past(chain.tip_height());
    if !is_final(tx, next_height, tip_mtp) {
        return Err(Reject::new("non-final"));
    }
    if tx
        .input
        .iter()
        .any(|i| mempool.spender(&i.previous_output).is_some())
    {
        // Replacement (BIP125 or full RBF) is not offered: see the README.
        return Err(Reject::new("txn-mempool-conflict"));
    }
    let coins = input_coins(tx, chain, mempool)?;
    check_sequence_locks(tx, &coins, chain, next_height, tip_mtp)?;
    let fee = check_inputs(tx, &coins, next_height)?;
    let vsize = u64::try_from(tx.vsize()).unwrap_or(u64::MAX);
    // The default minimum relay fee, 1 sat/vB.
    if fee.to_sat() < vsize {
        return Err(Reject::new(format!(
            "min relay fee not met, {} < {vsize}",
            fee.to_sat()
        )));
    }
    check_scripts(tx, &coins)?;
    Ok(Accepted { fee })
}

/// Bitcoin Core's `CheckTransaction`: context-free consensus rules.
fn check_transaction(tx: &Transaction) -> Result<(), Reject> {
    if tx.input.is_empty() {
        return Err(Reject::new("bad-txns-vin-empty"));
    }
    if tx.output.is_empty() {
        return Err(Reject::new("bad-txns-vout-empty"));
    }
    if tx.weight().to_wu() > 4_000_000 {
        return Err(Reject::new("bad-txns-oversize"));
    }
    let mut total = Amount::ZERO;
    for out in &tx.output {
        if out.value > Amount::MAX_MONEY {
            return Err(Reject::new("bad-txns-vout-toolarge"));
        }
        total = total
            .checked_add(out.value)
            .filter(|t| *t <= Amount::MAX_MONEY)
            .ok_or_else(|| Reject::new("bad-txns-txouttotal-toolarge"))?;
    }
    let mut seen = HashSet::new();
    for input in &tx.input {
        if !seen.insert(input.previous_output) {
            return Err(Reject::new("bad-txns-inputs-duplicate"));
        }
    }
    if tx.is_coinbase() {
        return Err(Reject::new("coinbase"));
    }
    if tx
        .input
        .iter()
        .any(|i| i.previous_output == OutPoint::null())
    {
        return Err(Reject::new("bad-txns-prevout-null"));
    }
    Ok(())
}

/// The parts of Bitcoin Core's `IsStandardTx` that custody meets.
fn check_standard(tx: &Transaction) -> Result<(), Reject> {
    if !(1..=3).contains(&tx.version.0) {
        return Err(Reject::new("version"));
    }
    if tx.weight().to_wu() > MAX_STANDARD_TX_WEIGHT {
        return Err(Reject::new("tx-size"));
    }
    for input in &tx.input {
        if !input.script_sig.is_push_only() {
            return Err(Reject::new("scriptsig-not-pushonly"));
        }
    }
    for out in &tx.output {
        if out.script_pubkey.is_op_return() {
            continue;
        }
        // Bitcoin Core's dust threshold at the default dust relay fee (3 sat/vB).
        if out.value < out.script_pubkey.minimal_non_dust() {
            return Err(Reject::new("dust"));
        }
    }
    if serialize_no_witness_len(tx) < MIN_STANDARD_TX_NONWITNESS_SIZE {
        return Err(Reject::new("tx-size-small"));
    }
    Ok(())
}

fn serialize_no_witness_len(tx: &Transaction) -> usize {
    tx.base_size()
}

/// Bitcoin Core's `IsFinalTx` for the next block.
fn is_final(tx: &Transaction, height: u32, time: u32) -> bool {
    let lock = tx.lock_time;
    if lock == absolute::LockTime::ZERO {
        return true;
    }
    let satisfied = match lock {
        absolute::LockTime::Blocks(h) => h.to_consensus_u32() < height,
        absolute::LockTime::Seconds(t) => t.to_consensus_u32() < time,
    };
    satisfied || tx.input.iter().all(|i| i.sequence == Sequence::MAX)
}

/// The coin each input spends, from the chain or the mempool.
fn input_coins(tx: &Transaction, chain: &Chain, mempool: &Mempool) -> Result<Vec<Coin>, Reject> {
    let next_height = chain.tip_height() + 1;
    let mut coins = Vec::with_capacity(tx.input.len());
    for input in &tx.input {
        let op = &input.previous_output;
        if let Some(coin) = chain.utxos().get(op) {
            coins.push(coin.clone());
        } else if let Some(out) = mempool.output(op) {
            coins.push(Coin {
                output: out.clone(),
                height: next_height,
                is_coinbase: false,
            });
        } else {
            let txid = tx.compute_txid();
            let vouts = 0..u32::try_from(tx.output.len()).unwrap_or(u32::MAX);
            if chain.locate(&txid).is_some()
                && vouts
                    .into_iter()
                    .any(|v| chain.utxos().get(&OutPoint::new(txid, v)).is_some())
            {
                return Err(Reject::AlreadyInChain);
            }
            return Err(Reject::MissingInputs);
        }
    }
    Ok(coins)
}

/// BIP68 relative lock times, as Bitcoin Core's `CalculateSequenceLocks` and
/// `EvaluateSequenceLocks` for the next block.
fn check_sequence_locks(
    tx: &Transaction,
    coins: &[Coin],
    chain: &Chain,
    next_height: u32,
    tip_mtp: u32,
) -> Result<(), Reject> {
    if tx.version.0 < 2 {
        return Ok(());
    }
    let mut min_height: i64 = -1;
    let mut min_time: i64 = -1;
    for (input, coin) in tx.input.iter().zip(coins) {
        if !input.sequence.is_relative_lock_time() {
            continue;
        }
        let seq = input.sequence.to_consensus_u32();
        let value = i64::from(seq & SEQUENCE_LOCKTIME_MASK);
        if seq & SEQUENCE_LOCKTIME_TYPE_FLAG != 0 {
            let coin_time = i64::from(chain.median_time_past(coin.height.saturating_sub(1)));
            min_time = min_time.max(coin_time + (value << SEQUENCE_LOCKTIME_GRANULARITY) - 1);
        } else {
            min_height = min_height.max(i64::from(coin.height) + value - 1);
        }
    }
    if min_height >= i64::from(next_height) || min_time >= i64::from(tip_mtp) {
        return Err(Reject::new("non-BIP68-final"));
    }
    Ok(())
}

/// Bitcoin Core's `Consensus::CheckTxInputs`: maturity and value.
fn check_inputs(tx: &Transaction, coins: &[Coin], spend_height: u32) -> Result<Amount, Reject> {
    let mut value_in = Amount::ZERO;
    for coin in coins {
        if coin.is_coinbase && spend_height - coin.height < COINBASE_MATURITY {
            return Err(Reject::new(format!(
                "bad-txns-premature-spend-of-coinbase, tried to spend coinbase at depth {}",
                spend_height - coin.height
            )));
        }
        value_in = value_in
            .checked_add(coin.output.value)
            .filter(|v| *v <= Amount::MAX_MONEY)
            .ok_or_else(|| Reject::new("bad-txns-inputvalues-outofrange"))?;
    }
    let value_out = tx
        .output
        .iter()
        .try_fold(Amount::ZERO, |sum, o| sum.checked_add(o.value))
        .ok_or_else(|| Reject::new("bad-txns-txouttotal-toolarge"))?;
    value_in.checked_sub(value_out).ok_or_else(|| {
        Reject::new(format!(
            "bad-txns-in-belowout, value in ({}) < value out ({})",
            value_in.display_in(bitcoin::Denomination::Bitcoin),
            value_out.display_in(bitcoin::Denomination::Bitcoin)
        ))
    })
}

/// Every input through libbitcoinconsensus, then the LOW_S policy rule.
fn check_scripts(tx: &Transaction, coins: &[Coin]) -> Result<(), Reject> {
    let serialized = serialize(tx);
    for (i, coin) in coins.iter().enumerate() {
        if coin.output.script_pubkey.is_p2tr() {
            // libbitcoinconsensus as the bitcoin crate drives it has no
            // taproot flag: such a spend would pass unchecked, so it is refused.
            return Err(Reject::new(format!(
                "non-mandatory-script-verify-flag (the stand-in cannot verify taproot spends), input {i}"
            )));
        }
        if let Err(e) = bitcoin::consensus::verify_script(
            &coin.output.script_pubkey,
            i,
            coin.output.value,
            &serialized,
        ) {
            let detail =
                std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string);
            return Err(Reject::new(format!(
                "mandatory-script-verify-flag-failed (libbitcoinconsensus: {detail}), input {i}"
            )));
        }
    }
    for input in &tx.input {
        let pushes = input.witness.iter().map(<[u8]>::to_vec).chain(
            input.script_sig.instructions().filter_map(|ins| match ins {
                Ok(Instruction::PushBytes(b)) => Some(b.as_bytes().to_vec()),
                _ => None,
            }),
        );
        for element in pushes {
            if is_high_s_signature(&element) {
                return Err(Reject::new(
                    "non-mandatory-script-verify-flag (Non-canonical signature: S value is unnecessarily high)",
                ));
            }
        }
    }
    Ok(())
}

/// Whether `element` is a DER ECDSA signature with a sighash byte whose S is
/// in the upper half (Bitcoin Core's SCRIPT_VERIFY_LOW_S refuses those).
fn is_high_s_signature(element: &[u8]) -> bool {
    let Ok(sig) = ecdsa::Signature::from_slice(element) else {
        return false;
    };
    let mut normalized = sig.signature;
    normalized.normalize_s();
    normalized != sig.signature
}
