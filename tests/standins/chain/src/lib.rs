#![doc = include_str!("../README.md")]

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
