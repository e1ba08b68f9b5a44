//! `signer policy …`: the policy ceremony (owned by the rules work; this
//! placeholder only lets the command tree compile until it lands).

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {}

pub fn run(cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {}
}
