//! `signer audit verify|export`: the hash-chained audit log.

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check every record's hash chain; report the first broken record.
    Verify,
    /// Write the audit log as JSON lines.
    Export,
}

pub fn run(_cmd: AuditCommand) -> anyhow::Result<()> {
    anyhow::bail!("signer audit is not available in this build yet")
}
