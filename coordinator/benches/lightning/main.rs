//! Lightning benchmark, printed as rates and as ratios to the intraledger transfer rate
//! (`Bank::send_internal`, same number of clients) measured in the same run, on one
//! PostgreSQL server and one regtest chain stand-in:
//!
//! 1. invoices created per second (`ln_invoice_create`: each one calls the node);
//! 2. payments per second between users of two banks on different nodes: bank A's users
//!    pay invoices of bank B's users over a channel from A's node to B's;
//! 3. payments per second inside bank A through the intraledger shortcut (an invoice of
//!    the bank's own node, settled in the ledger; the node is only told to cancel it);
//! 4. p50 and p99 of `lnInvoicePaymentSend` through GraphQL over HTTP (the cross-node
//!    payment of 2), beside `intraLedgerPaymentSend` through the same server.
//!
//! Bank A's node is the embedded one (LDK Node in this process; `--node-a lnd` puts an
//! LND stand-in behind the LND adapter there instead); bank B's is an LND stand-in (LND's
//! gRPC API over a real LDK Node). Each bank has its own scratch database and node, with
//! the production Lightning settings. The invoices paid in 2 to 4 are created ahead of each timed round (not
//! timed); a round of payments ends when every client has paid its share. Rounds
//! alternate with intraledger rounds so that load changes hit both sides alike; bank B's
//! credits are awaited between rounds. After each phase every payment must have answered
//! SUCCESS, every wallet must hold exactly what the bench expects, the invoices must be in
//! the state the phase left them in, and both ledgers must pass their invariant check: a
//! broken payment fails the run instead of giving a rate.
//!
//! The stand-ins are found beside the bench executable, so build them for the bench
//! profile first:
//! `cargo build --release -p chain-standin -p lnd-standin-server && cargo bench -p
//! coordinator --bench lightning` (or `--profile dev` for both); `DATABASE_URL` names the server (a superuser: the bench creates
//! and drops two scratch databases).
#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

#[path = "../../tests/common/mod.rs"]
mod common;
#[allow(
    clippy::unwrap_used,
    reason = "helpers shared with the tests: a panic is the failure report"
)]
#[path = "../../tests/lightning_common/mod.rs"]
mod lightning_common;
mod rounds;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::Parser;
use coordinator::bank::lightning::{LightningConfig, LightningRail, LightningTasks};
use coordinator::bank::{
    Bank, BankConfig, LevelLimits, LimitsConfig, OutboxNotifier, PasswordCost,
};
use coordinator::lightning::{InvoiceState, LightningNode, PaymentHash};
use coordinator::{Ledger, LedgerConfig, Msats, Sats};
use lightning_common::{REGTEST, adapter, balance, embedded, eventually, lnd, open_channel};
use rounds::{Gql, Tally};
use test_support::ScratchDatabase;

#[derive(Parser, Debug)]
#[command(about = "Lightning invoices and payments against intraledger transfers")]
struct Args {
    /// Concurrent clients on every side.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Rounds per side in each phase.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Seconds per timed round (intraledger transfers, invoice creation).
    #[arg(long, default_value_t = 2)]
    round_seconds: u64,
    /// Invoices each client pays per round of payments.
    #[arg(long, default_value_t = 12)]
    payments: usize,
    /// Satoshis per payment and per transfer.
    #[arg(long, default_value_t = 100)]
    amount: u64,
    /// Capacity of the channel from bank A's node to bank B's, satoshis (at most
    /// 16,777,215: larger channels need both nodes to allow them).
    #[arg(long, default_value_t = 10_000_000)]
    channel_sats: u64,
    /// Bank A's node: `embedded` (LDK Node in this process) or `lnd` (an LND stand-in
    /// through the LND adapter).
    #[arg(long, value_enum, default_value_t = NodeA::Embedded)]
    node_a: NodeA,
    /// PostgreSQL connections per bank.
    #[arg(long, default_value_t = 24)]
    pool: u32,
    // `cargo bench` passes `--bench`; accept and ignore it.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Which node bank A runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum NodeA {
    Embedded,
    Lnd,
}

