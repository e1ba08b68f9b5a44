//! `sqlx::migrate!` embeds the files of `migrations/` at compile time, but cargo does not
//! know it reads them: without this, a new or edited migration can be left out of an
//! incremental build.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
