//! The rounds the Lightning bench times: clients running one operation concurrently,
//! each on its own customer, through the library or through GraphQL over HTTP.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use coordinator::Sats;
use coordinator::api::ApiConfig;
use coordinator::bank::lightning::{InvoiceCreate, InvoiceStatus, LnPayStatus};
use coordinator::bank::{PaymentStatus, Recipient, Scope, SendRequest};
use tokio::task::JoinHandle;

use super::BankSide;
use super::lightning_common::pay as pay_request;

/// What a round (or the sum of rounds) did.
#[derive(Default)]
pub struct Tally {
    /// Operations done.
    pub ops: u64,
    /// Time from the start of a round until its last client finished, summed.
    pub elapsed: Duration,
    latencies: Vec<Duration>,
    /// Operations per client, in the last round only (the balances follow from it).
    pub per_client: Vec<u64>,
}

impl Tally {
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile(&mut self, p: f64) -> Duration {
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(i).copied().unwrap_or_default()
    }

    pub fn add(&mut self, other: Tally) {
        self.ops += other.ops;
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
    }
}

/// When a client stops.
#[derive(Clone, Copy)]
enum Stop {
    After(Duration),
    Count(usize),
}

/// `clients` tasks each calling `op(client, i)` for i = 0, 1, ... until `stop`; the
/// first error ends the run.
async fn round<F, Fut>(clients: usize, stop: Stop, op: F) -> anyhow::Result<Tally>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let op = Arc::clone(&op);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for i in 0.. {
                    match stop {
                        Stop::After(d) if start.elapsed() >= d => break,
                        Stop::Count(n) if i >= n => break,
                        _ => {}
                    }
                    let sent = Instant::now();
                    op(client, i).await?;
                    latencies.push(sent.elapsed());
                }
                anyhow::Ok((latencies.len() as u64, latencies))
            })
        })
        .collect();
    let mut tally = Tally::default();
    for task in tasks {
        let (ops, latencies) = task.await??;
        tally.ops += ops;
        tally.per_client.push(ops);
        tally.latencies.extend(latencies);
    }
    tally.elapsed = start.elapsed();
    Ok(tally)
}

/// The baseline: each client's customer `c` sends `amount` to customer `c + 1` with
/// `Bank::send_internal`, for `length`.
pub async fn intraledger(
    a: &BankSide,
    clients: usize,
    length: Duration,
    amount: Sats,
) -> anyhow::Result<Tally> {
    let (bank, customers) = (a.bank.clone(), Arc::clone(&a.customers));
    round(clients, Stop::After(length), move |c, _| {
        let (bank, customers) = (bank.clone(), Arc::clone(&customers));
        async move {
            let (from, to) = (&customers[c], &customers[(c + 1) % customers.len()]);
            let request = SendRequest {
                wallet_id: from.wallet,
                recipient: Recipient::Wallet(to.wallet),
                amount,
                memo: None,
                idempotency_key: Some(uuid::Uuid::now_v7().to_string()),
            };
            let sent = bank.send_internal(&from.me, &request).await?;
            ensure!(
                sent.status == PaymentStatus::Success,
                "transfer not made: {sent:?}"
            );
            Ok(())
        }
    })
    .await
}

fn invoice_of(customer: &super::common::Customer, amount: Sats) -> InvoiceCreate {
    InvoiceCreate {
        wallet_id: Some(customer.wallet),
        amount: Some(amount),
        memo: Some("bench".into()),
        ..InvoiceCreate::default()
    }
}

/// Each client's customer creates invoices for its own wallet, for `length`.
pub async fn invoices(
    a: &BankSide,
    clients: usize,
    length: Duration,
    amount: Sats,
) -> anyhow::Result<Tally> {
    let (bank, customers) = (a.bank.clone(), Arc::clone(&a.customers));
    round(clients, Stop::After(length), move |c, _| {
        let (bank, customers) = (bank.clone(), Arc::clone(&customers));
        async move {
            let made = bank
                .ln_invoice_create(Some(&customers[c].me), &invoice_of(&customers[c], amount))
                .await?;
            ensure!(made.status == InvoiceStatus::Pending, "{made:?}");
            Ok(())
        }
    })
    .await
}