/// What each of bank A's customers holds at the start.
const DEPOSIT_SATS: u64 = 10_000_000;

/// One bank: its node, its customers (one per client) and what each wallet must hold.
struct BankSide {
    bank: Bank,
    customers: Arc<Vec<common::Customer>>,
    /// Settled balance each customer's wallet must have, millisatoshis.
    expected: Vec<i64>,
    _tasks: LightningTasks,
    // Dropped last: drops the database.
    _db: ScratchDatabase,
}

impl BankSide {
    /// A bank on a fresh database with `node` as its Lightning node and its watcher and
    /// reconciler running, and `clients` customers holding `deposit` each.
    async fn start(
        name: &str,
        args: &Args,
        node: Arc<dyn LightningNode>,
        deposit: Sats,
    ) -> anyhow::Result<BankSide> {
        let (db, pool) = ScratchDatabase::migrated(name, args.pool, &coordinator::db::MIGRATOR)
            .await
            .context("PostgreSQL must be reachable at DATABASE_URL")?;
        let ledger = Ledger::start(pool.clone(), LedgerConfig::default()).await?;
        // No limit may stop the bench: limits are not what it measures.
        let open = LevelLimits {
            internal_send: Sats::new(10_000_000_000)?,
            withdrawal: Sats::new(10_000_000_000)?,
        };
        let config = BankConfig {
            // Setup speed only: nobody logs in with a password while the bench measures.
            password_cost: PasswordCost::insecure_for_tests(),
            limits: LimitsConfig {
                level0: open,
                level1: open,
                level2: open,
                level3: open,
            },
            ..BankConfig::default()
        };
        let rail = LightningRail::new(node, LightningConfig::new(REGTEST)).await?;
        let bank =
            Bank::new(ledger, Arc::new(OutboxNotifier::new(pool)), config).with_lightning(rail);
        let tasks = bank.spawn_lightning_tasks()?;
        let mut customers = Vec::with_capacity(args.clients);
        for n in 0..args.clients {
            let email = format!("bench-{n}@example.com");
            customers.push(common::customer(&bank, &email, deposit.to_sat()).await);
        }
        let start = i64::try_from(deposit.to_msats().to_msat())?;
        Ok(BankSide {
            bank,
            expected: vec![start; customers.len()],
            customers: Arc::new(customers),
            _tasks: tasks,
            _db: db,
        })
    }

    /// Each client `c` moved `counts[c]` times `amount` from customer `c` to the next
    /// one, `c + 1` (the ring every intraledger round uses).
    fn ring(&mut self, counts: &[u64], amount: Sats) -> anyhow::Result<()> {
        let n = self.expected.len();
        for (c, count) in counts.iter().enumerate() {
            let moved = moved(*count, amount)?;
            shift(&mut self.expected[c], -moved)?;
            shift(&mut self.expected[(c + 1) % n], moved)?;
        }
        Ok(())
    }

    /// Whether every wallet holds what it must, settled, with nothing pending.
    async fn balanced(&self) -> anyhow::Result<()> {
        for (c, want) in self.customers.iter().zip(&self.expected) {
            let got = balance(&self.bank, c.wallet).await;
            ensure!(
                got == (*want, 0),
                "wallet {} holds {got:?} msat (settled, pending), expected ({want}, 0)",
                c.wallet
            );
        }
        Ok(())
    }

    /// Balances exact and the ledger's invariants intact, after `phase`.
    async fn check(&self, phase: &str) -> anyhow::Result<()> {
        self.balanced()
            .await
            .with_context(|| format!("after {phase}"))?;
        let report = self.bank.ledger().verify().await?;
        ensure!(
            report.is_ok(),
            "after {phase}: ledger invariants broken: {:?}",
            report.violations
        );
        Ok(())
    }

    /// A count over this bank's tables.
    async fn count(&self, sql: &str) -> anyhow::Result<u64> {
        let n: i64 = sqlx::query_scalar(sql)
            .fetch_one(self.bank.ledger().pool())
            .await?;
        Ok(u64::try_from(n)?)
    }
}

