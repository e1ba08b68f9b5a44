//! Ledger benchmark, printed as ratios measured in one run on one PostgreSQL server:
//!
//! 1. internal transfers per second through [`Ledger::post`] with 1, 8 and 32 concurrent
//!    workers, against `pgbench -b tpcb-like` (scale 10) with the same client counts on a
//!    scratch database of the same server (target: at least 0.7x);
//! 2. the hot account: 16 payers into one account against 16 workers paying among many
//!    accounts (target: at least 0.5x);
//! 3. balance read latency with many accounts and entries (target: p99 under 2 ms).
//!
//! Short default run: `cargo bench -p coordinator --bench ledger`.
//! Full size from the issue: `cargo bench -p coordinator --bench ledger -- --read-accounts
//! 1000000 --read-entries 10000000`. `--help` lists every flag. `DATABASE_URL` names the
//! server (a superuser: the bench creates and drops its scratch databases).
#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use coordinator::db::ScratchDatabase;
use coordinator::ledger::{NewAccount, system};
use coordinator::{Ledger, LedgerAccountId, LedgerConfig, Msats, Posting};
use rand::{Rng, SeedableRng};

#[derive(Parser, Debug, Clone)]
#[command(about = "Ledger benchmark against pgbench on the same server")]
struct Args {
    /// PostgreSQL server (superuser); scratch databases are created on it.
    #[arg(long, env = "DATABASE_URL", default_value = coordinator::db::DEFAULT_DATABASE_URL)]
    database_url: String,
    /// Seconds measured per point (after one second of warm-up).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent workers (and pgbench clients) to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    clients: Vec<usize>,
    /// Accounts the transfers move money among.
    #[arg(long, default_value_t = 10_000)]
    accounts: usize,
    /// Skip the pgbench comparison (no pgbench installed).
    #[arg(long)]
    skip_pgbench: bool,
    /// pgbench scale factor.
    #[arg(long, default_value_t = 10)]
    pgbench_scale: u32,
    /// Payers in the hot-account case.
    #[arg(long, default_value_t = 16)]
    hot_payers: usize,
    /// Accounts loaded for the balance-read case (the issue asks 1000000).
    #[arg(long, default_value_t = 100_000)]
    read_accounts: u64,
    /// Entries loaded for the balance-read case (the issue asks 10000000).
    #[arg(long, default_value_t = 1_000_000)]
    read_entries: u64,
    /// Balance reads measured.
    #[arg(long, default_value_t = 20_000)]
    reads: usize,
    /// Writer yields to gather concurrent postings (see `LedgerConfig::gather_yields`).
    #[arg(long, default_value_t = 2)]
    gather_yields: usize,
    /// Concurrent workers for the bank-level payment case (0 to skip).
    #[arg(long, default_value_t = 16)]
    payment_workers: usize,
    /// Skip the balance-read case.
    #[arg(long)]
    skip_reads: bool,
    /// Also run `verify` over the loaded read data and time it.
    #[arg(long)]
    verify: bool,
    // `cargo bench` passes `--bench`; accept and ignore it.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Chooses the payer and payee of a worker's next transfer.
type Pick =
    Arc<dyn Fn(&mut rand::rngs::StdRng, usize) -> (LedgerAccountId, LedgerAccountId) + Send + Sync>;

struct Run {
    per_second: f64,
    mean_batch: f64,
    /// Batches rolled back because another writer had moved one of their balances.
    conflicts: u64,
    p50_ms: f64,
    p99_ms: f64,
    refused: usize,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1_000.0
}

/// `workers` tasks post transfers for the warm-up and then `seconds`; `pick` chooses the
/// payer and the payee of each transfer.
async fn transfers(
    ledgers: &[Ledger],
    workers: usize,
    seconds: u64,
    tag: &str,
    pick: Pick,
) -> anyhow::Result<Run> {
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let mut set = tokio::task::JoinSet::new();
    for w in 0..workers {
        // Worker w posts through writer w mod n, as clients spread over instances would.
        let ledger = ledgers[w % ledgers.len()].clone();
        let stop = stop.clone();
        let measuring = measuring.clone();
        let pick = pick.clone();
        let tag = tag.to_owned();
        set.spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(w as u64);
            let mut latencies_us = Vec::new();
            let mut refused = 0usize;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (from, to) = pick(&mut rng, w);
                let amount = Msats::new(rng.gen_range(1..1_000)).expect("small amount");
                let p = Posting::transfer(
                    system::MAIN_JOURNAL,
                    format!("{tag}-{w}-{n}"),
                    from,
                    to,
                    amount,
                    "bench",
                )
                .expect("valid transfer");
                n += 1;
                let started = Instant::now();
                let result = ledger.post(p).await;
                let took = started.elapsed().as_micros() as u64;
                match result {
                    Ok(_) => {
                        if measuring.load(Ordering::Relaxed) {
                            latencies_us.push(took);
                        }
                    }
                    Err(coordinator::LedgerError::InsufficientBalance { .. }) => refused += 1,
                    Err(e) => return Err(anyhow::anyhow!(e)),
                }
            }
            Ok::<_, anyhow::Error>((latencies_us, refused))
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let counts = || {
        ledgers.iter().fold((0, 0, 0), |(b, p, c), l| {
            let s = l.stats();
            (b + s.batches(), p + s.postings(), c + s.conflicts())
        })
    };
    let (b0, p0, c0) = counts();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let (b1, p1, c1) = counts();
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut refused = 0;
    while let Some(r) = set.join_next().await {
        let (lat, r) = r??;
        all.extend(lat);
        refused += r;
    }
    all.sort_unstable();
    Ok(Run {
        per_second: all.len() as f64 / elapsed,
        mean_batch: (p1 - p0) as f64 / (b1 - b0).max(1) as f64,
        conflicts: c1 - c0,
        p50_ms: percentile(&all, 0.50),
        p99_ms: percentile(&all, 0.99),
        refused,
    })
}

fn pgbench(url: &str, args: &[String]) -> anyhow::Result<String> {
    let out = Command::new("pgbench")
        .args(args)
        .arg(url)
        .output()
        .context("running pgbench (install postgresql-client, or pass --skip-pgbench)")?;
    if !out.status.success() {
        bail!(
            "pgbench {:?} failed: {}",
            args,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn pgbench_tps(url: &str, clients: usize, seconds: u64) -> anyhow::Result<f64> {
    let threads = clients.min(4);
    let out = pgbench(
        url,
        &[
            "-b".into(),
            "tpcb-like".into(),
            "-n".into(),
            "-c".into(),
            clients.to_string(),
            "-j".into(),
            threads.to_string(),
            "-T".into(),
            seconds.to_string(),
        ],
    )?;
    out.lines()
        .find_map(|l| {
            let rest = l.strip_prefix("tps = ")?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .with_context(|| format!("no tps line in pgbench output: {out}"))
}

/// A libpq connection string for pgbench naming the scratch database.
fn conninfo(db: &ScratchDatabase) -> String {
    let o = db.options();
    format!(
        "host={} port={} user={} dbname={}",
        o.get_host(),
        o.get_port(),
        o.get_username(),
        db.name()
    )
}

async fn load_read_data(pool: &sqlx::PgPool, accounts: u64, entries: u64) -> anyhow::Result<()> {
    let txs = entries / 2;
    let mut conn = pool.acquire().await?;
    // Bulk load only: skip per-row foreign-key triggers; `verify` checks the result.
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "CREATE TEMP TABLE bulk_accounts AS \
         SELECT i, gen_random_uuid() AS id FROM generate_series(1, $1::bigint) AS i",
    )
    .bind(accounts as i64)
    .execute(&mut *conn)
    .await?;
    sqlx::query("CREATE INDEX ON bulk_accounts (i)")
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO ledger_accounts (id, name, kind, normal_balance, currency, allow_negative) \
         SELECT id, 'bulk ' || i, 'user', 'credit', 'BTC', false FROM bulk_accounts",
    )
    .execute(&mut *conn)
    .await?;
    // Each transaction is a deposit: debit the on-chain omnibus, credit one account.
    sqlx::query(
        "CREATE TEMP TABLE bulk_tx AS \
         SELECT t, gen_random_uuid() AS id, ((t - 1) % $2::bigint) + 1 AS acct, \
                1000 + (t % 997) AS amount \
         FROM generate_series(1, $1::bigint) AS t",
    )
    .bind(txs as i64)
    .bind(accounts as i64)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO ledger_transactions \
           (id, journal_id, external_id, fingerprint, description, created_at) \
         SELECT id, $1, 'bulk-' || t, decode(md5(t::text) || md5(t::text), 'hex'), 'bulk', now() \
         FROM bulk_tx",
    )
    .bind(system::MAIN_JOURNAL.as_uuid())
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO ledger_entries \
           (transaction_id, seq, account_id, direction, layer, currency, amount) \
         SELECT x.id, 0, $1, 'debit', 'settled', 'BTC', x.amount FROM bulk_tx x \
         UNION ALL \
         SELECT x.id, 1, a.id, 'credit', 'settled', 'BTC', x.amount \
         FROM bulk_tx x JOIN bulk_accounts a ON a.i = x.acct",
    )
    .bind(system::BANK_ONCHAIN.as_uuid())
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO ledger_balances (account_id, currency, allow_negative, settled) \
         SELECT a.id, 'BTC', false, coalesce(s.total, 0) FROM bulk_accounts a \
         LEFT JOIN (SELECT acct, sum(amount) AS total FROM bulk_tx GROUP BY acct) s \
           ON s.acct = a.i",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE ledger_balances SET settled = settled + (SELECT coalesce(sum(amount), 0) \
         FROM bulk_tx) WHERE account_id = $1",
    )
    .bind(system::BANK_ONCHAIN.as_uuid())
    .execute(&mut *conn)
    .await?;
    sqlx::query("SET session_replication_role = origin")
        .execute(&mut *conn)
        .await?;
    // Settle the bulk load before measuring: statistics, visibility, and the dirty pages
    // written out, so the checkpointer does not run during the reads.
    sqlx::query("VACUUM ANALYZE").execute(&mut *conn).await?;
    sqlx::query("CHECKPOINT").execute(&mut *conn).await?;
    Ok(())
}

async fn balance_reads(
    ledger: &Ledger,
    readers: usize,
    reads: usize,
) -> anyhow::Result<(f64, f64, f64, f64)> {
    let ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM ledger_accounts TABLESAMPLE SYSTEM (10) LIMIT $1")
            .bind(reads.min(100_000) as i64)
            .fetch_all(ledger.pool())
            .await?;
    if ids.is_empty() {
        bail!("no accounts to read");
    }
    let ids = Arc::new(ids);
    let mut set = tokio::task::JoinSet::new();
    let started = Instant::now();
    for r in 0..readers {
        let ledger = ledger.clone();
        let ids = ids.clone();
        set.spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(1_000 + r as u64);
            let mut lat = Vec::with_capacity(reads / readers);
            for _ in 0..reads / readers {
                let id = LedgerAccountId::from_uuid(ids[rng.gen_range(0..ids.len())]);
                let t = Instant::now();
                ledger.balance(id).await?;
                lat.push(t.elapsed().as_micros() as u64);
            }
            Ok::<_, anyhow::Error>(lat)
        });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r??);
    }
    let per_second = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort_unstable();
    Ok((
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or(0) as f64 / 1_000.0,
        per_second,
    ))
}

