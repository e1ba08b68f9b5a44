//! Whole-system test infrastructure: the stand-in chain, policy wallets built
//! with bdk, the software recovery key, and custody set-ups over real SoftHSM2
//! tokens, and the bank as processes (the coordinator and the chain stand-in) for the
//! demo and the crash tests. Used by the tests in `tests/`, the bench and the demo.

pub mod bank_demo;
pub mod bank_process;
pub mod chain;
pub mod custody;
pub mod lightning_demo;
pub mod process;
pub mod recovery;
pub mod transfer_load;
pub mod wallet;
