//! SoftHSM2 support for tests and demos: private token directories and isolated tests.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` **once per process, in `C_Initialize`**. A process can
//! therefore see only one token directory, and the variable must be in its environment
//! before [`Module::load`](hsm_config::Module::load). Since edition 2024 makes
//! `std::env::set_var` unsafe (and this workspace forbids unsafe code), nothing here sets
//! environment variables in-process. Instead:
//!
//! * [`SoftHsmDir`] creates a private token directory and a `softhsm2.conf`, and
//!   [`SoftHsmDir::configure`] puts `SOFTHSM2_CONF` on a [`Command`] for a subprocess
//!   (how the CLI tests run the `hsm-config` binary).
//! * [`isolate`] re-runs the *current test* in a child process of the test binary, with
//!   `SOFTHSM2_CONF` pointing at a fresh private directory. The parent only waits and
//!   reports; the child runs the test body in-process against the real module.
//!   [`TestToken::isolated`] adds an initialised token with generated keys and a
//!   logged-in session.
//!
//! This works under `cargo nextest run` (one process per test: the child is one more) and
//! under `cargo test` (tests in threads: each test spawns its own child, the parent never
//! calls `C_Initialize`). It needs the standard libtest harness (`--exact` filtering).
//!
//! ```no_run
//! use test_support::softhsm::TestToken;
//!
//! #[test]
//! fn signs_with_a_real_token() -> anyhow::Result<()> {
//!     // In the parent: runs this test again in a child and returns None when it passed.
//!     let Some(hsm) = TestToken::isolated("signs_with_a_real_token", &["cold-a", "hot-a"])?
//!     else {
//!         return Ok(());
//!     };
//!     // In the child: a private token, two keys, a logged-in session.
//!     let (handle, key) = hsm.session().signing_key("cold-a")?;
//!     let sig = hsm.session().sign_digest(&handle, &key.public_key, &[7; 32])?;
//!     # let _ = sig;
//!     Ok(())
//! }
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use secrecy::SecretString;

use hsm_config::{KeyInfo, Module, Profile, SoPin, TokenSession, UserPin};

use crate::error::{Error, Result};

/// The variable SoftHSM2 reads its configuration path from.
pub const CONF_ENV: &str = "SOFTHSM2_CONF";
/// Overrides where [`module_path()`] looks for the SoftHSM2 module.
pub const MODULE_ENV: &str = "SOFTHSM2_MODULE";
/// Set in the child process by [`isolate`]: the name of the test it runs.
pub const ISOLATED_TEST_ENV: &str = "TEST_SUPPORT_ISOLATED_TEST";
/// Set in the child process by [`isolate`]: a file the child creates to prove it ran.
pub const ISOLATED_MARKER_ENV: &str = "TEST_SUPPORT_ISOLATED_MARKER";

/// Where Debian/Ubuntu install the module.
pub const MODULE_CANDIDATES: [&str; 2] = [
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
];

/// Token label used by [`TestToken`].
pub const TEST_TOKEN_LABEL: &str = "test-token";
/// SO PIN used by [`TestToken`] (tests only).
pub const TEST_SO_PIN: &str = "test-so-pin-0000";
/// User PIN used by [`TestToken`] (tests only).
pub const TEST_USER_PIN: &str = "test-user-pin-1234";

/// Find the SoftHSM2 module: `SOFTHSM2_MODULE` if set, else the first of
/// [`MODULE_CANDIDATES`] that exists.
///
/// # Errors
///
/// [`Error::SoftHsmModuleNotFound`] listing the paths tried.
pub fn module_path() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(MODULE_ENV) {
        return Ok(PathBuf::from(path));
    }
    let tried = MODULE_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .collect::<Vec<_>>();
    tried
        .iter()
        .find(|p| p.exists())
        .cloned()
        .ok_or(Error::SoftHsmModuleNotFound { tried })
}

/// The `SOFTHSM2_CONF` this process was started with, if any.
pub fn conf_from_env() -> Option<PathBuf> {
    std::env::var_os(CONF_ENV).map(PathBuf::from)
}

/// A private SoftHSM2 token directory with its `softhsm2.conf`.
///
/// Layout: `<root>/softhsm2.conf` and `<root>/tokens/`. The configuration uses the file
/// object store and logs errors only. Created by [`SoftHsmDir::new`] in a temporary
/// directory (removed on drop), or by [`SoftHsmDir::in_dir`] in a directory you keep.
#[derive(Debug)]
pub struct SoftHsmDir {
    temp: Option<tempfile::TempDir>,
    root: PathBuf,
    token_dir: PathBuf,
    conf: PathBuf,
}

