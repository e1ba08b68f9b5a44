//! `signer officer …`: the treasury officers' commands (owned by the officers
//! work; this placeholder only lets the command tree compile until it lands).

#[derive(Debug, clap::Subcommand)]
pub enum OfficerCommand {}

pub fn run(cmd: OfficerCommand) -> anyhow::Result<()> {
    match cmd {}
}
