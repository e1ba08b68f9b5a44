//! The bank's Lightning payments over a real channel: the bank's node is an LND stand-in
//! (LND's gRPC over an LDK node) reached through the LND adapter; the outside world is a
//! second one. Receiving (settlements credited once, from a cursor, by every instance),
//! sending (fee reserve held and returned, the same invoice never paid twice), invoices of
//! the bank paid inside the ledger, and the refusals that must move nothing.
#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod common;
mod lightning_common;

use std::time::Duration;

use coordinator::amount::{Msats, Sats};
use coordinator::bank::BankError;
use coordinator::bank::lightning::{InvoiceCreate, InvoiceStatus, LnPayStatus};
use coordinator::lightning::{
    InvoiceDescription, InvoiceRequest, LightningNode, PayRequest, PaymentState, decode_invoice,
};
use lightning_common::{Net, REGTEST, balance, eventually, pay, with_node};

fn invoice_on(amount_sat: Option<u64>, expiry: Duration) -> InvoiceRequest {
    InvoiceRequest {
        amount: amount_sat.map(|s| Sats::new(s).unwrap().to_msats()),
        description: InvoiceDescription::Memo("from outside".into()),
        expiry,
    }
}

/// The outside node pays `request` (amount for a no-amount invoice).
async fn outside_pays(net: &Net, request: &str, amount_sat: Option<u64>) -> PaymentState {
    let d = decode_invoice(request, REGTEST).unwrap();
    net.b
        .pay(&PayRequest {
            payment_request: request.into(),
            payment_hash: d.payment_hash,
            amount: amount_sat.map(|s| Sats::new(s).unwrap().to_msats()),
            max_fee: Msats::new(50_000).unwrap(),
            timeout: Duration::from_secs(30),
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receive_and_send_over_real_lightning() {
    let net = Net::start().await;
    let config = lightning_common::paying_config(100_000);
    let t = common::bank_with(config).await;
    let bank = with_node(t.bank.clone(), &net).await;
    let _tasks = bank.spawn_lightning_tasks().unwrap();
    // A second instance on the same database runs its own watcher and reconciler.
    let other = with_node(common::second_instance(&bank).await, &net).await;
    let _other_tasks = other.spawn_lightning_tasks().unwrap();

    let alice = common::customer(&bank, "alice@example.com", 0).await;
    let bob = common::customer(&bank, "bob@example.com", 0).await;

    // Receive: an invoice of Alice's, paid from outside, credited once.
    let inv = bank
        .ln_invoice_create(
            Some(&alice.me),
            &InvoiceCreate {
                wallet_id: Some(alice.wallet),
                amount: Some(Sats::new(50_000).unwrap()),
                memo: Some("for alice".into()),
                ..InvoiceCreate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(inv.status, InvoiceStatus::Pending);
    let paid = outside_pays(&net, &inv.payment_request, None).await;
    assert!(matches!(paid, PaymentState::Succeeded { .. }), "{paid:?}");
    eventually("Alice is credited", Duration::from_secs(30), || async {
        (balance(&bank, alice.wallet).await.0 == 50_000_000).then_some(())
    })
    .await;
    let seen = bank.ln_invoice_by_hash(&inv.payment_hash).await.unwrap();
    assert_eq!(seen.status, InvoiceStatus::Paid);
    let preimage = seen.preimage.clone().unwrap();
    assert_eq!(preimage.payment_hash(), inv.payment_hash);
    // The same settlement handled again (a replay, another instance) credits nothing more.
    let settled = match net.a.invoice(&inv.payment_hash).await.unwrap() {
        coordinator::lightning::InvoiceState::Settled(s) => s,
        other => panic!("{other:?}"),
    };
    other.ln_credit_settlement(&settled).await.unwrap();
    bank.ln_credit_settlement(&settled).await.unwrap();
    assert_eq!(balance(&bank, alice.wallet).await, (50_000_000, 0));
    // The history shows it as a Lightning receipt with its preimage.
    let lines = bank
        .ln_wallet_transactions(alice.wallet, &inv.payment_hash)
        .await
        .unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].status, "SUCCESS");
    assert_eq!(lines[0].amount.to_sat(), 50_000);
    assert_eq!(
        lines[0].lightning.as_ref().unwrap().preimage.as_ref(),
        Some(&preimage)
    );

    // A no-amount invoice, on behalf of Bob (no credential), paid 1,234 sats.
    let open = bank
        .ln_invoice_create(
            None,
            &InvoiceCreate {
                wallet_id: Some(bob.wallet),
                ..InvoiceCreate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(open.amount, None);
    outside_pays(&net, &open.payment_request, Some(1_234)).await;
    eventually("Bob is credited", Duration::from_secs(30), || async {
        (balance(&bank, bob.wallet).await.0 == 1_234_000).then_some(())
    })
    .await;

    // Send: Alice pays an outside invoice; the reserve is held, then returned.
    let out = net
        .b
        .create_invoice(&invoice_on(Some(20_000), Duration::from_secs(600)))
        .await
        .unwrap();
    let fee = bank
        .ln_fee_probe(&alice.me, alice.wallet, &out.payment_request, None)
        .await
        .unwrap();
    assert_eq!(fee, Sats::ZERO, "a direct channel costs no routing fee");
    let sent = bank
        .ln_send(&alice.me, &pay(alice.wallet, &out.payment_request, None))
        .await
        .unwrap();
    assert_eq!(sent.status, LnPayStatus::Success);
    assert_eq!(balance(&bank, alice.wallet).await, (30_000_000, 0));
    assert!(matches!(
        net.b.invoice(&out.payment_hash).await.unwrap(),
        coordinator::lightning::InvoiceState::Settled(_)
    ));
    // Again: already paid, nothing moves; from Bob: refused.
    let again = bank
        .ln_send(&alice.me, &pay(alice.wallet, &out.payment_request, None))
        .await
        .unwrap();
    assert_eq!(again.status, LnPayStatus::AlreadyPaid);
    assert!(matches!(
        bank.ln_send(&bob.me, &pay(bob.wallet, &out.payment_request, None))
            .await,
        Err(BankError::InvoiceAlreadyPaid)
    ));
    assert_eq!(balance(&bank, alice.wallet).await, (30_000_000, 0));
    assert_eq!(balance(&bank, bob.wallet).await, (1_234_000, 0));

    // An invoice of the bank's own node: paid inside the ledger, then cancelled at the
    // node, so paying it over Lightning fails.
    let bobs = bank
        .ln_invoice_create(
            Some(&bob.me),
            &InvoiceCreate {
                wallet_id: Some(bob.wallet),
                amount: Some(Sats::new(5_000).unwrap()),
                ..InvoiceCreate::default()
            },
        )
        .await
        .unwrap();
    let internal = bank
        .ln_send(&alice.me, &pay(alice.wallet, &bobs.payment_request, None))
        .await
        .unwrap();
    assert_eq!(internal.status, LnPayStatus::Success);
    assert_eq!(balance(&bank, alice.wallet).await, (25_000_000, 0));
    assert_eq!(balance(&bank, bob.wallet).await, (6_234_000, 0));
    assert_eq!(
        bank.ln_invoice_by_hash(&bobs.payment_hash)
            .await
            .unwrap()
            .status,
        InvoiceStatus::Paid
    );
    let late = outside_pays(&net, &bobs.payment_request, None).await;
    assert!(matches!(late, PaymentState::Failed(_)), "{late:?}");
    assert_eq!(balance(&bank, bob.wallet).await, (6_234_000, 0));
    // Paying one's own invoice is refused.
    let alices = bank
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
    assert!(matches!(
        bank.ln_send(&alice.me, &pay(alice.wallet, &alices.payment_request, None))
            .await,
        Err(BankError::SelfPayment)
    ));

    // Refusals that move nothing.
    let before = (
        balance(&bank, alice.wallet).await,
        balance(&bank, bob.wallet).await,
    );
    let big = net
        .b
        .create_invoice(&invoice_on(Some(60_000), Duration::from_secs(600)))
        .await
        .unwrap();
    assert!(matches!(
        bank.ln_send(&alice.me, &pay(alice.wallet, &big.payment_request, None))
            .await,
        Err(BankError::InsufficientBalance)
    ));
    let over_limit = net
        .b
        .create_invoice(&invoice_on(Some(200_000), Duration::from_secs(600)))
        .await
        .unwrap();
    assert!(matches!(
        bank.ln_send(
            &alice.me,
            &pay(alice.wallet, &over_limit.payment_request, None)
        )
        .await,
        Err(BankError::LimitExceeded { .. })
    ));
    assert!(matches!(
        bank.ln_send(&alice.me, &pay(alice.wallet, "lnbcrt1garbage", None))
            .await,
        Err(BankError::Invalid(_))
    ));
    let no_amount = net
        .b
        .create_invoice(&invoice_on(None, Duration::from_secs(600)))
        .await
        .unwrap();
    assert!(matches!(
        bank.ln_send(
            &alice.me,
            &pay(alice.wallet, &no_amount.payment_request, None)
        )
        .await,
        Err(BankError::Invalid(_))
    ));
    let short = net
        .b
        .create_invoice(&invoice_on(Some(1_000), Duration::from_secs(1)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(matches!(
        bank.ln_send(&alice.me, &pay(alice.wallet, &short.payment_request, None))
            .await,
        Err(BankError::InvoiceExpired)
    ));
    assert_eq!(
        (
            balance(&bank, alice.wallet).await,
            balance(&bank, bob.wallet).await
        ),
        before
    );

    // A payment the recipient refuses (its invoice cancelled): FAILURE, funds returned
    // exactly once.
    let cancelled = net
        .b
        .create_invoice(&invoice_on(Some(3_000), Duration::from_secs(600)))
        .await
        .unwrap();
    net.b.cancel_invoice(&cancelled.payment_hash).await.unwrap();
    let failed = bank
        .ln_send(
            &alice.me,
            &pay(alice.wallet, &cancelled.payment_request, None),
        )
        .await
        .unwrap();
    assert_eq!(failed.status, LnPayStatus::Failure);
    assert_eq!(balance(&bank, alice.wallet).await, before.0);

    let report = bank.ledger().verify().await.unwrap();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
}