impl SoftHsmDir {
    /// Create the layout in a new temporary directory, removed when this value drops.
    ///
    /// # Errors
    ///
    /// [`Error::SoftHsm`] when the directory or file cannot be created.
    pub fn new() -> Result<SoftHsmDir> {
        let temp = tempfile::Builder::new()
            .prefix("softhsm2-")
            .tempdir()
            .map_err(|source| Error::SoftHsm {
                context: "creating a temporary directory".into(),
                source,
            })?;
        // The temporary directory exists already, with the default mode (0755 here).
        #[cfg(unix)]
        std::fs::set_permissions(
            temp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .map_err(|source| Error::SoftHsm {
            context: "making the temporary directory private".into(),
            source,
        })?;
        let mut dir = Self::in_dir(temp.path())?;
        dir.temp = Some(temp);
        Ok(dir)
    }

    /// Create the layout in `root` (created if missing; never removed by this value).
    ///
    /// # Errors
    ///
    /// [`Error::SoftHsm`] when the directory or file cannot be created.
    pub fn in_dir(root: impl AsRef<Path>) -> Result<SoftHsmDir> {
        let io = |context: String| move |source| Error::SoftHsm { context, source };
        let root = root.as_ref();
        private_dir(root).map_err(io(format!("creating {}", root.display())))?;
        let root =
            std::fs::canonicalize(root).map_err(io(format!("resolving {}", root.display())))?;
        let token_dir = root.join("tokens");
        private_dir(&token_dir).map_err(io(format!("creating {}", token_dir.display())))?;
        let conf = root.join("softhsm2.conf");
        let text = format!(
            "# Private SoftHSM2 configuration.\n\
             directories.tokendir = {}\n\
             objectstore.backend = file\n\
             log.level = ERROR\n\
             slots.removable = false\n",
            token_dir.display()
        );
        std::fs::write(&conf, text).map_err(io(format!("writing {}", conf.display())))?;
        Ok(SoftHsmDir {
            temp: None,
            root,
            token_dir,
            conf,
        })
    }

    /// The directory holding the configuration and the tokens.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The token directory (`directories.tokendir`).
    pub fn token_dir(&self) -> &Path {
        &self.token_dir
    }

    /// The `softhsm2.conf` to pass as `SOFTHSM2_CONF`.
    pub fn conf_path(&self) -> &Path {
        &self.conf
    }

    /// Set `SOFTHSM2_CONF` for a subprocess.
    pub fn configure<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        command.env(CONF_ENV, &self.conf)
    }

    /// Whether the directory is removed on drop.
    pub fn is_temporary(&self) -> bool {
        self.temp.is_some()
    }
}

/// Creates a directory (and missing parents) readable by its owner only: token files hold
/// wrapped keys and PIN-derived data, nobody else's to read. Missing parents are made
/// 0700 too; an existing directory is left as it is (its owner chose its mode).
fn private_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

/// Run the current test in a child process with its own SoftHSM2 token directory.
///
/// `test_name` is the test's full libtest name: `my_test` for a function at the top of
/// `tests/foo.rs`, `tests::my_test` inside `mod tests`, `token::tests::my_test` in a
/// library's module. Returns:
///
/// * `Ok(false)` in the parent, after the child ran the test and passed: return at once.
/// * `Ok(true)` in the child, where `SOFTHSM2_CONF` names a fresh, empty token directory:
///   run the test body.
///
/// The child is the current test executable, run with `<test_name> --exact --nocapture
/// --test-threads=1 --include-ignored`; its output is forwarded to the parent's stderr.
///
/// # Errors
///
/// [`Error::SoftHsm`] when the directory cannot be made or the child cannot be spawned.
///
/// # Panics
///
/// In the parent, when the child fails (the panic message carries the child's output) or
/// when it did not run the test at all (a wrong `test_name`).
pub fn isolate(test_name: &str) -> Result<bool> {
    if let Some(running) = std::env::var_os(ISOLATED_TEST_ENV) {
        if running != test_name {
            return Err(Error::SoftHsm {
                context: format!(
                    "isolate({test_name:?}) called in the child process of {running:?}"
                ),
                source: std::io::Error::other("test name mismatch"),
            });
        }
        if let Some(marker) = std::env::var_os(ISOLATED_MARKER_ENV) {
            std::fs::write(&marker, test_name).map_err(|source| Error::SoftHsm {
                context: "writing the isolation marker".into(),
                source,
            })?;
        }
        if conf_from_env().is_none() {
            return Err(Error::SoftHsmConfNotSet);
        }
        return Ok(true);
    }

    let dir = SoftHsmDir::new()?;
    let marker = dir.root().join("isolated-test-ran");
    let exe = std::env::current_exe().map_err(|source| Error::SoftHsm {
        context: "finding the current test executable".into(),
        source,
    })?;
    let mut command = Command::new(&exe);
    command
        .args([
            test_name,
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "--include-ignored",
        ])
        .env(ISOLATED_TEST_ENV, test_name)
        .env(ISOLATED_MARKER_ENV, &marker);
    dir.configure(&mut command);
    let output = command.output().map_err(|source| Error::SoftHsm {
        context: format!("running {} for test {test_name:?}", exe.display()),
        source,
    })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        panic!(
            "isolated test {test_name:?} failed in its child process ({})\n\
             ---- child stdout ----\n{stdout}\n---- child stderr ----\n{stderr}",
            output.status
        );
    }
    if !marker.exists() {
        panic!(
            "isolated test {test_name:?}: the child process ran no test of that name; \
             pass the full libtest name (e.g. \"tests::{test_name}\" inside `mod tests`)\n\
             ---- child stdout ----\n{stdout}"
        );
    }
    eprint!("{stderr}");
    Ok(false)
}

