//! Running a binary (the demo, the bench) against a private SoftHSM2 token
//! directory.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` once, when the module is initialised, and
//! this workspace sets no environment variable in-process. A binary that wants
//! its own token directory therefore runs itself again as a child with the
//! variable set, and the parent only waits.

use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::Context as _;
use test_support::softhsm::{SoftHsmDir, conf_from_env};

/// In a process that already has `SOFTHSM2_CONF`, returns `None`: carry on.
/// Otherwise creates a private token directory (in `dir`, or a temporary one
/// removed afterwards), runs the current executable again with the same
/// arguments and `SOFTHSM2_CONF` pointing there, and returns its exit code.
///
/// # Errors
/// If the directory cannot be made or the child cannot be started.
pub fn with_private_softhsm(dir: Option<&Path>) -> anyhow::Result<Option<ExitCode>> {
    if conf_from_env().is_some() {
        return Ok(None);
    }
    let softhsm = match dir {
        Some(dir) => SoftHsmDir::in_dir(dir)?,
        None => SoftHsmDir::new()?,
    };
    let exe = std::env::current_exe().context("finding the current executable")?;
    let mut command = Command::new(&exe);
    command.args(std::env::args_os().skip(1));
    softhsm.configure(&mut command);
    let status = command
        .status()
        .with_context(|| format!("running {}", exe.display()))?;
    let code = status
        .code()
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(1);
    Ok(Some(ExitCode::from(code)))
}