/// `count` payments of `amount`, millisatoshis.
fn moved(count: u64, amount: Sats) -> anyhow::Result<i64> {
    let total = amount
        .to_msats()
        .to_msat()
        .checked_mul(count)
        .context("amount overflow")?;
    Ok(i64::try_from(total)?)
}

fn shift(balance: &mut i64, by: i64) -> anyhow::Result<()> {
    *balance = balance.checked_add(by).context("balance overflow")?;
    Ok(())
}

/// One phase's measurement beside the intraledger rounds that alternated with it.
struct Phase {
    name: &'static str,
    measured: Tally,
    baseline: Tally,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(
        args.clients >= 2,
        "at least two clients: each pays the next"
    );
    ensure!(args.rounds >= 1 && args.payments >= 1, "nothing to measure");
    ensure!(
        args.channel_sats <= 16_777_215,
        "channels above 16,777,215 sat need both nodes to allow them"
    );
    let amount = Sats::new(args.amount)?;
    let length = Duration::from_secs(args.round_seconds);
    let setup = Instant::now();
    // All of the channel on A's side: A's users pay B's.
    let chain = lightning_common::chain();
    let (dir_a, dir_b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let b_proc = lnd(dir_b.path(), &chain);
    let b_node = adapter(&b_proc).await;
    let capacity = Sats::new(args.channel_sats)?;
    let mut a_proc = None;
    let mut embedded_a = None;
    let a_node: Arc<dyn LightningNode> = match args.node_a {
        NodeA::Embedded => {
            let node = embedded(dir_a.path(), &chain).await;
            open_channel(&chain, &*node, &b_node, &b_proc, capacity, Msats::ZERO).await;
            embedded_a = Some(Arc::clone(&node));
            node
        }
        NodeA::Lnd => {
            let proc_ = lnd(dir_a.path(), &chain);
            let node = adapter(&proc_).await;
            open_channel(&chain, &node, &b_node, &b_proc, capacity, Msats::ZERO).await;
            a_proc = Some(proc_);
            Arc::new(node)
        }
    };
    let mut a = BankSide::start(
        "coordinator_bench_ln_a",
        &args,
        a_node,
        Sats::new(DEPOSIT_SATS)?,
    )
    .await?;
    let mut b = BankSide::start(
        "coordinator_bench_ln_b",
        &args,
        Arc::new(b_node),
        Sats::ZERO,
    )
    .await?;
    let setup = setup.elapsed();
    let n = args.clients;
    let per_client = args.payments;

    // Warm both paths up (the invoices count in the check below).
    let warm = Duration::from_secs(1);
    let t = rounds::intraledger(&a, n, warm, amount).await?;
    a.ring(&t.per_client, amount)?;
    let mut invoices_made = rounds::invoices(&a, n, warm, amount).await?.ops;

    // 1. Invoices created per second.
    let mut created = Phase::new("invoices created     ln_invoice_create");
    for _ in 0..args.rounds {
        let t = rounds::intraledger(&a, n, length, amount).await?;
        a.ring(&t.per_client, amount)?;
        created.baseline.add(t);
        created
            .measured
            .add(rounds::invoices(&a, n, length, amount).await?);
    }
    invoices_made += created.measured.ops;
    check_invoices_open(&a, invoices_made).await?;
    a.check("invoice creation").await?;

    // 2. Payments between users of two banks on different nodes.
    let mut cross = Phase::new("paid to another node ln_send, A to B");
    let mut credit_lag = Duration::ZERO;
    for _ in 0..args.rounds {
        let t = rounds::intraledger(&a, n, length, amount).await?;
        a.ring(&t.per_client, amount)?;
        cross.baseline.add(t);
        let stock = rounds::stock(&b, |c| c, per_client, amount).await?;
        let t = rounds::pay(&a, stock, per_client).await?;
        credit_lag = credit_lag.max(across(&mut a, &mut b, &t.per_client, amount).await?);
        cross.measured.add(t);
    }
    let cross_paid = cross.measured.ops;
    check_payments(&a, &b, cross_paid, 0, "payments to another node").await?;

    // 3. Payments inside the bank through the intraledger shortcut.
    let mut inside = Phase::new("paid inside the bank ln_send, own node");
    for _ in 0..args.rounds {
        let t = rounds::intraledger(&a, n, length, amount).await?;
        a.ring(&t.per_client, amount)?;
        inside.baseline.add(t);
        let stock = rounds::stock(&a, |c| (c + 1) % n, per_client, amount).await?;
        let t = rounds::pay(&a, stock, per_client).await?;
        a.ring(&t.per_client, amount)?;
        inside.measured.add(t);
    }
    check_payments(&a, &b, cross_paid, inside.measured.ops, "payments inside").await?;

    // 4. The cross-node payment through GraphQL over HTTP, beside intraLedgerPaymentSend.
    let gql = Gql::serve(&a).await?;
    let mut graphql = Phase::new("GraphQL              lnInvoicePaymentSend");
    for _ in 0..args.rounds {
        let t = gql.intraledger(&a, length, amount).await?;
        a.ring(&t.per_client, amount)?;
        graphql.baseline.add(t);
        let stock = rounds::stock(&b, |c| c, per_client, amount).await?;
        let t = gql.pay(&a, stock, per_client).await?;
        credit_lag = credit_lag.max(across(&mut a, &mut b, &t.per_client, amount).await?);
        graphql.measured.add(t);
    }
    let cross_paid = cross_paid + graphql.measured.ops;
    check_payments(&a, &b, cross_paid, inside.measured.ops, "GraphQL payments").await?;

    report(&args, setup, credit_lag, [created, cross, inside], graphql);
    drop((a, b));
    if let Some(node) = embedded_a {
        node.stop().await?;
    }
    drop(a_proc);
    Ok(())
}

/// Bank A's customer `c` paid `counts[c]` invoices of bank B's customer `c`: waits until
/// bank B has credited them all, and returns how long that took after the round.
async fn across(
    a: &mut BankSide,
    b: &mut BankSide,
    counts: &[u64],
    amount: Sats,
) -> anyhow::Result<Duration> {
    let ended = Instant::now();
    for (c, count) in counts.iter().enumerate() {
        let moved = moved(*count, amount)?;
        shift(&mut a.expected[c], -moved)?;
        shift(&mut b.expected[c], moved)?;
    }
    let b = &*b;
    eventually(
        "bank B credits every payment",
        Duration::from_secs(120),
        || async { b.balanced().await.is_ok().then_some(()) },
    )
    .await;
    Ok(ended.elapsed())
}

/// Every invoice of bank A is open, in its table and at its node, and there are `made`.
async fn check_invoices_open(a: &BankSide, made: u64) -> anyhow::Result<()> {
    let open = a
        .count("SELECT count(*) FROM ln_invoices WHERE status = 'PENDING'")
        .await?;
    let all = a.count("SELECT count(*) FROM ln_invoices").await?;
    ensure!(
        open == made && all == made,
        "{made} invoices created, {all} stored, {open} open"
    );
    let hashes: Vec<Vec<u8>> = sqlx::query_scalar("SELECT payment_hash FROM ln_invoices")
        .fetch_all(a.bank.ledger().pool())
        .await?;
    let node = a.bank.lightning().context("bank A has a node")?.node();
    for h in hashes {
        let hash = PaymentHash(<[u8; 32]>::try_from(h.as_slice())?);
        let state = node.invoice(&hash).await?;
        ensure!(
            matches!(state, InvoiceState::Open),
            "invoice {hash} at the node: {state:?}"
        );
    }
    Ok(())
}

/// Every payment bank A made answered SUCCESS and settled: `cross` over Lightning (each
/// invoice of bank B paid over Lightning) and `inside` in the ledger (each of bank A's
/// own invoices paid there); both banks' wallets and ledgers check out.
async fn check_payments(
    a: &BankSide,
    b: &BankSide,
    cross: u64,
    inside: u64,
    phase: &str,
) -> anyhow::Result<()> {
    let succeeded = a
        .count("SELECT count(*) FROM ln_payments WHERE status = 'SUCCESS'")
        .await?;
    let all = a.count("SELECT count(*) FROM ln_payments").await?;
    ensure!(
        succeeded == all && all == cross + inside,
        "after {phase}: {all} payments stored, {succeeded} SUCCESS, {} made",
        cross + inside
    );
    let over_lightning = b
        .count("SELECT count(*) FROM ln_invoices WHERE status = 'PAID' AND paid_via = 'LIGHTNING'")
        .await?;
    ensure!(
        over_lightning == cross,
        "after {phase}: bank B has {over_lightning} invoices paid over Lightning, {cross} paid"
    );
    let in_ledger = a
        .count(
            "SELECT count(*) FROM ln_invoices WHERE status = 'PAID' AND paid_via = 'INTRALEDGER'",
        )
        .await?;
    ensure!(
        in_ledger == inside,
        "after {phase}: bank A has {in_ledger} invoices paid inside, {inside} paid"
    );
    a.check(phase).await?;
    b.check(phase).await
}

impl Phase {
    fn new(name: &'static str) -> Phase {
        Phase {
            name,
            measured: Tally::default(),
            baseline: Tally::default(),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(
    args: &Args,
    setup: Duration,
    credit_lag: Duration,
    phases: [Phase; 3],
    mut graphql: Phase,
) {
    println!(
        "Lightning, {} clients, {} rounds per side; timed rounds of {} s; payment rounds of \
         {} invoices per client, {} sat each (invoices created before each round, untimed)",
        args.clients, args.rounds, args.round_seconds, args.payments, args.amount
    );
    let node_a = match args.node_a {
        NodeA::Embedded => "the embedded node (LDK Node in this process)",
        NodeA::Lnd => "an LND stand-in (LND's gRPC over LDK Node) through the LND adapter",
    };
    println!(
        "Bank A's node: {node_a}; bank B's: an LND stand-in; channel A to B {} sat; setup {:.0} s",
        args.channel_sats,
        setup.as_secs_f64()
    );
    println!(
        "  {:<42} {:>9} {:>8} {:>8}   {:>22}   {:>6}",
        "", "rate/s", "p50 ms", "p99 ms", "intraledger alongside", "ratio"
    );
    for mut p in phases {
        let (rate, base) = (p.measured.rate(), p.baseline.rate());
        println!(
            "  {:<42} {rate:>9.1} {:>8.1} {:>8.1}   {base:>17.0} tx/s   {:>5.3}x",
            p.name,
            ms(p.measured.percentile(0.50)),
            ms(p.measured.percentile(0.99)),
            rate / base
        );
    }
    let (rate, base) = (graphql.measured.rate(), graphql.baseline.rate());
    let (p50, p99) = (
        graphql.measured.percentile(0.50),
        graphql.measured.percentile(0.99),
    );
    let (b50, b99) = (
        graphql.baseline.percentile(0.50),
        graphql.baseline.percentile(0.99),
    );
    println!(
        "  {:<42} {rate:>9.1} {:>8.1} {:>8.1}   {base:>17.0} tx/s   {:>5.3}x",
        graphql.name,
        ms(p50),
        ms(p99),
        rate / base
    );
    println!(
        "  {:<42} {base:>9.1} {:>8.1} {:>8.1}   (the baseline of the line above)",
        "GraphQL              intraLedgerPaymentSend",
        ms(b50),
        ms(b99)
    );
    println!(
        "  lnInvoicePaymentSend p99 / intraLedgerPaymentSend p99: {:.1}x",
        p99.as_secs_f64() / b99.as_secs_f64()
    );
    println!(
        "  Bank B credited each round's last payment {:.2} s after the round at most \
         (polled every 0.25 s). Checked after each phase: every payment SUCCESS, every \
         balance exact, invoices in their state, both ledgers' invariants.",
        credit_lag.as_secs_f64()
    );
}
