//! Faults at the bank level, over real Lightning (the bank's node and the outside one are
//! LND stand-ins over LDK nodes with a channel between them):
//! - a payment the recipient holds (an LND hold invoice) stays PENDING for a long time
//!   while two instances' reconcilers look at it, then fails: the funds come back once;
//! - the bank's node dies with a payment in flight and restarts on its data: nothing moves
//!   while it is down, sends and invoices are refused with a clear error, and the payment
//!   settles once after the restart, with its preimage, through the same adapter;
//! - the recipient's node restarts while it holds a payment of the bank's: it settles
//!   once afterwards;
//! - the node lost between the hold and the payment call: PENDING, not "nothing moved";
//! - an invoice for another network is refused before anything is written.
#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod common;
mod lightning_common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coordinator::amount::Sats;
use coordinator::api::ApiError;
use coordinator::bank::lightning::{InvoiceCreate, LightningRail, LnPayStatus};
use coordinator::bank::{Bank, BankConfig, BankError};
use coordinator::lightning::{
    InvoiceDescription, InvoiceRequest, InvoiceState, LightningNode, Preimage,
};
use lightning_common::flaky::Flaky;
use lightning_common::hold::{HoldClient, LndState, states_of};
use lightning_common::rows::{next_check, payments_for, postings, row_status, version};
use lightning_common::{Net, adapter, balance, eventually, ln_config, pay};

/// Long enough for any wait on a busy two-core machine; only a failure waits this long.
const PATIENCE: Duration = Duration::from_secs(120);
/// How long the first test keeps its payment held before the recipient gives up.
const HELD_AT_LEAST: Duration = Duration::from_secs(6);

fn bank_config() -> BankConfig {
    lightning_common::paying_config(500_000)
}

/// `bank` with `node`, answering PENDING after two seconds without an outcome.
async fn with(bank: Bank, node: Arc<dyn LightningNode>) -> Bank {
    let mut config = ln_config();
    config.pay_timeout = Duration::from_secs(2);
    bank.with_lightning(LightningRail::new(node, config).await.unwrap())
}

