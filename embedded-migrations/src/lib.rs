//! SQL migrations embedded at compile time, for sqlx's [`Migrator`].
//!
//! `sqlx::migrate!` needs sqlx's `migrate` feature, and that feature (like `uuid`, `chrono`
//! and `json`) also names the optional SQLite driver (`sqlx-sqlite?/migrate`). Cargo then
//! resolves that driver into the lockfile, with its `libsqlite3-sys`, which links
//! `sqlite3` in a version LDK Node's cannot share. The workspace therefore enables those
//! features on `sqlx-core` and `sqlx-postgres` directly, and embeds its migrations with
//! this crate: [`write`] in a build script lists the files, [`migrator`] turns them into
//! the [`Migrator`] `sqlx::migrate!` would have built (same versions, descriptions and
//! checksums, so databases migrated before keep validating).
//!
//! ```ignore
//! // build.rs
//! fn main() { embedded_migrations::write("migrations"); }
//! // src/db.rs
//! pub static MIGRATOR: LazyLock<Migrator> =
//!     LazyLock::new(|| embedded_migrations::migrator(include!(concat!(env!("OUT_DIR"), "/migrations.rs"))));
//! ```

use std::borrow::Cow;
use std::path::Path;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
pub use sqlx_core::migrate::{MigrateError, Migrator};
use sqlx_core::migrate::{Migration, MigrationSource, MigrationType};

/// One migration file, as embedded: its name (`0001_ledger.sql`) and its text.
#[derive(Debug, Clone, Copy)]
pub struct File {
    /// The file name: `<version>_<description>.sql`.
    pub name: &'static str,
    /// The SQL.
    pub sql: &'static str,
}

/// The version and description sqlx reads from a file name (`0004_payment_reserve.sql`:
/// 4, "payment reserve"), or `None` for a name that is not a migration's.
pub fn parse_name(name: &str) -> Option<(i64, String)> {
    let (version, rest) = name.split_once('_')?;
    if !rest.ends_with(".sql") {
        return None;
    }
    let version = version.parse().ok()?;
    let kind = MigrationType::from_filename(rest);
    Some((
        version,
        rest.trim_end_matches(kind.suffix()).replace('_', " "),
    ))
}

#[derive(Debug)]
struct Embedded(&'static [File]);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, sqlx_core::error::BoxDynError>> {
        let mut out = Vec::with_capacity(self.0.len());
        for f in self.0 {
            let Some((version, description)) = parse_name(f.name) else {
                let e = format!("not a migration file name: {}", f.name);
                return futures_util::future::ready(Err(e.into())).boxed();
            };
            out.push(Migration::new(
                version,
                Cow::Owned(description),
                MigrationType::from_filename(f.name),
                Cow::Borrowed(f.sql),
                // sqlx's own rule for opting out of the migration's transaction.
                f.sql.starts_with("-- no-transaction"),
            ));
        }
        futures_util::future::ready(Ok(out)).boxed()
    }
}

/// The migrator of these files, in version order.
///
/// # Panics
/// If a name is not `<version>_<description>.sql` (the build script refuses those first)
/// or two files share a version.
pub fn migrator(files: &'static [File]) -> Migrator {
    // Resolving embedded files does no I/O: the future is ready at once.
    let migrator = Migrator::new(Embedded(files))
        .now_or_never()
        .expect("resolving embedded migrations does not wait")
        .expect("embedded migrations have valid names");
    let mut versions: Vec<i64> = migrator.iter().map(|m| m.version).collect();
    versions.dedup();
    assert_eq!(
        versions.len(),
        files.len(),
        "two migrations share a version"
    );
    migrator
}