/// Invoices to pay in the next round, made by `side`'s bank: for each client `c`,
/// `count` invoices of customer `payee(c)`.
pub async fn stock(
    side: &BankSide,
    payee: impl Fn(usize) -> usize,
    count: usize,
    amount: Sats,
) -> anyhow::Result<Arc<Vec<Vec<String>>>> {
    let tasks: Vec<_> = (0..side.customers.len())
        .map(|c| {
            let (bank, customers, payee) =
                (side.bank.clone(), Arc::clone(&side.customers), payee(c));
            tokio::spawn(async move {
                let mut requests = Vec::with_capacity(count);
                for _ in 0..count {
                    let p = &customers[payee];
                    let made = bank
                        .ln_invoice_create(Some(&p.me), &invoice_of(p, amount))
                        .await?;
                    requests.push(made.payment_request);
                }
                anyhow::Ok(requests)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(tasks.len());
    for task in tasks {
        all.push(task.await??);
    }
    Ok(Arc::new(all))
}

/// Each client's customer `c` of bank A pays the `count` invoices `stock[c]` with
/// `ln_send`; each must answer SUCCESS.
pub async fn pay(
    a: &BankSide,
    stock: Arc<Vec<Vec<String>>>,
    count: usize,
) -> anyhow::Result<Tally> {
    let (bank, customers) = (a.bank.clone(), Arc::clone(&a.customers));
    round(stock.len(), Stop::Count(count), move |c, i| {
        let (bank, customers, stock) = (bank.clone(), Arc::clone(&customers), Arc::clone(&stock));
        async move {
            let payer = &customers[c];
            let paid = bank
                .ln_send(&payer.me, &pay_request(payer.wallet, &stock[c][i], None))
                .await?;
            ensure!(paid.status == LnPayStatus::Success, "not paid: {paid:?}");
            Ok(())
        }
    })
    .await
}

/// Bank A's GraphQL API served on 127.0.0.1, with a write key and an HTTP/1.1
/// connection for each of its customers.
pub struct Gql {
    url: String,
    keys: Arc<Vec<String>>,
    http: Arc<Vec<reqwest::Client>>,
    server: JoinHandle<std::io::Result<()>>,
}

impl Drop for Gql {
    fn drop(&mut self) {
        self.server.abort();
    }
}

const INTRALEDGER: &str = "mutation send($input: IntraLedgerPaymentSendInput!) { \
    intraLedgerPaymentSend(input: $input) { status errors { message code } } }";
const LN_SEND: &str = "mutation send($input: LnInvoicePaymentInput!) { \
    lnInvoicePaymentSend(input: $input) { status errors { message code } } }";

impl Gql {
    pub async fn serve(a: &BankSide) -> anyhow::Result<Gql> {
        let router = coordinator::api::router(a.bank.clone(), ApiConfig::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
        });
        let mut keys = Vec::with_capacity(a.customers.len());
        let mut http = Vec::with_capacity(a.customers.len());
        for c in a.customers.iter() {
            let (_, key) = a
                .bank
                .create_api_key(&c.me, "bench", &[Scope::Read, Scope::Write], None)
                .await?;
            keys.push(key.expose().to_owned());
            // One connection per client, kept alive.
            http.push(
                reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()?,
            );
        }
        Ok(Gql {
            url: format!("http://{address}/graphql"),
            keys: Arc::new(keys),
            http: Arc::new(http),
            server,
        })
    }

    /// `intraLedgerPaymentSend` from customer `c` to customer `c + 1`, for `length`.
    pub async fn intraledger(
        &self,
        a: &BankSide,
        length: Duration,
        amount: Sats,
    ) -> anyhow::Result<Tally> {
        let wallets: Arc<Vec<String>> =
            Arc::new(a.customers.iter().map(|c| c.wallet.to_string()).collect());
        let n = wallets.len();
        self.round(
            n,
            Stop::After(length),
            "intraLedgerPaymentSend",
            move |c, _| {
                serde_json::json!({
                    "query": INTRALEDGER,
                    "variables": { "input": {
                        "walletId": wallets[c],
                        "recipientWalletId": wallets[(c + 1) % n],
                        "amount": amount.to_sat(),
                    }},
                })
            },
        )
        .await
    }

    /// `lnInvoicePaymentSend` of the invoices `stock[c]` from customer `c`'s wallet.
    pub async fn pay(
        &self,
        a: &BankSide,
        stock: Arc<Vec<Vec<String>>>,
        count: usize,
    ) -> anyhow::Result<Tally> {
        let wallets: Vec<String> = a.customers.iter().map(|c| c.wallet.to_string()).collect();
        self.round(
            stock.len(),
            Stop::Count(count),
            "lnInvoicePaymentSend",
            move |c, i| {
                serde_json::json!({
                    "query": LN_SEND,
                    "variables": { "input": {
                        "walletId": wallets[c],
                        "paymentRequest": stock[c][i],
                    }},
                })
            },
        )
        .await
    }

    /// Client `c` posts `body(c, i)` with customer `c`'s key; `field` must answer SUCCESS.
    async fn round(
        &self,
        clients: usize,
        stop: Stop,
        field: &'static str,
        body: impl Fn(usize, usize) -> serde_json::Value + Send + Sync + 'static,
    ) -> anyhow::Result<Tally> {
        let (url, keys, http) = (
            self.url.clone(),
            Arc::clone(&self.keys),
            Arc::clone(&self.http),
        );
        let body = Arc::new(body);
        round(clients, stop, move |c, i| {
            let (url, keys, http, body) = (
                url.clone(),
                Arc::clone(&keys),
                Arc::clone(&http),
                Arc::clone(&body),
            );
            async move {
                let response: serde_json::Value = http[c]
                    .post(&url)
                    .header("X-API-KEY", &keys[c])
                    .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
                    .json(&body(c, i))
                    .send()
                    .await?
                    .json()
                    .await?;
                if response["data"][field]["status"] != "SUCCESS" {
                    bail!("{field}: not paid: {response}");
                }
                Ok(())
            }
        })
        .await
    }
}