/// `bank` with the first node.
async fn with_node(bank: Bank, net: &Net) -> Bank {
    with(bank, Arc::new(adapter(&net.a_proc).await)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payment_held_long_then_failed_returns_the_funds_once() {
    let net = Net::start().await;
    let t = common::bank_with(bank_config()).await;
    let bank = with_node(t.bank.clone(), &net).await;
    let other = with_node(common::second_instance(&bank).await, &net).await;
    let _tasks = bank.spawn_lightning_tasks().unwrap();
    let _other_tasks = other.spawn_lightning_tasks().unwrap();
    let alice = common::customer(&bank, "alice@example.com", 100_000).await;
    let b = HoldClient::connect(&net.b_proc).await;
    let seen = b.subscribe().await;

    // An invoice for another network is refused before anything is written. The vector is
    // a mainnet no-amount invoice from the examples of BOLT 11 (lightning/bolts,
    // 11-payment-encoding.md: "Please make a donation of any amount using payment_hash
    // 0001020304050607080900010203040506070809000102030405060708090102 to me
    // @03e7156ae33b0a208d0744199163177e909e80176e55d97a2f221ede0f934dd9ad").
    let mainnet = "lnbc1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdpl2pkx2ctnv5sxxmmwwd5kgetjypeh2ursdae8g6twvus8g6rfwvs8qun0dfjkxaq9qrsgq357wnc5r2ueh7ck6q93dj32dlqnls087fxdwk8qakdyafkq3yap9us6v52vjjsrvywa6rt52cm9r9zqt8r2t7mlcwspyetp5h2tztugp9lfyql";
    let decoded = coordinator::lightning::decode_invoice(mainnet, bitcoin::Network::Bitcoin)
        .expect("the specification's vector decodes on mainnet");
    assert_eq!(
        decoded.payee,
        "03e7156ae33b0a208d0744199163177e909e80176e55d97a2f221ede0f934dd9ad"
    );
    let wrong = bank
        .ln_send(&alice.me, &pay(alice.wallet, mainnet, Some(1_000)))
        .await;
    assert!(
        matches!(&wrong, Err(BankError::Invalid(p)) if p.why == "for another network"),
        "{wrong:?}"
    );
    let probe = bank
        .ln_fee_probe(
            &alice.me,
            alice.wallet,
            mainnet,
            Some(Sats::new(1_000).unwrap()),
        )
        .await;
    assert!(
        matches!(&probe, Err(BankError::Invalid(p)) if p.why == "for another network"),
        "{probe:?}"
    );
    assert_eq!(payments_for(&bank, &decoded.payment_hash).await, 0);
    assert_eq!(balance(&bank, alice.wallet).await, (100_000_000, 0));

    // The recipient holds the payment: PENDING, amount and fee reserve held.
    let preimage = Preimage(rand::random());
    let hash = preimage.payment_hash();
    let request = b
        .add(&preimage, Sats::new(10_000).unwrap(), "held for long")
        .await;
    // Nothing to settle before a payment arrives, as LND says.
    let early = b.settle(&preimage).await.unwrap_err();
    assert!(early.message().contains("invoice still open"), "{early:?}");
    let before = version(&bank, alice.wallet).await;
    let started = Instant::now();
    let sent = bank
        .ln_send(&alice.me, &pay(alice.wallet, &request, None))
        .await
        .unwrap();
    assert_eq!(sent.status, LnPayStatus::Pending, "{sent:?}");
    let held = b.wait_for(&hash, LndState::Accepted).await;
    assert_eq!(held.amt_paid_msat, 10_000_000);
    assert!(
        held.r_preimage.is_empty(),
        "a held invoice shows no preimage"
    );
    // The adapter reads a held (accepted) invoice as still open.
    assert!(matches!(
        net.b.invoice(&hash).await.unwrap(),
        InvoiceState::Open
    ));
    // 10,000 sats and a reserve of 50 (0.5 %).
    let holding = (100_000_000, -10_050_000);
    assert_eq!(balance(&bank, alice.wallet).await, holding);
    assert_eq!(
        bank.ln_payment_status(&alice.me, &hash).await.unwrap(),
        (LnPayStatus::Pending, None)
    );
    let lines = bank
        .ln_wallet_transactions(alice.wallet, &hash)
        .await
        .unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].status, "PENDING");
    // A preimage of no invoice settles nothing.
    let stranger = b.settle(&Preimage(rand::random())).await.unwrap_err();
    assert!(
        stranger.message().contains("unable to locate invoice"),
        "{stranger:?}"
    );

    // Both instances' reconcilers look at it again and again, for seconds; nothing
    // changes. Each look moves the payment's lease.
    let leases = Mutex::new(BTreeSet::new());
    eventually(
        "the reconcilers look at the held payment for several seconds",
        PATIENCE,
        || async {
            assert_eq!(row_status(&bank, sent.payment_id).await, "PENDING");
            assert_eq!(balance(&bank, alice.wallet).await, holding);
            assert_eq!(version(&bank, alice.wallet).await, before + 1);
            let lease = next_check(&bank, sent.payment_id).await;
            let mut leases = leases.lock().unwrap();
            leases.insert(lease);
            (leases.len() >= 8 && started.elapsed() >= HELD_AT_LEAST).then_some(())
        },
    )
    .await;
    eprintln!(
        "held PENDING for {:?}; the reconcilers looked at it at least {} times",
        started.elapsed(),
        leases.lock().unwrap().len()
    );
    assert_eq!(
        postings(&bank, sent.payment_id).await,
        [("hold".to_string(), "ln_send_hold".to_string())]
    );
    assert_eq!(
        b.lookup(&hash).await.state,
        LndState::Accepted as i32,
        "still held"
    );

    // The recipient gives up: the payment fails at the node, the funds come back once.
    let cancelled = Instant::now();
    b.cancel(&hash).await.unwrap();
    b.wait_for(&hash, LndState::Canceled).await;
    eventually("the payment is FAILURE", PATIENCE, || async {
        (row_status(&bank, sent.payment_id).await == "FAILURE").then_some(())
    })
    .await;
    eprintln!(
        "cancelled by the recipient to FAILURE at the bank: {:?}",
        cancelled.elapsed()
    );
    assert_eq!(balance(&bank, alice.wallet).await, (100_000_000, 0));
    assert_eq!(version(&bank, alice.wallet).await, before + 2);
    let done = postings(&bank, sent.payment_id).await;
    assert_eq!(
        done,
        [
            ("hold".to_string(), "ln_send_hold".to_string()),
            ("final".to_string(), "ln_send_failed".to_string())
        ]
    );
    assert_eq!(
        bank.ln_payment_status(&alice.me, &hash).await.unwrap(),
        (LnPayStatus::Failure, None)
    );
    let lines = bank
        .ln_wallet_transactions(alice.wallet, &hash)
        .await
        .unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].status, "FAILURE");

    // More passes find nothing to do.
    for instance in [&bank, &other] {
        let report = instance.ln_reconcile().await.unwrap();
        assert_eq!(report.finished, 0, "{report:?}");
    }
    // A finish replayed (an instance that read the payment PENDING before another
    // finished it): the row is made PENDING again and due, and the reconcilers finish it
    // again from the node's record; the release is not posted twice.
    sqlx::query(
        "UPDATE ln_payments SET status = 'PENDING', failure_reason = NULL, finished_at = NULL, \
             next_check_at = now() WHERE id = $1",
    )
    .bind(sent.payment_id.as_uuid())
    .execute(bank.ledger().pool())
    .await
    .unwrap();
    eventually("the replayed finish is done", PATIENCE, || async {
        (row_status(&bank, sent.payment_id).await == "FAILURE").then_some(())
    })
    .await;
    assert_eq!(balance(&bank, alice.wallet).await, (100_000_000, 0));
    assert_eq!(version(&bank, alice.wallet).await, before + 2);
    assert_eq!(postings(&bank, sent.payment_id).await, done);

    // Paying the same invoice again is a new attempt (only a live attempt blocks one); the
    // recipient refuses it (cancelled), so it fails too and returns its funds at once.
    let again = bank
        .ln_send(&alice.me, &pay(alice.wallet, &request, None))
        .await
        .unwrap();
    assert_eq!(again.status, LnPayStatus::Failure, "{again:?}");
    assert_ne!(again.payment_id, sent.payment_id);
    assert_eq!(balance(&bank, alice.wallet).await, (100_000_000, 0));
    assert_eq!(version(&bank, alice.wallet).await, before + 4);
    assert_eq!(payments_for(&bank, &hash).await, 2);
    assert_eq!(postings(&bank, again.payment_id).await.len(), 2);
    // Settling a cancelled hold invoice is refused, as LND refuses it.
    let late = b.settle(&preimage).await.unwrap_err();
    assert!(
        late.message().contains("invoice already canceled"),
        "{late:?}"
    );

    // SubscribeInvoices reported each state change of the hold invoice, in order.
    let expected = [
        LndState::Open as i32,
        LndState::Accepted as i32,
        LndState::Canceled as i32,
    ];
    eventually("the invoice stream shows the states", PATIENCE, || async {
        (states_of(&seen, &hash) == expected).then_some(())
    })
    .await;

    let report = bank.ledger().verify().await.unwrap();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_banks_node_restarts_mid_payment() {
    let mut net = Net::start().await;
    let t = common::bank_with(bank_config()).await;
    let bank = with_node(t.bank.clone(), &net).await;
    let _tasks = bank.spawn_lightning_tasks().unwrap();
    // An instance without background tasks, whose reconciler passes the test runs.
    let probe = with_node(common::second_instance(&bank).await, &net).await;
    let alice = common::customer(&bank, "alice@example.com", 100_000).await;
    let b = HoldClient::connect(&net.b_proc).await;

    let preimage = Preimage(rand::random());
    let hash = preimage.payment_hash();
    let request = b
        .add(&preimage, Sats::new(20_000).unwrap(), "held over a restart")
        .await;
    let before = version(&bank, alice.wallet).await;
    let sent = bank
        .ln_send(&alice.me, &pay(alice.wallet, &request, None))
        .await
        .unwrap();
    assert_eq!(sent.status, LnPayStatus::Pending, "{sent:?}");
    b.wait_for(&hash, LndState::Accepted).await;
    // 20,000 sats and a reserve of 100.
    let holding = (100_000_000, -20_100_000);
    assert_eq!(balance(&bank, alice.wallet).await, holding);

    // The bank's node dies.
    tokio::task::block_in_place(|| net.a_proc.kill());
    let node = bank.lightning().unwrap().node().clone();
    let down = node.info().await;
    assert!(
        matches!(
            down,
            Err(coordinator::lightning::LightningError::Unavailable(_))
        ),
        "{down:?}"
    );
    // The reconciler keeps the payment PENDING and moves nothing.
    let report = eventually(
        "a reconciler pass looks at the payment",
        PATIENCE,
        || async {
            let r = probe.ln_reconcile().await.unwrap();
            (r.claimed > 0).then_some(r)
        },
    )
    .await;
    assert_eq!(
        (report.finished, report.pending),
        (0, report.claimed),
        "{report:?}"
    );
    assert_eq!(row_status(&bank, sent.payment_id).await, "PENDING");
    assert_eq!(balance(&bank, alice.wallet).await, holding);
    assert_eq!(version(&bank, alice.wallet).await, before + 1);

    // New payments and invoices are refused with an error that names the node, and
    // nothing is written or held.
    let other_invoice = net
        .b
        .create_invoice(&InvoiceRequest {
            amount: Some(Sats::new(5_000).unwrap().to_msats()),
            description: InvoiceDescription::Memo("while the bank's node is down".into()),
            expiry: Duration::from_secs(3600),
        })
        .await
        .unwrap();
    let other_request = pay(alice.wallet, &other_invoice.payment_request, None);
    let refused = bank.ln_send(&alice.me, &other_request).await.unwrap_err();
    assert!(
        matches!(refused, BankError::LightningUnavailable),
        "{refused:?}"
    );
    assert!(
        refused
            .to_string()
            .contains("Lightning node is unavailable"),
        "{refused}"
    );
    let api = ApiError::from(&refused);
    assert_eq!(
        (api.code, api.http_status),
        ("LIGHTNING_UNAVAILABLE", 503),
        "{api:?}"
    );
    assert!(
        api.message.contains("Lightning node is unavailable"),
        "{api:?}"
    );
    assert_eq!(payments_for(&bank, &other_invoice.payment_hash).await, 0);
    let probe_fee = bank
        .ln_fee_probe(
            &alice.me,
            alice.wallet,
            &other_invoice.payment_request,
            None,
        )
        .await;
    assert!(
        matches!(probe_fee, Err(BankError::LightningUnavailable)),
        "{probe_fee:?}"
    );
    let invoices = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM ln_invoices WHERE wallet_id = $1")
            .bind(alice.wallet.as_uuid())
            .fetch_one(bank.ledger().pool())
            .await
            .unwrap()
    };
    let no_invoice = bank
        .ln_invoice_create(
            Some(&alice.me),
            &InvoiceCreate {
                wallet_id: Some(alice.wallet),
                amount: Some(Sats::new(1_000).unwrap()),
                ..InvoiceCreate::default()
            },
        )
        .await;
    assert!(
        matches!(no_invoice, Err(BankError::LightningUnavailable)),
        "{no_invoice:?}"
    );
    assert_eq!(invoices().await, 0);
    assert_eq!(balance(&bank, alice.wallet).await, holding);
    assert_eq!(version(&bank, alice.wallet).await, before + 1);

    // The node comes back on its data and address; the bank's adapter finds it again.
    let restarting = Instant::now();
    tokio::task::block_in_place(|| net.a_proc.restart()).expect("the node restarts");
    let ready = restarting.elapsed();
    let refused_after = Mutex::new(0);
    eventually("the adapter reaches the node again", PATIENCE, || async {
        let info = node.info().await;
        if info.is_err() {
            *refused_after.lock().unwrap() += 1;
        }
        info.ok()
    })
    .await;
    eprintln!(
        "restart: ready after {ready:?}; the adapter answered after {:?} ({} calls refused after the ready line)",
        restarting.elapsed(),
        refused_after.lock().unwrap()
    );
    eventually("the channel is usable again", PATIENCE, || async {
        let channels = node.channels().await.ok()?;
        channels.iter().any(|c| c.usable).then_some(())
    })
    .await;
    // Still in flight after the restart, at the node as at the bank.
    assert!(
        matches!(
            node.payment(&hash).await.unwrap(),
            Some(coordinator::lightning::PaymentState::InFlight)
        ),
        "the node's record of the payment survives its restart"
    );
    assert_eq!(row_status(&bank, sent.payment_id).await, "PENDING");
    assert_eq!(balance(&bank, alice.wallet).await, holding);

    // The recipient settles: the bank records SUCCESS with the preimage, debits once and
    // returns the fee reserve.
    let settling = Instant::now();
    b.settle(&preimage).await.unwrap();
    b.wait_for(&hash, LndState::Settled).await;
    eventually("the payment is SUCCESS", PATIENCE, || async {
        (row_status(&bank, sent.payment_id).await == "SUCCESS").then_some(())
    })
    .await;
    eprintln!(
        "settled by the recipient to SUCCESS at the bank: {:?}",
        settling.elapsed()
    );
    // A direct channel: no routing fee.
    assert_eq!(balance(&bank, alice.wallet).await, (80_000_000, 0));
    assert_eq!(version(&bank, alice.wallet).await, before + 2);
    assert_eq!(
        postings(&bank, sent.payment_id).await,
        [
            ("hold".to_string(), "ln_send_hold".to_string()),
            ("final".to_string(), "ln_send".to_string())
        ]
    );
    let stored: Vec<u8> = sqlx::query_scalar("SELECT preimage FROM ln_payments WHERE id = $1")
        .bind(sent.payment_id.as_uuid())
        .fetch_one(bank.ledger().pool())
        .await
        .unwrap();
    assert_eq!(stored, preimage.0.to_vec());
    assert_eq!(
        bank.ln_payment_status(&alice.me, &hash).await.unwrap(),
        (LnPayStatus::Success, Some(Sats::ZERO))
    );
    // Settled again: LND answers success and nothing moves.
    b.settle(&preimage).await.unwrap();
    for instance in [&bank, &probe] {
        instance.ln_reconcile().await.unwrap();
    }
    assert_eq!(balance(&bank, alice.wallet).await, (80_000_000, 0));

    // What was refused while the node was down works now, once.
    let retried = bank.ln_send(&alice.me, &other_request).await.unwrap();
    assert_eq!(retried.status, LnPayStatus::Success, "{retried:?}");
    assert_eq!(balance(&bank, alice.wallet).await, (75_000_000, 0));
    assert!(matches!(
        net.b.invoice(&other_invoice.payment_hash).await.unwrap(),
        InvoiceState::Settled(_)
    ));
    let invoice = bank
        .ln_invoice_create(
            Some(&alice.me),
            &InvoiceCreate {
                wallet_id: Some(alice.wallet),
                amount: Some(Sats::new(1_000).unwrap()),
                ..InvoiceCreate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(invoices().await, 1);
    // Paid from outside: the settlement stream was opened again on the restarted node.
    let paid = net
        .b
        .pay(&coordinator::lightning::PayRequest {
            payment_request: invoice.payment_request.clone(),
            payment_hash: invoice.payment_hash,
            amount: None,
            max_fee: Sats::new(50).unwrap().to_msats(),
            timeout: Duration::from_secs(30),
        })
        .await
        .unwrap();
    assert!(
        matches!(paid, coordinator::lightning::PaymentState::Succeeded { .. }),
        "{paid:?}"
    );
    eventually("the invoice is credited", PATIENCE, || async {
        (balance(&bank, alice.wallet).await == (76_000_000, 0)).then_some(())
    })
    .await;

    // The other side: the recipient's node restarts while it holds a payment of the
    // bank's; it still holds it afterwards, and its settlement reaches the bank once.
    let kept = Preimage(rand::random());
    let kept_hash = kept.payment_hash();
    let kept_request = b
        .add(
            &kept,
            Sats::new(2_000).unwrap(),
            "held over the recipient's restart",
        )
        .await;
    let sent = bank
        .ln_send(&alice.me, &pay(alice.wallet, &kept_request, None))
        .await
        .unwrap();
    assert_eq!(sent.status, LnPayStatus::Pending, "{sent:?}");
    b.wait_for(&kept_hash, LndState::Accepted).await;
    tokio::task::block_in_place(|| net.b_proc.restart()).expect("the recipient restarts");
    assert_eq!(
        b.wait_for(&kept_hash, LndState::Accepted)
            .await
            .amt_paid_msat,
        2_000_000
    );
    eventually("the channel is usable again", PATIENCE, || async {
        let channels = node.channels().await.ok()?;
        channels.iter().any(|c| c.usable).then_some(())
    })
    .await;
    assert_eq!(row_status(&bank, sent.payment_id).await, "PENDING");
    b.settle(&kept).await.unwrap();
    b.wait_for(&kept_hash, LndState::Settled).await;
    eventually("the held payment is SUCCESS", PATIENCE, || async {
        (row_status(&bank, sent.payment_id).await == "SUCCESS").then_some(())
    })
    .await;
    assert_eq!(balance(&bank, alice.wallet).await, (74_000_000, 0));

    // The node lost between the hold and the call that pays (as one request sees it):
    // it cannot say whether it took the payment, so the answer is PENDING with the funds
    // held, not "nothing moved"; the reconciler, which reaches the node, finishes it (never
    // taken: the hold is released once), and a retry pays.
    let flaky = Arc::new(Flaky {
        inner: Arc::new(adapter(&net.a_proc).await),
        cut: AtomicBool::new(false),
    });
    // The same bank, reaching its node through the switch.
    let cut_off = with(t.bank.clone(), flaky.clone()).await;
    let lost_invoice = net
        .b
        .create_invoice(&InvoiceRequest {
            amount: Some(Sats::new(3_000).unwrap().to_msats()),
            description: InvoiceDescription::Memo("lost on the way".into()),
            expiry: Duration::from_secs(3600),
        })
        .await
        .unwrap();
    let lost_request = pay(alice.wallet, &lost_invoice.payment_request, None);
    flaky.cut.store(true, Ordering::SeqCst);
    let lost = cut_off.ln_send(&alice.me, &lost_request).await.unwrap();
    assert_eq!(lost.status, LnPayStatus::Pending, "{lost:?}");
    eventually("the lost payment is finished", PATIENCE, || async {
        (row_status(&bank, lost.payment_id).await == "FAILURE").then_some(())
    })
    .await;
    assert_eq!(balance(&bank, alice.wallet).await, (74_000_000, 0));
    assert_eq!(
        postings(&bank, lost.payment_id).await,
        [
            ("hold".to_string(), "ln_send_hold".to_string()),
            ("final".to_string(), "ln_send_failed".to_string())
        ]
    );
    assert!(matches!(
        net.b.invoice(&lost_invoice.payment_hash).await.unwrap(),
        InvoiceState::Open
    ));
    let retried = bank.ln_send(&alice.me, &lost_request).await.unwrap();
    assert_eq!(retried.status, LnPayStatus::Success, "{retried:?}");
    assert_eq!(balance(&bank, alice.wallet).await, (71_000_000, 0));

    let report = bank.ledger().verify().await.unwrap();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
}
