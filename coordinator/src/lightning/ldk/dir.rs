//! The node's directory: private to the coordinator's user (mode 0700: it holds the node's
//! seed and channel state) and locked while a node runs from it. Two processes running one
//! node would each sign channel states the other does not know of; a peer seeing an old one
//! takes the whole channel. The lock is `flock` on a file in the directory: the kernel
//! releases it when the process dies, so a crash leaves no stale lock behind.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{FlockOperation, flock};

use crate::lightning::LightningError;

/// Held while the node runs; the lock goes with the file.
#[derive(Debug)]
pub(super) struct DirLock {
    _file: File,
}

/// Makes `dir` (0700) if missing, narrows it to 0700 if it exists, and locks it.
///
/// # Errors
/// [`LightningError::Invalid`] if the directory cannot be made or another process (or
/// another node of this one) holds it.
pub(super) fn lock(dir: &Path) -> Result<DirLock, LightningError> {
    let io = |what: &str, e: std::io::Error| {
        LightningError::Invalid(format!("{what} {}: {e}", dir.display()))
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io("making", e))?;
    std::fs::set_permissions(dir, Permissions::from_mode(0o700))
        .map_err(|e| io("restricting", e))?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .map_err(|e| io("opening the lock of", e))?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(DirLock { _file: file }),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(LightningError::Invalid(format!(
            "another process runs the Lightning node in {}",
            dir.display()
        ))),
        Err(e) => Err(io("locking", e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_directory_is_refused_until_the_first_is_dropped() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("node");
        let first = lock(&dir).expect("locked");
        let mode = std::fs::metadata(&dir).expect("made").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let second = lock(&dir).expect_err("held");
        assert!(second.to_string().contains("another process"), "{second}");
        drop(first);
        lock(&dir).expect("free again");
    }

    #[test]
    fn an_open_directory_is_narrowed_to_its_owner() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(tmp.path(), Permissions::from_mode(0o755)).expect("chmod");
        let _held = lock(tmp.path()).expect("locked");
        let mode = std::fs::metadata(tmp.path())
            .expect("dir")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
