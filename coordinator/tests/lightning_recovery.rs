//! A payment out cut off anywhere (the request dropped at every point from before its
//! row to after the node's answer, as when an instance dies) is finished once by another
//! instance's reconciler, from the node's own record: paid and debited once, or failed
//! and its hold released; a retry of the same invoice never pays it twice.
#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod common;
mod lightning_common;

use std::time::Duration;

use coordinator::amount::Sats;
use coordinator::bank::lightning::LnPayStatus;
use coordinator::lightning::{InvoiceDescription, InvoiceRequest, InvoiceState, LightningNode};
use lightning_common::{Net, balance, eventually, pay, with_node};
use sqlx::Row;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_send_cut_anywhere_is_finished_once_by_another_instance() {
    let net = Net::start().await;
    let config = lightning_common::paying_config(1_000_000);
    let t = common::bank_with(config).await;
    // The instance whose requests are cut runs no background tasks: it "dies".
    let dying = with_node(t.bank.clone(), &net).await;
    let survivor = with_node(common::second_instance(&dying).await, &net).await;
    let _tasks = survivor.spawn_lightning_tasks().unwrap();
    let alice = common::customer(&dying, "alice@example.com", 200_000).await;

    let mut paid_sat = 0;
    let cuts_ms = [0u64, 1, 2, 5, 10, 20, 35, 50, 80, 120, 200, 400];
    let mut outcomes = Vec::new();
    for (i, cut) in cuts_ms.iter().enumerate() {
        let amount = 1_000 + i as u64;
        let inv = net
            .b
            .create_invoice(&InvoiceRequest {
                amount: Some(Sats::new(amount).unwrap().to_msats()),
                description: InvoiceDescription::Memo(format!("cut {cut}")),
                expiry: Duration::from_secs(600),
            })
            .await
            .unwrap();
        let request = pay(alice.wallet, &inv.payment_request, None);
        let answered = tokio::time::timeout(
            Duration::from_millis(*cut),
            dying.ln_send(&alice.me, &request),
        )
        .await;
        // Whatever the cut, the payment ends final (or was never written).
        let status: Option<String> = eventually(
            "the payment is finished by the survivor",
            Duration::from_secs(60),
            || async {
                let row = sqlx::query(
                    "SELECT status FROM ln_payments WHERE payment_hash = $1 \
                     ORDER BY created_at DESC LIMIT 1",
                )
                .bind(inv.payment_hash.0.to_vec())
                .fetch_optional(dying.ledger().pool())
                .await
                .unwrap();
                match row.map(|r| r.get::<String, _>("status")) {
                    Some(s) if s == "PENDING" => None,
                    other => Some(other),
                }
            },
        )
        .await;
        // A retry of the same invoice: paid once in all.
        let retry = dying.ln_send(&alice.me, &request).await.unwrap();
        match status.as_deref() {
            Some("SUCCESS") => assert_eq!(retry.status, LnPayStatus::AlreadyPaid),
            _ => assert_eq!(retry.status, LnPayStatus::Success),
        }
        assert!(matches!(
            net.b.invoice(&inv.payment_hash).await.unwrap(),
            InvoiceState::Settled(_)
        ));
        paid_sat += amount;
        outcomes.push((*cut, answered.is_ok(), status));
        // Debited exactly once per invoice, no hold left behind.
        assert_eq!(
            balance(&dying, alice.wallet).await,
            (i64::try_from((200_000 - paid_sat) * 1_000).unwrap(), 0),
            "after cut {cut} ms: {outcomes:?}"
        );
    }
    eprintln!("cut (ms), answered before the cut, state the survivor found: {outcomes:?}");
    // Some cuts must have left work for the survivor, or the test proved nothing.
    assert!(
        outcomes
            .iter()
            .any(|(_, answered, s)| !answered && s.is_some()),
        "no cut landed between the reserve and the answer: {outcomes:?}"
    );
    let report = dying.ledger().verify().await.unwrap();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
}
