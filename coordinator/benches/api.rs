//! API benchmark, printed as ratios measured in one run on one PostgreSQL server:
//! internal transfers per second through the library (`Bank::send_internal`) and through
//! GraphQL (`intraLedgerPaymentSend` over HTTP/1.1 on 127.0.0.1, one connection per
//! client), both with the same number of concurrent clients (32 by default), in
//! alternating rounds so that load changes hit both sides alike.
//!
//! Targets (issue 4): GraphQL at least 0.5x the library rate, p99 under 50 ms.
//!
//! `cargo bench -p coordinator --bench api`; `DATABASE_URL` names the server (a superuser:
//! the bench creates and drops a scratch database).
#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use coordinator::api::ApiConfig;
use coordinator::bank::{
    Bank, BankConfig, Identity, NewPassword, OutboxNotifier, PasswordCost, Principal, Recipient,
    Scope, Secret, SendRequest,
};
use coordinator::ledger::system;
use coordinator::{Ledger, LedgerConfig, Posting, Sats, WalletId};
use rand::{Rng, SeedableRng};
use test_support::ScratchDatabase;

#[derive(Parser, Debug)]
#[command(about = "GraphQL transfers against library transfers on the same server")]
struct Args {
    /// Concurrent clients on each side.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Customers the transfers move money among.
    #[arg(long, default_value_t = 64)]
    customers: usize,
    /// Rounds per side; each round lasts `--round-seconds`.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Seconds per round.
    #[arg(long, default_value_t = 3)]
    round_seconds: u64,
    /// PostgreSQL connections in the pool both sides share.
    #[arg(long, default_value_t = 48)]
    pool: u32,
    // `cargo bench` passes `--bench`; accept and ignore it.
    #[arg(long, hide = true)]
    bench: bool,
}

struct Customer {
    principal: Principal,
    wallet: WalletId,
    api_key: String,
}

