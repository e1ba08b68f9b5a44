//! Blocks as a regtest node makes them: a coinbase with the BIP34 height and a
//! BIP141 witness commitment, the merkle root, and a nonce ground until the
//! header meets the regtest target.

use bitcoin::block::{Header, Version};
use bitcoin::blockdata::constants::genesis_block;
use bitcoin::hashes::Hash;
use bitcoin::script::{Builder, PushBytesBuf};
use bitcoin::{
    Amount, Block, BlockHash, CompactTarget, Network, OutPoint, ScriptBuf, Sequence, Target,
    Transaction, TxIn, TxMerkleNode, TxOut, Txid, Witness, absolute, opcodes, transaction,
};

/// Regtest halves the subsidy every 150 blocks (Bitcoin Core's `-regtest`).
pub const HALVING_INTERVAL: u32 = 150;
/// A coinbase output is spendable once it is 100 blocks deep.
pub const COINBASE_MATURITY: u32 = 100;
/// The regtest proof-of-work limit, `0x207fffff`: about one nonce in two meets it.
pub const REGTEST_BITS: u32 = 0x207f_ffff;
/// Tags every coinbase this stand-in makes, after the BIP34 height.
const COINBASE_TAG: [u8; 17] = *b"/regtest-standin/";
/// BIP141's commitment header inside the coinbase `OP_RETURN` output.
const WITNESS_COMMITMENT_HEADER: [u8; 4] = [0xaa, 0x21, 0xa9, 0xed];

/// The block subsidy at `height`: 50 BTC, halved every [`HALVING_INTERVAL`] blocks.
pub fn subsidy(height: u32) -> Amount {
    let halvings = height / HALVING_INTERVAL;
    if halvings >= 64 {
        return Amount::ZERO;
    }
    Amount::from_sat(5_000_000_000u64 >> halvings)
}

/// Bitcoin Core's regtest genesis block, so that wallets checking the genesis
/// hash (bdk does) accept the stand-in's chain.
pub fn genesis() -> Block {
    genesis_block(Network::Regtest)
}

/// What a new block is made of.
#[derive(Debug)]
pub struct Template<'a> {
    /// The block it builds on.
    pub prev: &'a Header,
    /// Its height (the coinbase commits to it, BIP34).
    pub height: u32,
    /// Header time.
    pub time: u32,
    /// Who the coinbase pays.
    pub payout: ScriptBuf,
    /// Fees of `txs`, added to the subsidy.
    pub fees: Amount,
    /// The transactions after the coinbase, parents before children.
    pub txs: Vec<Transaction>,
    /// Makes the coinbase unique among all blocks this process made, so a
    /// block mined after an invalidation never repeats the stale one.
    pub extra_nonce: u64,
}

/// Builds the block and grinds its nonce until the header meets the regtest target.
///
/// # Errors
/// If subsidy plus fees overflow (they cannot for valid transactions).
pub fn assemble(template: Template<'_>) -> Result<Block, &'static str> {
    let value = subsidy(template.height)
        .checked_add(template.fees)
        .ok_or("coinbase value overflows")?;
    let coinbase = coinbase_tx(
        template.height,
        template.extra_nonce,
        template.payout,
        value,
    );
    let mut txdata = Vec::with_capacity(template.txs.len() + 1);
    txdata.push(coinbase);
    txdata.extend(template.txs);
    let bits = CompactTarget::from_consensus(REGTEST_BITS);
    let mut block = Block {
        header: Header {
            version: Version::from_consensus(0x2000_0000),
            prev_blockhash: template.prev.block_hash(),
            merkle_root: TxMerkleNode::all_zeros(),
            time: template.time,
            bits,
            nonce: 0,
        },
        txdata,
    };
    // BIP141: the coinbase's witness holds a 32-byte reserved value, and an
    // OP_RETURN output commits to the witness root (the coinbase's own wtxid
    // counts as zero, so adding the output does not change the root).
    let reserved = [0u8; 32];
    let witness_root = block.witness_root().ok_or("a block has a coinbase")?;
    let commitment = Block::compute_witness_commitment(&witness_root, &reserved);
    let mut payload = WITNESS_COMMITMENT_HEADER.to_vec();
    payload.extend_from_slice(commitment.as_byte_array());
    let payload = PushBytesBuf::try_from(payload).map_err(|_| "36 bytes fit in a push")?;
    let commitment_script = Builder::new()
        .push_opcode(opcodes::all::OP_RETURN)
        .push_slice(payload)
        .into_script();
    let coinbase = &mut block.txdata[0];
    coinbase.input[0].witness = Witness::from_slice(&[reserved]);
    coinbase.output.push(TxOut {
        value: Amount::ZERO,
        script_pubkey: commitment_script,
    });
    block.header.merkle_root = block
        .compute_merkle_root()
        .ok_or("a block has a coinbase")?;
    let target = Target::from_compact(bits);
    while block.header.validate_pow(target).is_err() {
        block.header.nonce = block.header.nonce.wrapping_add(1);
    }
    Ok(block)
}

fn coinbase_tx(height: u32, extra_nonce: u64, payout: ScriptBuf, value: Amount) -> Transaction {
    // As Bitcoin Core's `CScript() << nHeight`: OP_1..OP_16 for small heights.
    let script_sig = Builder::new()
        .push_int(i64::from(height))
        .push_slice(COINBASE_TAG)
        .push_slice(extra_nonce.to_le_bytes())
        .into_script();
    Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig,
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value,
            script_pubkey: payout,
        }],
    }
}

