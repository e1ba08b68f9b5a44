//! The LND adapter against the LND stand-in: real processes, real HTLCs. A regtest chain
//! (the regtest stand-in), two LND stand-ins A and B (LND's gRPC API over LDK nodes), a
//! channel A→B opened through the adapter, then invoices and payments through the
//! adapter: settlement stream and its cursor (across a restart), idempotent payment,
//! no-amount invoices, cancelled and expired invoices, balances and channels, and the
//! refusals: a wrong macaroon, a wrong TLS certificate, a stopped node (and what
//! `/readyz`'s Lightning check says of each).
//!
//! Both stand-in binaries must be built: `cargo build -p chain-standin -p
//! lnd-standin-server` (scripts/test.sh does).
#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod lightning_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_graphql::futures_util::StreamExt;
use async_graphql::futures_util::stream::BoxStream;
use bitcoin::hashes::{Hash, sha256};
use coordinator::amount::{Msats, Sats};
use coordinator::lightning::lnd::LndNode;
use coordinator::lightning::{
    InvoiceDescription, InvoiceRequest, InvoiceState, LightningError, LightningNode, PayRequest,
    PaymentFailure, PaymentState, SettleCursor, SettledInvoice, decode_invoice,
};
use coordinator::ops::ReadinessCheck;
use coordinator::ops::readiness::LightningCheck;
use lightning_common::{REGTEST, adapter, chain, config, eventually, lnd, open_channel};

/// The next settlement, if one comes within `wait`.
async fn next_settled(
    stream: &mut BoxStream<'static, Result<SettledInvoice, LightningError>>,
    wait: Duration,
) -> Option<SettledInvoice> {
    match tokio::time::timeout(wait, stream.next()).await {
        Err(_) => None,
        Ok(item) => Some(item.expect("the stream stays open").unwrap()),
    }
}

fn invoice_request(amount: Option<u64>, memo: &str, expiry: Duration) -> InvoiceRequest {
    InvoiceRequest {
        amount: amount.map(|m| Msats::new(m).unwrap()),
        description: InvoiceDescription::Memo(memo.into()),
        expiry,
    }
}

