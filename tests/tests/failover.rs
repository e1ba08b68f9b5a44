//! Two `coordinator serve` processes on one database under a mixed transfer load, one of
//! them killed with SIGKILL at 20 random moments and started again each time, as a
//! replica of a Deployment would be. Clients retry a request whose instance died against
//! the other one with the same idempotency key, as a load balancer lets them.
//!
//! Checked afterwards against PostgreSQL: every transfer answered as paid is in the ledger
//! exactly once, no transfer answered as refused moved money, no answer contradicts the
//! database, the survivor answered within 5 s of each kill, money is conserved and
//! `coordinator ledger verify` is clean.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use bitcoin::secp256k1::rand::rngs::StdRng;
use bitcoin::secp256k1::rand::{Rng, SeedableRng};
use sqlx::PgPool;
use system_tests::bank_process::{Coordinator, ledger_verify, sibling_binary};
use system_tests::transfer_load::{
    Answer, Retry, User, send_input, send_until_final, sign_up, write_high_limits,
};
use test_support::ScratchDatabase;
use test_support::db::database_url_from_env;

const USERS: usize = 8;
const CLIENTS: usize = 8;
const KILLS: usize = 20;
/// Every user but the last starts with this much; the last with little, so that some of
/// its sends are refused.
const RICH_SAT: u64 = 1_000_000;
const POOR_SAT: u64 = 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_under_load_lose_nothing_when_one_is_killed_twenty_times() {
    let dir = tempfile::Builder::new()
        .prefix("failover")
        .tempdir()
        .expect("a temporary directory");
    if let Err(e) = run(dir.path()).await {
        let kept = dir.keep();
        panic!("{e:#}\n(coordinator logs kept in {})", kept.display());
    }
}

/// The two instances' addresses (None while one is down).
struct Cluster {
    urls: [std::sync::Mutex<Option<String>>; 2],
    stop: AtomicBool,
    started: Instant,
    /// Per instance, the last time (ms since `started`) it answered a send.
    answered: [std::sync::atomic::AtomicU64; 2],
    /// Requests whose connection broke (their instance was killed under them).
    interrupted: std::sync::atomic::AtomicUsize,
}

#[derive(Debug)]
struct Sent {
    key: String,
    sender: usize,
    answer: Answer,
}

async fn run(dir: &Path) -> anyhow::Result<()> {
    let binary = sibling_binary("coordinator")?;
    let admin_url = database_url_from_env();
    let db = ScratchDatabase::create(&admin_url, "failover")
        .await
        .context("creating a scratch database (is PostgreSQL at DATABASE_URL?)")?;
    let db_url = db.url();
    let limits = dir.join("limits.toml");
    write_high_limits(&limits)?;
    let logs = [dir.join("coordinator-0.log"), dir.join("coordinator-1.log")];
    let start = |i: usize| {
        let (binary, db_url, limits, log) = (&binary, &db_url, &limits, &logs[i]);
        async move {
            let args = [OsStr::new("--limits"), limits.as_os_str()];
            Coordinator::serve_with(binary, db_url, &args, log).await
        }
    };
    let mut instances = [Some(start(0).await?), Some(start(1).await?)];
    let pool = db.pool(4).await?;

    let mut amounts = vec![RICH_SAT; USERS - 1];
    amounts.push(POOR_SAT);
    let users = sign_up(&pool, instances[0].as_ref().context("up")?, &amounts).await?;
    let cluster = Arc::new(Cluster {
        urls: [
            std::sync::Mutex::new(instances[0].as_ref().map(Coordinator::url)),
            std::sync::Mutex::new(instances[1].as_ref().map(Coordinator::url)),
        ],
        stop: AtomicBool::new(false),
        started: Instant::now(),
        answered: Default::default(),
        interrupted: Default::default(),
    });
    let users = Arc::new(users);
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        clients.spawn(client(c, users.clone(), cluster.clone()));
    }

    let mut rng = StdRng::from_entropy();
    let mut takeovers = Vec::new();
    for k in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(150..900))).await;
        let victim = rng.gen_range(0..2usize);
        let survivor = 1 - victim;
        set_url(&cluster, victim, None)?;
        instances[victim]
            .take()
            .context("the victim runs")?
            .crash()?;
        let killed_at = cluster.started.elapsed();
        // The survivor carries the load: it answers a send after the kill.
        let deadline = Instant::now() + Duration::from_secs(5);
        let took = loop {
            let last = Duration::from_millis(cluster.answered[survivor].load(Ordering::Relaxed));
            if last > killed_at {
                break last - killed_at;
            }
            ensure!(
                Instant::now() < deadline,
                "kill {k}: instance {survivor} answered nothing within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        takeovers.push(took);
        instances[victim] = Some(
            start(victim)
                .await
                .with_context(|| format!("restart {k}"))?,
        );
        set_url(
            &cluster,
            victim,
            instances[victim].as_ref().map(Coordinator::url),
        )?;
    }
    cluster.stop.store(true, Ordering::Relaxed);
    let mut sent = Vec::new();
    while let Some(r) = clients.join_next().await {
        sent.extend(r.context("a client task")??);
    }
    check(&pool, &users, &sent).await?;
    ledger_verify(&binary, &db_url)?;
    let interrupted = cluster.interrupted.load(Ordering::Relaxed);
    ensure!(interrupted > 0, "no kill caught a request in flight");
    let worst = takeovers.iter().max().copied().unwrap_or_default();
    let paid = sent.iter().filter(|s| s.answer == Answer::Paid).count();
    eprintln!(
        "{} sends answered ({paid} paid, {} refused) across {KILLS} kills, {interrupted} \
         requests cut by a kill and retried; the survivor's first answer after a kill came \
         at most {worst:?} later",
        sent.len(),
        sent.len() - paid
    );
    drop(instances);
    Ok(())
}

