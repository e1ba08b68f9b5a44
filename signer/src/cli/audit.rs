//! `signer audit verify|export`: the hash-chained audit log.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use bitcoin::hex::DisplayHex as _;
use signer::audit::{self, Verification};

use super::serve::DatabaseArgs;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check every record's hash chain; report the first broken record.
    Verify {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Write the audit log as JSON lines (to stdout, or --out).
    Export {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The file to write.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub fn run(cmd: AuditCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        match cmd {
            AuditCommand::Verify { database } => {
                let store = database.store(1).await?;
                match audit::verify(&store).await? {
                    Verification::Intact { head } => {
                        println!(
                            "audit log intact: {} records, head {}",
                            head.seq,
                            head.hash.to_lower_hex_string()
                        );
                        Ok(())
                    }
                    Verification::Broken { seq, reason } => {
                        anyhow::bail!("audit log broken at record {seq}: {reason}")
                    }
                }
            }
            AuditCommand::Export { database, out } => {
                let store = database.store(1).await?;
                let count = match out {
                    Some(path) => {
                        let file = std::fs::File::create(&path)
                            .with_context(|| format!("creating {}", path.display()))?;
                        let mut writer = std::io::BufWriter::new(file);
                        let count = audit::export(&store, &mut writer).await?;
                        writer.flush()?;
                        count
                    }
                    None => {
                        let stdout = std::io::stdout();
                        let mut lock = stdout.lock();
                        audit::export(&store, &mut lock).await?
                    }
                };
                eprintln!("exported {count} audit records");
                Ok(())
            }
        }
    })
}
