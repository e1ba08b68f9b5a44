//! GraphQL transfers per second over real keep-alive HTTP connections on 127.0.0.1,
//! against the same transfers made through the library (`Bank::send_internal`) in the same
//! run. The targets: GraphQL at 32 connections at least half the library rate,
//! p99 under 50 ms. A measurement, not a check of this machine's speed: ignored by default;
//! run it with
//! `cargo nextest run -p coordinator --run-ignored only -E 'test(graphql_throughput)' --no-capture`.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod api_common;
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use api_common::{Customer, api, customer};
use coordinator::bank::{Recipient, SendRequest};
use coordinator::{Sats, WalletId};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const CLIENTS: usize = 32;
const PER_CLIENT: usize = 100;

/// One keep-alive HTTP/1.1 connection; enough of a client for JSON POSTs.
struct Conn {
    stream: BufReader<TcpStream>,
}

impl Conn {
    async fn post(&mut self, path: &str, token: &str, body: &str) -> (u16, String) {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n\
             Authorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream
            .get_mut()
            .write_all(req.as_bytes())
            .await
            .unwrap();
        let mut status_line = String::new();
        self.stream.read_line(&mut status_line).await.unwrap();
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line).await.unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap();
            }
        }
        let mut buf = vec![0; length];
        self.stream.read_exact(&mut buf).await.unwrap();
        (status, String::from_utf8(buf).unwrap())
    }
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement; run explicitly"]
async fn graphql_throughput_against_the_library() {
    let a = api().await;
    let mut customers: Vec<Customer> = Vec::new();
    for i in 0..CLIENTS * 2 {
        customers.push(customer(a.bank(), &format!("c{i}@example.com"), 1_000_000).await);
    }
    let customers = Arc::new(customers);
    let wallets: Vec<WalletId> = customers.iter().map(|c| c.wallet).collect();

    // The library, 32 workers.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..CLIENTS {
        let (bank, customers, wallets) = (a.bank().clone(), customers.clone(), wallets.clone());
        tasks.push(tokio::spawn(async move {
            let me = &customers[w];
            for i in 0..PER_CLIENT {
                let to = wallets[(w + 1 + i % (wallets.len() - 1)) % wallets.len()];
                let to = if to == me.wallet {
                    wallets[(w + 2) % wallets.len()]
                } else {
                    to
                };
                let req = SendRequest {
                    wallet_id: me.wallet,
                    recipient: Recipient::Wallet(to),
                    amount: Sats::new(1).unwrap(),
                    memo: None,
                    idempotency_key: Some(format!("lib-{w}-{i}")),
                };
                bank.send_internal(&me.principal, &req).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let lib_rate = (CLIENTS * PER_CLIENT) as f64 / started.elapsed().as_secs_f64();

    // GraphQL over 32 real connections.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = a.router.clone();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..CLIENTS {
        let (customers, wallets) = (customers.clone(), wallets.clone());
        tasks.push(tokio::spawn(async move {
            let me = &customers[w + CLIENTS];
            let mut conn = Conn {
                stream: BufReader::new(TcpStream::connect(addr).await.unwrap()),
            };
            let mut latencies = Vec::with_capacity(PER_CLIENT);
            for i in 0..PER_CLIENT {
                let to = wallets[(w + 1 + i % (wallets.len() - 1)) % wallets.len()];
                let to = if to == me.wallet { wallets[(w + 2) % wallets.len()] } else { to };
                let body = json!({
                    "query": api_common::SEND,
                    "variables": {"input": {"walletId": me.wallet.to_string(), "recipientWalletId": to.to_string(), "amount": 1, "idempotencyKey": format!("gql-{w}-{i}")}},
                })
                .to_string();
                let t = Instant::now();
                let (status, text) = conn.post("/graphql", &me.token, &body).await;
                latencies.push(t.elapsed());
                assert_eq!(status, 200, "{text}");
                assert!(text.contains("\"SUCCESS\""), "{text}");
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let gql_rate = (CLIENTS * PER_CLIENT) as f64 / started.elapsed().as_secs_f64();
    let p99 = p99(latencies);
    eprintln!(
        "internal transfers, {CLIENTS} workers x {PER_CLIENT}: library {lib_rate:.0}/s, \
         GraphQL over HTTP {gql_rate:.0}/s (ratio {:.2}, target >= 0.5), GraphQL p99 {:.1} ms \
         (target < 50 ms)",
        gql_rate / lib_rate,
        p99.as_secs_f64() * 1000.0
    );
    assert!(a.bank().ledger().verify().await.unwrap().is_ok());
}
