//! # chain-standin: a regtest **stand-in**, not a Bitcoin node
//!
//! Bitcoin Core cannot run where Bastion's tests and demo run, so they use
//! this stand-in: one process (`regtest-standin`) holding a small regtest
//! chain with real blocks (header, merkle root, regtest proof of work,
//! coinbase with the BIP34 height and a witness commitment), a UTXO set and a
//! mempool whose transactions must pass Bitcoin Core's script interpreter
//! (libbitcoinconsensus). It serves
//!
//! - Esplora's HTTP API ([`esplora`]), as `bdk_esplora` and `esplora-client` read it;
//! - control endpoints under `/control/` ([`control`]) to mine, fund, reorg and set fees;
//! - a bitcoind JSON-RPC face on a second port ([`rpc`]).
//!
//! [`spawn::StandIn`] starts the binary as a separate process for tests.
//! It is a test tool: never a dependency of production code.
//!
//! See the crate README for what it enforces and what it does not.

pub mod block;
pub mod chain;
pub mod control;
pub mod esplora;
pub mod mempool;
pub mod node;
pub mod rpc;
pub mod server;
pub mod spawn;
pub mod utxo;
pub mod validation;
pub mod wallet;
