//! Internal transfers through the coordinator's GraphQL API, as a wallet app sends them:
//! users signed up and funded, and a send that retries with its idempotency key until an
//! instance gives a final answer. Shared by the failover test and the replicas bench.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use coordinator::ledger::system;
use coordinator::{Ledger, LedgerConfig, Posting, Sats, WalletId};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::bank_process::{Api, Coordinator};

const SEND: &str = "mutation($i: IntraLedgerPaymentSendInput!) { intraLedgerPaymentSend(input: $i) \
    { status errors { message } } }";

/// A signed-up user.
#[derive(Debug)]
pub struct User {
    /// The session token.
    pub token: String,
    /// The default wallet.
    pub wallet: WalletId,
}

/// A send's final answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// SUCCESS or ALREADY_PAID.
    Paid,
    /// FAILURE: nothing moved.
    Refused,
}

/// Why a send attempt did not give a final answer.
#[derive(Debug)]
pub enum Retry {
    /// The connection broke (the instance died under the request).
    Interrupted,
    /// A 5xx, PENDING, or an unknown outcome.
    NotYet,
}

/// Registers `amounts.len()` users on `server` and funds user `i` with `amounts[i]` sats
/// through a ledger writer of the caller's own (one more instance writing beside the
/// servers).
///
/// # Errors
/// A refused step.
pub async fn sign_up(
    pool: &PgPool,
    server: &Coordinator,
    amounts: &[u64],
) -> anyhow::Result<Vec<User>> {
    let ledger = Ledger::start(pool.clone(), LedgerConfig::default()).await?;
    let mut users = Vec::new();
    for (i, amount) in amounts.iter().enumerate() {
        let mut api: Api = server.api();
        api.register(
            pool,
            &format!("user{i}@example.com"),
            "a long password here",
        )
        .await?;
        let me = api
            .gql(
                "query { me { defaultAccount { defaultWalletId } } }",
                json!({}),
            )
            .await?;
        let wallet: WalletId = me["me"]["defaultAccount"]["defaultWalletId"]
            .as_str()
            .context("a wallet id")?
            .parse()
            .map_err(|e| anyhow::anyhow!("wallet id: {e:?}"))?;
        let funding = Posting::transfer(
            system::MAIN_JOURNAL,
            format!("funding-{i}"),
            system::BANK_ONCHAIN,
            coordinator::bank::Bank::ledger_account(wallet),
            Sats::new(*amount)?.to_msats(),
            "funding",
        )?;
        ledger.post(funding).await?;
        users.push(User {
            token: api.token().context("logged in")?.to_owned(),
            wallet,
        });
    }
    Ok(users)
}

/// Writes a limits file (for `coordinator serve --limits`) high enough at every level that
/// only balances refuse a send.
///
/// # Errors
/// The file cannot be written.
pub fn write_high_limits(path: &Path) -> anyhow::Result<()> {
    let high = "{ internal_send = 1000000000, withdrawal = 0 }";
    std::fs::write(
        path,
        format!("level0 = {high}\nlevel1 = {high}\nlevel2 = {high}\nlevel3 = {high}\n"),
    )
    .with_context(|| format!("writing {}", path.display()))
}

/// The variables of a send of `amount` sats.
pub fn send_input(from: &User, to: &User, amount: u64) -> Value {
    json!({ "i": {
        "walletId": from.wallet.to_string(),
        "recipientWalletId": to.wallet.to_string(),
        "amount": amount,
    }})
}

/// One attempt at `url`: the final answer, or why there is none yet.
///
/// # Errors
/// An answer that is neither final nor retryable (a 4xx, GraphQL errors).
pub async fn send_once(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    key: &str,
    input: &Value,
) -> anyhow::Result<Result<Answer, Retry>> {
    let response = http
        .post(format!("{url}/graphql"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&json!({ "query": SEND, "variables": input }))
        .send()
        .await;
    let body: Value = match response {
        Ok(r) if r.status().is_success() => match r.json().await {
            Ok(v) => v,
            Err(_) => return Ok(Err(Retry::Interrupted)),
        },
        Ok(r) if r.status().is_server_error() => return Ok(Err(Retry::NotYet)),
        Ok(r) => bail!("{key}: HTTP {}", r.status()),
        Err(_) => return Ok(Err(Retry::Interrupted)),
    };
    if let Some(errors) = body.get("errors") {
        bail!("{key}: GraphQL errors {errors}");
    }
    Ok(
        match body["data"]["intraLedgerPaymentSend"]["status"].as_str() {
            Some("SUCCESS" | "ALREADY_PAID") => Ok(Answer::Paid),
            Some("FAILURE") => Ok(Answer::Refused),
            // PENDING, or null: the outcome is not known yet.
            _ => Err(Retry::NotYet),
        },
    )
}

/// Sends until a final answer, trying `url` then the others in turn; gives up after 60 s.
///
/// # Errors
/// No final answer in time, or an answer that is neither final nor retryable.
pub async fn send_until_final(
    http: &reqwest::Client,
    url: impl Fn(usize) -> Option<String>,
    token: &str,
    key: &str,
    input: &Value,
    mut on_retry: impl FnMut(&Retry),
) -> anyhow::Result<(usize, Answer)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    for attempt in 0.. {
        ensure!(
            Instant::now() < deadline,
            "{key}: no final answer within 60 s"
        );
        let Some(target) = url(attempt) else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        match send_once(http, &target, token, key, input).await? {
            Ok(answer) => return Ok((attempt, answer)),
            Err(why) => {
                on_retry(&why);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    unreachable!("the loop returns or fails")
}