#[derive(Default)]
struct Side {
    transfers: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Side {
    fn rate(&self) -> f64 {
        self.transfers as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&mut self, p: f64) -> Duration {
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(i).copied().unwrap_or_default()
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (db, pool) = ScratchDatabase::migrated(
        "coordinator_bench_api",
        args.pool,
        &coordinator::db::MIGRATOR,
    )
    .await
    .context("PostgreSQL must be reachable at DATABASE_URL")?;
    let ledger = Ledger::start(pool.clone(), LedgerConfig::default()).await?;
    let config = BankConfig {
        // Setup speed only: no customer logs in with a password during the measurement.
        password_cost: PasswordCost::insecure_for_tests(),
        ..BankConfig::default()
    };
    let bank = Bank::new(ledger.clone(), Arc::new(OutboxNotifier::new(pool)), config);
    let customers = Arc::new(setup(&bank, &ledger, args.customers).await?);

    let router = coordinator::api::router(bank.clone(), ApiConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    let url = format!("http://{address}/graphql");

    let mut library = Side::default();
    let mut graphql = Side::default();
    let round = Duration::from_secs(args.round_seconds);
    // Warm up both paths.
    library_round(&bank, &customers, args.clients, Duration::from_secs(1)).await?;
    graphql_round(&url, &customers, args.clients, Duration::from_secs(1)).await?;
    for _ in 0..args.rounds {
        library.add(library_round(&bank, &customers, args.clients, round).await?);
        graphql.add(graphql_round(&url, &customers, args.clients, round).await?);
    }
    server.abort();

    let (lib_rate, gql_rate) = (library.rate(), graphql.rate());
    let (lib_p99, gql_p50, gql_p99) = (
        library.percentile(0.99),
        graphql.percentile(0.50),
        graphql.percentile(0.99),
    );
    println!(
        "Internal transfers, {} clients, {} customers, {} rounds of {} s per side",
        args.clients, args.customers, args.rounds, args.round_seconds
    );
    println!(
        "  library  Bank::send_internal    {lib_rate:>7.0} tx/s   p99 {:>6.1} ms",
        ms(lib_p99)
    );
    println!(
        "  GraphQL  intraLedgerPaymentSend {gql_rate:>7.0} tx/s   p50 {:>6.1} ms   p99 {:>6.1} ms",
        ms(gql_p50),
        ms(gql_p99)
    );
    println!(
        "  GraphQL / library: {:.2}x (target >= 0.50x: {}); GraphQL p99 < 50 ms: {}",
        gql_rate / lib_rate,
        if gql_rate / lib_rate >= 0.5 {
            "met"
        } else {
            "NOT met"
        },
        if gql_p99 < Duration::from_millis(50) {
            "met"
        } else {
            "NOT met"
        }
    );
    drop(db);
    Ok(())
}

impl Side {
    fn add(&mut self, other: Side) {
        self.transfers += other.transfers;
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Registers customers, funds each with a deposit and gives each a write API key.
async fn setup(bank: &Bank, ledger: &Ledger, count: usize) -> anyhow::Result<Vec<Customer>> {
    let mut customers = Vec::with_capacity(count);
    for n in 0..count {
        let identity: Identity = format!("bench-{n}@example.com").parse()?;
        let password = NewPassword::new(Secret::new("a long bench password"))?;
        bank.register(&identity).await?;
        let code: String = sqlx::query_scalar(
            "SELECT body FROM notification_outbox WHERE recipient = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(identity.to_string())
        .fetch_one(ledger.pool())
        .await?;
        let code = code
            .split(|c: char| !c.is_ascii_digit())
            .find(|w| w.len() == 6)
            .context("a six-digit code in the message")?
            .to_owned();
        let (session, _) = bank
            .confirm_code_with_password(&identity, &code, Some(&password))
            .await?;
        let principal = bank.authenticate(session.token.expose()).await?;
        let wallet = bank.me(&principal).await?.default_wallet_id;
        let deposit = Posting::transfer(
            system::MAIN_JOURNAL,
            format!("bench-deposit-{n}"),
            system::BANK_ONCHAIN,
            Bank::ledger_account(wallet),
            Sats::new(1_000_000)?.to_msats(),
            "deposit",
        )?;
        ledger.post(deposit).await?;
        let (_, key) = bank
            .create_api_key(&principal, "bench", &[Scope::Read, Scope::Write], None)
            .await?;
        customers.push(Customer {
            principal,
            wallet,
            api_key: key.expose().to_owned(),
        });
    }
    Ok(customers)
}

fn pick(rng: &mut rand::rngs::StdRng, count: usize) -> (usize, usize) {
    let from = rng.gen_range(0..count);
    let mut to = rng.gen_range(0..count - 1);
    if to >= from {
        to += 1;
    }
    (from, to)
}

async fn library_round(
    bank: &Bank,
    customers: &Arc<Vec<Customer>>,
    clients: usize,
    length: Duration,
) -> anyhow::Result<Side> {
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for client in 0..clients {
        let (bank, customers) = (bank.clone(), Arc::clone(customers));
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(client as u64);
            let mut side = Side::default();
            while start.elapsed() < length {
                let (from, to) = pick(&mut rng, customers.len());
                let request = SendRequest {
                    wallet_id: customers[from].wallet,
                    recipient: Recipient::Wallet(customers[to].wallet),
                    amount: Sats::new(1)?,
                    memo: None,
                    idempotency_key: Some(uuid::Uuid::now_v7().to_string()),
                };
                let sent = Instant::now();
                bank.send_internal(&customers[from].principal, &request)
                    .await?;
                side.latencies.push(sent.elapsed());
                side.transfers += 1;
            }
            anyhow::Ok(side)
        }));
    }
    collect(tasks, start).await
}

async fn graphql_round(
    url: &str,
    customers: &Arc<Vec<Customer>>,
    clients: usize,
    length: Duration,
) -> anyhow::Result<Side> {
    const MUTATION: &str = "mutation send($input: IntraLedgerPaymentSendInput!) { \
        intraLedgerPaymentSend(input: $input) { status errors { message code } } }";
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for client in 0..clients {
        let (url, customers) = (url.to_owned(), Arc::clone(customers));
        tasks.push(tokio::spawn(async move {
            // One connection per client, kept alive.
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()?;
            let mut rng = rand::rngs::StdRng::seed_from_u64(1_000 + client as u64);
            let mut side = Side::default();
            while start.elapsed() < length {
                let (from, to) = pick(&mut rng, customers.len());
                let body = serde_json::json!({
                    "query": MUTATION,
                    "variables": { "input": {
                        "walletId": customers[from].wallet.to_string(),
                        "recipientWalletId": customers[to].wallet.to_string(),
                        "amount": 1,
                    }},
                });
                let sent = Instant::now();
                let response: serde_json::Value = http
                    .post(&url)
                    .header("X-API-KEY", &customers[from].api_key)
                    .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
                    .json(&body)
                    .send()
                    .await?
                    .json()
                    .await?;
                side.latencies.push(sent.elapsed());
                let status = &response["data"]["intraLedgerPaymentSend"]["status"];
                if status != "SUCCESS" {
                    bail!("payment not made: {response}");
                }
                side.transfers += 1;
            }
            anyhow::Ok(side)
        }));
    }
    collect(tasks, start).await
}

async fn collect(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Side>>>,
    start: Instant,
) -> anyhow::Result<Side> {
    let mut total = Side::default();
    for task in tasks {
        let side = task.await??;
        total.transfers += side.transfers;
        total.latencies.extend(side.latencies);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}