/// For a build script: lists the migration files of `dir` (relative to the crate) into
/// `$OUT_DIR/migrations.rs` as a `&[File]` expression, and tells cargo to rerun when the
/// directory changes (a new or edited migration must not be left out of a build).
///
/// # Panics
/// On a file name that is not a migration's, or when the files cannot be read or written:
/// the build stops with the reason.
#[allow(
    clippy::print_stdout,
    reason = "a build script speaks to cargo on standard output"
)]
pub fn write(dir: &str) {
    println!("cargo:rerun-if-changed={dir}");
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo");
    let out = std::env::var("OUT_DIR").expect("run by cargo");
    let list = listing(&Path::new(&manifest).join(dir), dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(Path::new(&out).join("migrations.rs"), list)
        .unwrap_or_else(|e| panic!("writing migrations.rs: {e}"));
}

/// The `&[File]` expression for the `.sql` files of `path` (named `dir` in the output,
/// relative to the crate), sorted by name.
fn listing(path: &Path, dir: &str) -> Result<String, String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".sql") {
            continue;
        }
        if parse_name(&name).is_none() {
            return Err(format!("{dir}/{name}: not <version>_<description>.sql"));
        }
        names.push(name);
    }
    names.sort();
    let mut out = String::from("&[\n");
    for name in names {
        out.push_str(&format!(
            "    embedded_migrations::File {{ name: {name:?}, sql: include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), {path:?})) }},\n",
            path = format!("/{dir}/{name}"),
        ));
    }
    out.push(']');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{File, listing, migrator, parse_name};

    #[test]
    fn names_as_sqlx_reads_them() {
        assert_eq!(parse_name("0001_ledger.sql"), Some((1, "ledger".into())));
        assert_eq!(
            parse_name("0004_payment_reserve.sql"),
            Some((4, "payment reserve".into()))
        );
        assert_eq!(parse_name("0002_x.up.sql"), Some((2, "x".into())));
        assert_eq!(parse_name("README.md"), None);
        assert_eq!(parse_name("one_ledger.sql"), None);
        assert_eq!(parse_name("0001.sql"), None);
    }

    #[test]
    fn a_listing_is_sorted_and_refuses_bad_names() {
        let dir = tempfile::tempdir().expect("temp dir");
        for n in ["0002_b.sql", "0001_a.sql", "notes.txt"] {
            std::fs::write(dir.path().join(n), "SELECT 1;").expect("write");
        }
        let list = listing(dir.path(), "m").expect("listing");
        let a = list.find("0001_a.sql").expect("a listed");
        let b = list.find("0002_b.sql").expect("b listed");
        assert!(a < b, "{list}");
        assert!(!list.contains("notes.txt"), "{list}");
        std::fs::write(dir.path().join("latest.sql"), "SELECT 1;").expect("write");
        let err = listing(dir.path(), "m").expect_err("a bad name");
        assert!(err.contains("latest.sql"), "{err}");
    }

    #[test]
    fn the_migrator_is_the_one_sqlx_reads_from_the_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = [
            ("0001_first_table.sql", "CREATE TABLE a (id INT);\n"),
            (
                "0002_an_index.sql",
                "-- no-transaction\nCREATE INDEX CONCURRENTLY i ON a (id);\n",
            ),
            ("0010_later.sql", "ALTER TABLE a ADD COLUMN b INT;\r\n"),
        ];
        let mut embedded = Vec::new();
        for (name, sql) in files {
            std::fs::write(dir.path().join(name), sql).expect("write");
            embedded.push(File { name, sql });
        }
        let ours = migrator(Box::leak(embedded.into_boxed_slice()));
        let theirs = sqlx_core::migrate::resolve_blocking(dir.path()).expect("sqlx reads it");
        assert_eq!(ours.iter().count(), theirs.len());
        for (a, (b, _)) in ours.iter().zip(&theirs) {
            assert_eq!(a.version, b.version);
            assert_eq!(a.description, b.description);
            assert_eq!(a.migration_type, b.migration_type);
            assert_eq!(a.checksum, b.checksum, "{}", a.description);
            assert_eq!(a.no_tx, b.no_tx, "{}", a.description);
        }
    }
}