fn set_url(cluster: &Cluster, i: usize, url: Option<String>) -> anyhow::Result<()> {
    *cluster.urls[i]
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))? = url;
    Ok(())
}

/// Sends transfers until told to stop; every tenth is sent again with its key.
async fn client(
    c: usize,
    users: Arc<Vec<User>>,
    cluster: Arc<Cluster>,
) -> anyhow::Result<Vec<Sent>> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut rng = StdRng::from_entropy();
    let mut sent = Vec::new();
    let mut n = 0usize;
    while !cluster.stop.load(Ordering::Relaxed) {
        let sender = rng.gen_range(0..USERS);
        let recipient = (sender + rng.gen_range(1..USERS)) % USERS;
        let amount: u64 = if sender == USERS - 1 {
            rng.gen_range(200..1_500)
        } else {
            rng.gen_range(1..=300)
        };
        let key = format!("c{c}-{n}");
        n += 1;
        let input = send_input(&users[sender], &users[recipient], amount);
        let answer = send(&http, &cluster, c + n, &users[sender].token, &key, &input).await?;
        if n.is_multiple_of(10) {
            // The same request again: the same answer, nothing moves again.
            let again = send(
                &http,
                &cluster,
                c + n + 1,
                &users[sender].token,
                &key,
                &input,
            )
            .await?;
            ensure!(
                again == answer,
                "{key}: answered {answer:?}, then {again:?}"
            );
        }
        sent.push(Sent {
            key,
            sender,
            answer,
        });
    }
    Ok(sent)
}

/// Sends until an instance gives a final answer, alternating between the instances that
/// are up, and notes which instance answered when.
async fn send(
    http: &reqwest::Client,
    cluster: &Cluster,
    start: usize,
    token: &str,
    key: &str,
    input: &serde_json::Value,
) -> anyhow::Result<Answer> {
    let url = |attempt: usize| {
        cluster.urls[(start + attempt) % 2]
            .lock()
            .ok()
            .and_then(|u| u.clone())
    };
    let (attempt, answer) = send_until_final(http, url, token, key, input, |why| {
        if matches!(why, Retry::Interrupted) {
            cluster.interrupted.fetch_add(1, Ordering::Relaxed);
        }
    })
    .await?;
    let now = u64::try_from(cluster.started.elapsed().as_millis())?;
    cluster.answered[(start + attempt) % 2].fetch_max(now, Ordering::Relaxed);
    Ok(answer)
}

/// Compares every answer with what PostgreSQL holds.
async fn check(pool: &PgPool, users: &[User], sent: &[Sent]) -> anyhow::Result<()> {
    // Payments a crash left PENDING are finished by a live instance's resumer.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pending: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM intraledger_payments WHERE status = 'PENDING'",
        )
        .fetch_one(pool)
        .await?;
        if pending == 0 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "{pending} payments still PENDING after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Each payment row with its key, how many ledger postings carry its id, and whether
    // the id was voided (a refusal made final).
    let rows: Vec<(String, String, i64, bool)> = sqlx::query_as(
        "SELECT p.idempotency_key, p.status, \
                (SELECT count(*) FROM ledger_transactions t \
                 WHERE t.external_id = 'intraledger:' || p.id::text AND NOT t.voided), \
                EXISTS (SELECT 1 FROM ledger_transactions t \
                 WHERE t.external_id = 'intraledger:' || p.id::text AND t.voided) \
         FROM intraledger_payments p WHERE p.idempotency_key IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    let stored: HashMap<String, (String, i64, bool)> = rows
        .into_iter()
        .map(|(k, s, n, v)| (k, (s, n, v)))
        .collect();
    let mut refused = 0;
    for s in sent {
        let Some((status, posted, voided)) = stored.get(&s.key) else {
            bail!("{}: answered {:?} but no payment row", s.key, s.answer);
        };
        match s.answer {
            Answer::Paid => ensure!(
                status == "SUCCESS" && *posted == 1,
                "{} (user {}): answered paid, stored {status} with {posted} postings",
                s.key,
                s.sender
            ),
            Answer::Refused => {
                refused += 1;
                ensure!(
                    status == "FAILURE" && *posted == 0 && *voided,
                    "{}: answered refused, stored {status} with {posted} postings \
                     (voided: {voided})",
                    s.key
                );
            }
        }
    }
    ensure!(refused > 0, "the poor user's oversized sends were refused");
    // Nothing was created or lost: the users hold what they were given.
    let wallets: Vec<_> = users
        .iter()
        .map(|u| coordinator::bank::Bank::ledger_account(u.wallet).as_uuid())
        .collect();
    let total: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(settled + pending), 0)::bigint FROM ledger_balances \
         WHERE account_id = ANY($1)",
    )
    .bind(&wallets)
    .fetch_one(pool)
    .await?;
    let given = ((USERS as u64 - 1) * RICH_SAT + POOR_SAT) * 1_000;
    ensure!(
        u64::try_from(total)? == given,
        "users hold {total} msat, were given {given}"
    );
    Ok(())
}