fn pay_request(payment_request: &str, amount: Option<u64>) -> PayRequest {
    let decoded = decode_invoice(payment_request, REGTEST).unwrap();
    PayRequest {
        payment_request: payment_request.into(),
        payment_hash: decoded.payment_hash,
        amount: amount.map(|m| Msats::new(m).unwrap()),
        max_fee: Msats::new(10_000).unwrap(),
        timeout: Duration::from_secs(30),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_over_a_real_channel_through_the_adapter() {
    let started = Instant::now();
    let chain = chain();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a_proc = lnd(dir_a.path(), &chain);
    let mut b_proc = lnd(dir_b.path(), &chain);
    let a = adapter(&a_proc).await;
    let b = adapter(&b_proc).await;

    let info = a.info().await.unwrap();
    assert_eq!(info.pubkey, a_proc.pubkey());
    assert_eq!(info.network, REGTEST);

    open_channel(
        &chain,
        &a,
        &b,
        &b_proc,
        Sats::new(500_000).unwrap(),
        Msats::ZERO,
    )
    .await;
    eprintln!("channel usable after {:?}", started.elapsed());
    let a_before = a.balances().await.unwrap().lightning;

    // An invoice on B, paid from A.
    let created = b
        .create_invoice(&invoice_request(
            Some(20_000_000),
            "coffee",
            Duration::from_secs(3600),
        ))
        .await
        .unwrap();
    assert!(matches!(
        b.invoice(&created.payment_hash).await.unwrap(),
        InvoiceState::Open
    ));
    assert_eq!(
        a.payment(&created.payment_hash).await.unwrap().map(|_| ()),
        None
    );
    let request = pay_request(&created.payment_request, None);
    let decoded = decode_invoice(&created.payment_request, REGTEST).unwrap();
    let probed = a
        .probe_fee(&decoded, decoded.amount.unwrap())
        .await
        .unwrap();
    assert!(probed <= request.max_fee, "probed fee {probed}");
    let (preimage, fee) = match a.pay(&request).await.unwrap() {
        PaymentState::Succeeded { preimage, fee } => (preimage, fee),
        other => panic!("payment: {other:?}"),
    };
    assert_eq!(preimage.payment_hash(), created.payment_hash);
    assert!(fee <= request.max_fee, "fee {fee} within the limit");
    match b.invoice(&created.payment_hash).await.unwrap() {
        InvoiceState::Settled(s) => {
            assert_eq!(s.amount.to_msat(), 20_000_000);
            assert_eq!(s.preimage, preimage);
        }
        other => panic!("invoice: {other:?}"),
    }
    assert!(matches!(
        a.payment(&created.payment_hash).await.unwrap(),
        Some(PaymentState::Succeeded { .. })
    ));

    // Settlements from cursor 0: this one; from its cursor: nothing more.
    let mut from_start = b.settled_invoices(SettleCursor(0)).await.unwrap();
    let first = next_settled(&mut from_start, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(first.payment_hash, created.payment_hash);
    assert_eq!(first.amount.to_msat(), 20_000_000);
    assert!(
        next_settled(&mut from_start, Duration::from_secs(1))
            .await
            .is_none()
    );
    let mut after_first = b.settled_invoices(first.cursor).await.unwrap();
    assert!(
        next_settled(&mut after_first, Duration::from_secs(1))
            .await
            .is_none()
    );

    // Paying again pays nothing more: the same payment's state comes back.
    let b_lightning = b.balances().await.unwrap().lightning;
    match a.pay(&request).await.unwrap() {
        PaymentState::Succeeded {
            preimage: again, ..
        } => assert_eq!(again, preimage),
        other => panic!("second pay: {other:?}"),
    }
    assert_eq!(b.balances().await.unwrap().lightning, b_lightning);
    assert!(
        next_settled(&mut after_first, Duration::from_secs(1))
            .await
            .is_none()
    );

    // A no-amount invoice (description hash), paid with an amount, seen live by the stream
    // opened from the first cursor and by A's payment updates.
    let mut updates = a.payment_updates().await.unwrap();
    let open = b
        .create_invoice(&InvoiceRequest {
            amount: None,
            description: InvoiceDescription::Hash(sha256::Hash::hash(b"metadata").to_byte_array()),
            expiry: Duration::from_secs(600),
        })
        .await
        .unwrap();
    let without_amount = pay_request(&open.payment_request, None);
    assert!(matches!(
        a.pay(&without_amount).await,
        Err(LightningError::Invalid(_))
    ));
    let decoded = decode_invoice(&open.payment_request, REGTEST).unwrap();
    assert_eq!(
        a.probe_fee(&decoded, Msats::new(5_000_000).unwrap())
            .await
            .unwrap(),
        Msats::ZERO
    );
    let state = a
        .pay(&pay_request(&open.payment_request, Some(5_000_000)))
        .await
        .unwrap();
    assert!(matches!(state, PaymentState::Succeeded { .. }), "{state:?}");
    let second = next_settled(&mut after_first, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(second.payment_hash, open.payment_hash);
    assert_eq!(second.amount.to_msat(), 5_000_000);
    assert!(second.cursor > first.cursor);
    let update = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let update = updates
                .next()
                .await
                .expect("the updates stay open")
                .unwrap();
            if update.payment_hash == open.payment_hash
                && matches!(update.state, PaymentState::Succeeded { .. })
            {
                return update;
            }
        }
    })
    .await
    .expect("A's update for the payment");
    assert_eq!(update.payment_hash, open.payment_hash);

    // A payment that outlasts the caller's wait is in flight, then succeeds on its own.
    let slow = b
        .create_invoice(&invoice_request(
            Some(1_000_000),
            "in flight",
            Duration::from_secs(600),
        ))
        .await
        .unwrap();
    let mut no_wait = pay_request(&slow.payment_request, None);
    no_wait.timeout = Duration::ZERO;
    let state = a.pay(&no_wait).await.unwrap();
    assert!(matches!(state, PaymentState::InFlight), "{state:?}");
    eventually(
        "the payment left in flight succeeds",
        Duration::from_secs(20),
        || async {
            match a.payment(&slow.payment_hash).await.unwrap() {
                Some(PaymentState::Succeeded { preimage, .. }) => {
                    (preimage.payment_hash() == slow.payment_hash).then_some(())
                }
                _ => None,
            }
        },
    )
    .await;
    let third = next_settled(&mut after_first, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(third.payment_hash, slow.payment_hash);

    // A cancelled invoice refuses payment; cancelling is idempotent; a settled one cannot be.
    let cancelled = b
        .create_invoice(&invoice_request(
            Some(1_000_000),
            "cancelled",
            Duration::from_secs(600),
        ))
        .await
        .unwrap();
    b.cancel_invoice(&cancelled.payment_hash).await.unwrap();
    b.cancel_invoice(&cancelled.payment_hash).await.unwrap();
    assert!(matches!(
        b.invoice(&cancelled.payment_hash).await.unwrap(),
        InvoiceState::Cancelled
    ));
    let state = a
        .pay(&pay_request(&cancelled.payment_request, None))
        .await
        .unwrap();
    assert!(
        matches!(
            state,
            PaymentState::Failed(PaymentFailure::RecipientRejected)
        ),
        "{state:?}"
    );
    assert!(matches!(
        b.cancel_invoice(&created.payment_hash).await,
        Err(LightningError::AlreadySettled)
    ));

    // An expired invoice is refused before anything is sent.
    let expiring = b
        .create_invoice(&invoice_request(
            Some(1_000_000),
            "soon",
            Duration::from_secs(1),
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(matches!(
        a.pay(&pay_request(&expiring.payment_request, None)).await,
        Err(LightningError::Invalid(_))
    ));
    assert!(matches!(
        b.invoice(&expiring.payment_hash).await.unwrap(),
        InvoiceState::Cancelled
    ));

    // B cannot pay A more than its side of the channel: no route, and nothing is paid.
    let too_big = a
        .create_invoice(&invoice_request(
            Some(100_000_000),
            "too big",
            Duration::from_secs(600),
        ))
        .await
        .unwrap();
    let decoded = decode_invoice(&too_big.payment_request, REGTEST).unwrap();
    let probe = b.probe_fee(&decoded, decoded.amount.unwrap()).await;
    assert!(
        matches!(probe, Err(LightningError::NoRoute(_))),
        "{probe:?}"
    );
    let state = b
        .pay(&pay_request(&too_big.payment_request, None))
        .await
        .unwrap();
    assert!(
        matches!(state, PaymentState::Failed(PaymentFailure::NoRoute)),
        "{state:?}"
    );
    assert!(matches!(
        b.payment(&too_big.payment_hash).await.unwrap(),
        Some(PaymentState::Failed(PaymentFailure::NoRoute))
    ));

    // Balances and channels show the 26,000 sat paid.
    let paid = 26_000_000;
    let a_after = a.balances().await.unwrap().lightning;
    assert_eq!(a_before.to_msat() - a_after.to_msat(), paid);
    assert_eq!(b.balances().await.unwrap().lightning.to_msat(), paid);
    let channels = b.channels().await.unwrap();
    assert_eq!(channels.len(), 1);
    assert_eq!(channels[0].peer, a_proc.pubkey());
    assert_eq!(channels[0].capacity.to_sat(), 500_000);
    assert!(channels[0].inbound.to_msat() < 500_000_000 - paid);

    // B stops: its adapter says unavailable. B restarts on its data: the cursor holds.
    b_proc.kill();
    assert!(matches!(
        b.info().await,
        Err(LightningError::Unavailable(_))
    ));
    // An open settlement stream says so too (the caller subscribes again from its cursor).
    match tokio::time::timeout(Duration::from_secs(5), after_first.next()).await {
        Ok(Some(Err(LightningError::Unavailable(m)))) => eprintln!("stream: {m}"),
        other => panic!("the settlement stream of a stopped node: {other:?}"),
    }
    let b_proc = lnd(dir_b.path(), &chain);
    let b = adapter(&b_proc).await;
    let mut replay = b.settled_invoices(SettleCursor(0)).await.unwrap();
    let r1 = next_settled(&mut replay, Duration::from_secs(5))
        .await
        .unwrap();
    let r2 = next_settled(&mut replay, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        (r1.cursor, r1.payment_hash),
        (first.cursor, first.payment_hash)
    );
    assert_eq!(
        (r2.cursor, r2.payment_hash),
        (second.cursor, second.payment_hash)
    );
    let r3 = next_settled(&mut replay, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        (r3.cursor, r3.payment_hash),
        (third.cursor, third.payment_hash)
    );
    assert!(
        next_settled(&mut replay, Duration::from_secs(1))
            .await
            .is_none()
    );
    let mut after_second = b.settled_invoices(second.cursor).await.unwrap();
    let again = next_settled(&mut after_second, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(again.payment_hash, third.payment_hash);
    let mut after_third = b.settled_invoices(third.cursor).await.unwrap();
    assert!(
        next_settled(&mut after_third, Duration::from_secs(1))
            .await
            .is_none()
    );
    eprintln!("scenario done in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_macaroon_a_wrong_certificate_and_a_stopped_node_are_refused() {
    let chain = chain();
    let dir = tempfile::tempdir().unwrap();
    let mut node = lnd(dir.path(), &chain);
    let good: Arc<dyn LightningNode> = Arc::new(adapter(&node).await);
    assert_eq!(good.info().await.unwrap().pubkey, node.pubkey());
    // Ready once the node has synced to the chain (it says so a moment after it starts).
    let ready = LightningCheck { node: good.clone() };
    eventually(
        "the readiness check passes",
        Duration::from_secs(60),
        || async { ready.check().await.ok() },
    )
    .await;

    // Attack: a macaroon of our own making. Refused as a credential error (an operator's
    // to fix, not a passing outage), and nothing is created.
    let forged = dir.path().join("forged.macaroon");
    std::fs::write(&forged, [7u8; 32]).unwrap();
    let mut with_forged = config(&node);
    with_forged.macaroon_path = forged;
    let forger = LndNode::connect(with_forged).await.unwrap();
    match forger.info().await {
        Err(LightningError::Unauthorized(m)) => eprintln!("forged macaroon: {m}"),
        other => panic!("forged macaroon: {other:?}"),
    }
    let refused = forger
        .create_invoice(&invoice_request(Some(1_000), "x", Duration::from_secs(60)))
        .await;
    assert!(
        matches!(refused, Err(LightningError::Unauthorized(_))),
        "{refused:?}"
    );
    let why = LightningCheck {
        node: Arc::new(forger),
    }
    .check()
    .await
    .unwrap_err();
    assert!(why.contains("credentials"), "{why}");

    // Attack: a server with another certificate (as a man in the middle would have).
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let other_cert = dir.path().join("other.cert");
    std::fs::write(&other_cert, other.cert.pem()).unwrap();
    let mut with_other = config(&node);
    with_other.tls_cert_path = other_cert;
    let fooled = LndNode::connect(with_other).await.unwrap();
    match fooled.info().await {
        Err(LightningError::Unavailable(m)) => eprintln!("wrong certificate: {m}"),
        other => panic!("wrong certificate: {other:?}"),
    }

    // Missing files are a configuration error, at connect.
    let mut missing = config(&node);
    missing.macaroon_path = dir.path().join("nope.macaroon");
    assert!(matches!(
        LndNode::connect(missing).await,
        Err(LightningError::Invalid(_))
    ));

    // The node stops: unavailable, quickly.
    node.kill();
    let start = Instant::now();
    match good.info().await {
        Err(LightningError::Unavailable(m)) => eprintln!("stopped node: {m}"),
        other => panic!("stopped node: {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    let why = ready.check().await.unwrap_err();
    assert!(why.contains("unavailable"), "{why}");
}
