//! Transfers per second through the GraphQL API with one coordinator instance and with two
//! on the same database, side by side in one run (the ratio is what to read: both phases
//! share the machine, the database and the client).
//!
//! `cargo build --release -p coordinator && cargo bench -p system-tests --bench replicas`
//! (PostgreSQL at DATABASE_URL). Clients pay each other in a ring of users, each request
//! with its own idempotency key, as a wallet app sends them.

use std::ffi::OsStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use system_tests::bank_process::{Coordinator, sibling_binary};
use system_tests::transfer_load::{
    Answer, User, send_input, send_until_final, sign_up, write_high_limits,
};
use test_support::ScratchDatabase;
use test_support::db::database_url_from_env;

// Registrations per address are rate limited: eight fit in one window.
const USERS: usize = 8;
const CLIENTS: usize = 16;
const PHASE: Duration = Duration::from_secs(10);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let binary = sibling_binary("coordinator")?;
    let admin_url = database_url_from_env();
    let db = ScratchDatabase::create(&admin_url, "replicas_bench").await?;
    let db_url = db.url();
    let dir = tempfile::tempdir()?;
    let limits = dir.path().join("limits.toml");
    write_high_limits(&limits)?;
    let args = [OsStr::new("--limits"), limits.as_os_str()];
    let first =
        Coordinator::serve_with(&binary, &db_url, &args, &dir.path().join("c0.log")).await?;
    let pool = db.pool(4).await?;
    let users = Arc::new(sign_up(&pool, &first, &[10_000_000; USERS]).await?);

    let one = phase(&users, &[first.url()]).await?;
    let second =
        Coordinator::serve_with(&binary, &db_url, &args, &dir.path().join("c1.log")).await?;
    let two = phase(&users, &[first.url(), second.url()]).await?;
    let again = phase(&users, &[first.url()]).await?;

    #[allow(clippy::print_stdout, reason = "the bench's report")]
    {
        println!(
            "transfers through the API, {CLIENTS} clients, {USERS} users, {}s per phase",
            PHASE.as_secs()
        );
        println!("  one instance:          {one:8.1} transfers/s");
        println!(
            "  two instances:         {two:8.1} transfers/s  ({:.2}x one)",
            two / one
        );
        println!(
            "  one instance again:    {again:8.1} transfers/s  ({:.2}x the first)",
            again / one
        );
    }
    drop((first, second));
    Ok(())
}

/// Runs the clients for one phase against `urls` (client i on `urls[i % len]`); returns
/// transfers answered per second.
async fn phase(users: &Arc<Vec<User>>, urls: &[String]) -> anyhow::Result<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut set = tokio::task::JoinSet::new();
    let run = format!("{:?}", Instant::now());
    for c in 0..CLIENTS {
        let (users, stop, done) = (users.clone(), stop.clone(), done.clone());
        let url = urls[c % urls.len()].clone();
        let run = run.clone();
        set.spawn(async move {
            let http = reqwest::Client::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let from = &users[c % USERS];
                let to = &users[(c + 1 + (n as usize % (USERS - 1))) % USERS];
                let key = format!("{run}-{c}-{n}");
                n += 1;
                let (_, answer) = send_until_final(
                    &http,
                    |_| Some(url.clone()),
                    &from.token,
                    &key,
                    &send_input(from, to, 1),
                    |_| {},
                )
                .await?;
                ensure!(answer == Answer::Paid, "{key}: refused");
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        });
    }
    // Warm up, then count.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (start, before) = (Instant::now(), done.load(Ordering::Relaxed));
    tokio::time::sleep(PHASE).await;
    let (elapsed, after) = (start.elapsed(), done.load(Ordering::Relaxed));
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = set.join_next().await {
        r.context("a client")??;
    }
    Ok((after - before) as f64 / elapsed.as_secs_f64())
}