/// The merkle branch of the transaction at `pos`, from the leaf's sibling up
/// to the child of the root, as Esplora's `/tx/:txid/merkle-proof` lists it.
pub fn merkle_branch(txids: &[Txid], pos: usize) -> Vec<TxMerkleNode> {
    let mut level: Vec<TxMerkleNode> = txids
        .iter()
        .map(|t| TxMerkleNode::from_raw_hash(t.to_raw_hash()))
        .collect();
    let mut pos = pos;
    let mut branch = Vec::new();
    while level.len() > 1 {
        let sibling = pos ^ 1;
        branch.push(*level.get(sibling).unwrap_or(&level[pos]));
        level = level
            .chunks(2)
            .map(|pair| {
                let left = pair[0];
                let right = *pair.get(1).unwrap_or(&left);
                let mut bytes = [0u8; 64];
                bytes[..32].copy_from_slice(left.as_byte_array());
                bytes[32..].copy_from_slice(right.as_byte_array());
                TxMerkleNode::hash(&bytes)
            })
            .collect();
        pos /= 2;
    }
    branch
}

/// Folds a merkle branch back up to the root (what a client of the proof does).
pub fn merkle_root_from_branch(txid: Txid, branch: &[TxMerkleNode], pos: usize) -> TxMerkleNode {
    let mut node = TxMerkleNode::from_raw_hash(txid.to_raw_hash());
    let mut pos = pos;
    for sibling in branch {
        let (left, right) = if pos.is_multiple_of(2) {
            (node, *sibling)
        } else {
            (*sibling, node)
        };
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(left.as_byte_array());
        bytes[32..].copy_from_slice(right.as_byte_array());
        node = TxMerkleNode::hash(&bytes);
        pos /= 2;
    }
    node
}

/// A block's hash, for logs and indexes.
pub fn hash(block: &Block) -> BlockHash {
    block.block_hash()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsidy_halves_every_150_blocks() {
        assert_eq!(subsidy(0), Amount::from_btc(50.0).expect("valid"));
        assert_eq!(subsidy(149), Amount::from_sat(5_000_000_000));
        assert_eq!(subsidy(150), Amount::from_sat(2_500_000_000));
        assert_eq!(subsidy(300), Amount::from_sat(1_250_000_000));
        assert_eq!(subsidy(150 * 64), Amount::ZERO);
    }

    #[test]
    fn assembled_block_is_valid_regtest_block() {
        let genesis = genesis();
        let block = assemble(Template {
            prev: &genesis.header,
            // Above 16, where BIP34 pushes bytes rather than OP_N (the
            // bitcoin crate's parser reads only pushed bytes).
            height: 17,
            time: genesis.header.time + 1,
            payout: ScriptBuf::new_op_return([1u8; 4]),
            fees: Amount::ZERO,
            txs: vec![],
            extra_nonce: 0,
        })
        .expect("assembles");
        assert!(block.check_merkle_root());
        assert!(block.check_witness_commitment());
        assert_eq!(block.bip34_block_height().expect("bip34"), 17);
        assert!(
            block
                .header
                .validate_pow(Target::from_compact(CompactTarget::from_consensus(
                    REGTEST_BITS
                )))
                .is_ok()
        );
        assert_eq!(block.header.prev_blockhash, genesis.block_hash());
    }

    #[test]
    fn merkle_branch_folds_back_to_the_root() {
        for n in 1..=9u8 {
            let txids: Vec<Txid> = (0..n).map(|i| Txid::hash(&[i])).collect();
            let root = bitcoin::merkle_tree::calculate_root(
                txids
                    .iter()
                    .map(|t| TxMerkleNode::from_raw_hash(t.to_raw_hash())),
            )
            .expect("non-empty");
            for (pos, txid) in txids.iter().enumerate() {
                let branch = merkle_branch(&txids, pos);
                assert_eq!(
                    merkle_root_from_branch(*txid, &branch, pos),
                    root,
                    "n={n} pos={pos}"
                );
            }
        }
    }
}