/// Internal payments through `Bank::send_internal` among freshly registered customers.
async fn payments(ledger: &Ledger, args: &Args) -> anyhow::Result<(f64, f64)> {
    use coordinator::bank::{
        Bank, BankConfig, LevelLimits, LimitsConfig, OutboxNotifier, PasswordCost, Recipient,
        SendRequest,
    };
    use coordinator::{Sats, WalletId};
    let unlimited = LevelLimits {
        internal_send: Sats::new(coordinator::amount::MAX_MONEY_SATS)?,
        withdrawal: Sats::ZERO,
    };
    let bank = Bank::new(
        ledger.clone(),
        Arc::new(OutboxNotifier::new(ledger.pool().clone())),
        BankConfig {
            limits: LimitsConfig {
                level0: unlimited,
                level1: unlimited,
                level2: unlimited,
                level3: unlimited,
            },
            password_cost: PasswordCost::insecure_for_tests(),
            ..BankConfig::default()
        },
    );
    let mut customers = Vec::new();
    for i in 0..100 {
        let identity: coordinator::bank::Identity = format!("bench{i}@example.com").parse()?;
        bank.register(&identity).await?;
        let body: String = sqlx::query_scalar(
            "SELECT body FROM notification_outbox WHERE recipient = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(identity.to_string())
        .fetch_one(ledger.pool())
        .await?;
        let code = body
            .split_whitespace()
            .map(|w| w.trim_end_matches('.'))
            .find(|w| w.len() == 6 && w.chars().all(|c| c.is_ascii_digit()))
            .context("no code in the message")?
            .to_owned();
        let (session, account) = bank.confirm_code(&identity, &code).await?;
        let principal = bank.authenticate(session.token.expose()).await?;
        let wallet = bank.account(account).await?.default_wallet_id;
        ledger
            .post(Posting::transfer(
                system::MAIN_JOURNAL,
                format!("pay-fund-{wallet}"),
                system::BANK_ONCHAIN,
                Bank::ledger_account(wallet),
                Msats::new(100_000_000_000)?,
                "bench funding",
            )?)
            .await?;
        customers.push((principal, wallet));
    }
    let customers: Arc<Vec<(coordinator::bank::Principal, WalletId)>> = Arc::new(customers);
    let stop = Arc::new(AtomicBool::new(false));
    let mut set = tokio::task::JoinSet::new();
    let started = Instant::now();
    for w in 0..args.payment_workers {
        let bank = bank.clone();
        let customers = customers.clone();
        let stop = stop.clone();
        set.spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(500 + w as u64);
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (me, from) = &customers[rng.gen_range(0..customers.len())];
                let (_, to) = &customers[rng.gen_range(0..customers.len())];
                if from == to {
                    continue;
                }
                let t = Instant::now();
                bank.send_internal(
                    me,
                    &SendRequest {
                        wallet_id: *from,
                        recipient: Recipient::Wallet(*to),
                        amount: Sats::new(1)?,
                        memo: None,
                        idempotency_key: None,
                    },
                )
                .await?;
                lat.push(t.elapsed().as_micros() as u64);
            }
            Ok::<_, anyhow::Error>(lat)
        });
    }
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r??);
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort_unstable();
    Ok((rate, percentile(&all, 0.99)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server: String = {
        let pool = coordinator::db::connect(&args.database_url, 1).await?;
        sqlx::query_scalar("SHOW server_version")
            .fetch_one(&pool)
            .await?
    };
    println!("# ledger bench");
    println!(
        "PostgreSQL {server}; {} s per point after 1 s warm-up; {} accounts; clients {:?}",
        args.seconds, args.accounts, args.clients
    );

    // The ledger's scratch database, with funded accounts.
    let (db, pool) = ScratchDatabase::migrated("coordinator_bench", 40).await?;
    let ledger = Ledger::start(
        pool,
        LedgerConfig {
            gather_yields: args.gather_yields,
            ..LedgerConfig::default()
        },
    )
    .await?;
    let mut accounts = Vec::with_capacity(args.accounts);
    for i in 0..args.accounts {
        let a = ledger
            .create_account(NewAccount::user_wallet(format!("bench {i}")))
            .await?;
        accounts.push(a.id);
    }
    {
        let mut set = tokio::task::JoinSet::new();
        for (i, a) in accounts.iter().copied().enumerate() {
            let ledger = ledger.clone();
            set.spawn(async move {
                let p = Posting::transfer(
                    system::MAIN_JOURNAL,
                    format!("fund-{i}"),
                    system::BANK_ONCHAIN,
                    a,
                    Msats::new(1_000_000_000_000).expect("in range"),
                    "bench funding",
                )
                .expect("valid");
                ledger.post(p).await
            });
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
    }
    let accounts = Arc::new(accounts);

    // pgbench on its own scratch database of the same server.
    let pg_db = if args.skip_pgbench {
        None
    } else {
        let d = ScratchDatabase::create(&args.database_url, "coordinator_pgbench").await?;
        let url = conninfo(&d);
        let t = Instant::now();
        pgbench(
            &url,
            &[
                "-i".into(),
                "-q".into(),
                "-s".into(),
                args.pgbench_scale.to_string(),
            ],
        )?;
        println!(
            "pgbench initialised at scale {} in {:.1} s",
            args.pgbench_scale,
            t.elapsed().as_secs_f64()
        );
        Some((d, url))
    };

    println!();
    println!("## internal transfers (target: ledger/pgbench >= 0.70)");
    println!(
        "{:>7} {:>12} {:>16} {:>7} {:>10} {:>10} {:>10}",
        "clients", "pgbench tps", "ledger xfers/s", "ratio", "p50 ms", "p99 ms", "mean batch"
    );
    let random_pair = {
        let accounts = accounts.clone();
        Arc::new(move |rng: &mut rand::rngs::StdRng, _w: usize| {
            let from = accounts[rng.gen_range(0..accounts.len())];
            let mut to = accounts[rng.gen_range(0..accounts.len())];
            while to == from {
                to = accounts[rng.gen_range(0..accounts.len())];
            }
            (from, to)
        })
    };
    for &c in &args.clients {
        let pg = match &pg_db {
            Some((_, url)) => Some(pgbench_tps(url, c, args.seconds)?),
            None => None,
        };
        let run = transfers(
            std::slice::from_ref(&ledger),
            c,
            args.seconds,
            &format!("x{c}"),
            random_pair.clone(),
        )
        .await?;
        let (pg_s, ratio) = match pg {
            Some(p) => (format!("{p:.0}"), format!("{:.2}", run.per_second / p)),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{:>7} {:>12} {:>16.0} {:>7} {:>10.2} {:>10.2} {:>10.1}",
            c, pg_s, run.per_second, ratio, run.p50_ms, run.p99_ms, run.mean_batch
        );
        if run.refused > 0 {
            println!(
                "        ({} transfers refused for lack of funds)",
                run.refused
            );
        }
    }

    println!();
    println!(
        "## hot account: {} payers into one account (target: >= 0.50 x uncontended)",
        args.hot_payers
    );
    let uncontended = transfers(
        std::slice::from_ref(&ledger),
        args.hot_payers,
        args.seconds,
        "u",
        random_pair.clone(),
    )
    .await?;
    let merchant = ledger
        .create_account(NewAccount::user_wallet("merchant"))
        .await?
        .id;
    let hot = {
        let accounts = accounts.clone();
        Arc::new(move |_rng: &mut rand::rngs::StdRng, w: usize| {
            (accounts[w % accounts.len()], merchant)
        })
    };
    let hot_run = transfers(
        std::slice::from_ref(&ledger),
        args.hot_payers,
        args.seconds,
        "h",
        hot.clone(),
    )
    .await?;
    println!(
        "uncontended {:.0}/s (p99 {:.2} ms), hot {:.0}/s (p99 {:.2} ms): ratio {:.2}",
        uncontended.per_second,
        uncontended.p99_ms,
        hot_run.per_second,
        hot_run.p99_ms,
        hot_run.per_second / uncontended.per_second
    );

    // A second coordinator instance: its own writer on the same database (ADR 0013).
    let second = Ledger::start(ledger.pool().clone(), LedgerConfig::default()).await?;
    let both = [ledger.clone(), second];
    println!();
    println!("## one writer against two (two coordinator instances on one database)");
    println!(
        "{:>18} {:>14} {:>14} {:>7} {:>10} {:>10}",
        "load", "one xfers/s", "two xfers/s", "ratio", "two p99 ms", "conflicts"
    );
    let mut cases: Vec<(String, usize, Pick)> = args
        .clients
        .iter()
        .filter(|&&c| c > 1)
        .map(|&c| (format!("{c} clients"), c, random_pair.clone() as Pick))
        .collect();
    cases.push((
        format!("hot, {} payers", args.hot_payers),
        args.hot_payers,
        hot,
    ));
    for (i, (label, workers, pick)) in cases.into_iter().enumerate() {
        let one = transfers(
            std::slice::from_ref(&ledger),
            workers,
            args.seconds,
            &format!("one{i}"),
            pick.clone(),
        )
        .await?;
        let two = transfers(&both, workers, args.seconds, &format!("two{i}"), pick).await?;
        println!(
            "{:>18} {:>14.0} {:>14.0} {:>7.2} {:>10.2} {:>10}",
            label,
            one.per_second,
            two.per_second,
            two.per_second / one.per_second,
            two.p99_ms,
            two.conflicts
        );
    }

    if args.payment_workers > 0 {
        let (rate, p99) = payments(&ledger, &args).await?;
        println!();
        println!(
            "## internal payments through the bank (send_internal: limits, status, payment rows)"
        );
        println!(
            "{} workers: {rate:.0} payments/s (p99 {p99:.2} ms), {:.2} x the ledger's \
             uncontended transfers with {} workers",
            args.payment_workers,
            rate / uncontended.per_second.max(1.0),
            args.hot_payers
        );
    }

    let t = Instant::now();
    let report = ledger.verify().await?;
    println!();
    println!(
        "verify after the transfer runs: {} transactions, {} entries, {} violations ({:.1} s)",
        report.transactions,
        report.entries,
        report.violations.len(),
        t.elapsed().as_secs_f64()
    );
    if !report.is_ok() {
        bail!("ledger invariants broken: {:?}", report.violations);
    }
    drop(ledger);
    drop(db);
    drop(pg_db);

    if !args.skip_reads {
        println!();
        println!(
            "## balance reads: {} accounts, {} entries (target: p99 < 2 ms)",
            args.read_accounts, args.read_entries
        );
        let (rdb, rpool) = ScratchDatabase::migrated("coordinator_bench_reads", 16).await?;
        let t = Instant::now();
        load_read_data(&rpool, args.read_accounts, args.read_entries).await?;
        println!("loaded in {:.1} s", t.elapsed().as_secs_f64());
        let ledger = Ledger::start(rpool, LedgerConfig::default()).await?;
        // Warm-up, not measured.
        balance_reads(&ledger, 1, args.reads.min(5_000)).await?;
        for readers in [1usize, 8] {
            let (p50, p99, max, rate) = balance_reads(&ledger, readers, args.reads).await?;
            println!(
                "{readers} reader(s): p50 {p50:.3} ms, p99 {p99:.3} ms, max {max:.2} ms, {rate:.0} reads/s"
            );
        }
        if args.verify {
            let t = Instant::now();
            let report = ledger.verify().await?;
            println!(
                "verify: {} accounts, {} entries, {} violations in {:.1} s",
                report.accounts,
                report.entries,
                report.violations.len(),
                t.elapsed().as_secs_f64()
            );
        }
        drop(ledger);
        drop(rdb);
    }
    Ok(())
}