/// An initialised SoftHSM2 token with generated keys and a logged-in session.
///
/// Uses [`TEST_TOKEN_LABEL`], [`TEST_SO_PIN`] and [`TEST_USER_PIN`]. Keep the value alive
/// for the duration of the test: its session keeps the token logged in.
#[derive(Debug)]
pub struct TestToken {
    module: Module,
    token: String,
    keys: Vec<KeyInfo>,
    session: TokenSession,
}

impl TestToken {
    /// [`isolate`] the current test, then in the child [`TestToken::create`] a token.
    ///
    /// Returns `Ok(None)` in the parent (the child passed: return), `Ok(Some(token))` in
    /// the child.
    ///
    /// # Errors
    ///
    /// As [`isolate`] and [`TestToken::create`].
    ///
    /// # Panics
    ///
    /// As [`isolate`].
    pub fn isolated(test_name: &str, key_labels: &[&str]) -> Result<Option<TestToken>> {
        if isolate(test_name)? {
            Self::create(key_labels).map(Some)
        } else {
            Ok(None)
        }
    }

    /// In a process started with `SOFTHSM2_CONF` set, load the SoftHSM2 module, initialise
    /// a token labelled [`TEST_TOKEN_LABEL`] and generate one key per label.
    ///
    /// # Errors
    ///
    /// [`Error::SoftHsmConfNotSet`] when `SOFTHSM2_CONF` is not set (this never touches
    /// the system-wide token directory), and the errors of [`Module::load`],
    /// [`Module::init_token`], [`Module::open_session`], [`TokenSession::generate_key`].
    pub fn create(key_labels: &[&str]) -> Result<TestToken> {
        if conf_from_env().is_none() {
            return Err(Error::SoftHsmConfNotSet);
        }
        let module = Module::load(module_path()?)?;
        module.init_token(TEST_TOKEN_LABEL, &Self::so_pin(), &Self::user_pin())?;
        let session = module.open_session(TEST_TOKEN_LABEL, &Self::user_pin())?;
        let keys = key_labels
            .iter()
            .map(|label| session.generate_key(label))
            .collect::<hsm_config::Result<Vec<_>>>()?;
        Ok(TestToken {
            module,
            token: TEST_TOKEN_LABEL.to_owned(),
            keys,
            session,
        })
    }

    /// The loaded module (clone it to open sessions on other threads).
    pub fn module(&self) -> &Module {
        &self.module
    }

    /// The token's label.
    pub fn token_label(&self) -> &str {
        &self.token
    }

    /// The user PIN ([`TEST_USER_PIN`]).
    pub fn user_pin() -> UserPin {
        UserPin::new(SecretString::from(TEST_USER_PIN))
    }

    /// The SO PIN ([`TEST_SO_PIN`]).
    pub fn so_pin() -> SoPin {
        SoPin::new(SecretString::from(TEST_SO_PIN))
    }

    /// The generated keys, in the order asked for.
    pub fn keys(&self) -> &[KeyInfo] {
        &self.keys
    }

    /// The logged-in session made at creation.
    pub fn session(&self) -> &TokenSession {
        &self.session
    }

    /// Open another logged-in session on the token.
    ///
    /// # Errors
    ///
    /// As [`Module::open_session`].
    pub fn open_session(&self) -> hsm_config::Result<TokenSession> {
        self.module.open_session(&self.token, &Self::user_pin())
    }

    /// A profile describing this token (module path, label, key labels).
    pub fn profile(&self) -> Profile {
        Profile {
            name: "softhsm2-test".into(),
            module: self.module.path().to_owned(),
            token_label: self.token.clone(),
            keys: self.keys.iter().map(|k| k.label.clone()).collect(),
            sessions: None,
            notes: None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn token_directories_are_created_for_the_owner_only() {
        let base = tempfile::tempdir().unwrap();
        // Whatever the umask would allow, the directories made here are 0700.
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = base.path().join("new-parent").join("softhsm");
        let dir = SoftHsmDir::in_dir(&root).unwrap();
        assert_eq!(mode(dir.root()), 0o700);
        assert_eq!(mode(&base.path().join("new-parent")), 0o700);
        assert_eq!(mode(dir.token_dir()), 0o700);
        let temp = SoftHsmDir::new().unwrap();
        assert_eq!(mode(temp.root()), 0o700);
        assert_eq!(mode(temp.token_dir()), 0o700);
    }
}
