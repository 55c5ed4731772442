//! payd as real processes: the payer's payd is killed (SIGKILL) while a payment is in flight, then
//! restarted. The payment is neither lost nor sent twice, and the payee is paid exactly once.
//!
//! To hold the payment in flight without timing tricks, the payee's payd is down while the payer
//! sends: the HTLC leaves the payer, but nobody on the other side answers it.

use lcp::bus::api::payd::{BalanceRow, InvoiceState, PaydApi, PaymentState};
use lcp::bus::api::Body;
use lcp::bus::{Bus, ServiceId};
use lcp::testkit::{poll_until, ProcessNode, PATIENCE};
use sha2::{Digest, Sha256};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

async fn payd(c: &Bus, req: PaydApi) -> Result<PaydApi, lcp::bus::BusError> {
    match c.request(&ServiceId::Payd, Body::Payd(req), T).await? {
        Body::Payd(p) => Ok(p),
        other => panic!("{other:?}"),
    }
}

async fn balance(c: &Bus) -> Option<BalanceRow> {
    match payd(c, PaydApi::Balance).await.ok()? {
        PaydApi::BalanceInfo(b) => Some(b),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payer_payd_killed_mid_payment_neither_loses_nor_repeats_it() {
    let mut requester = ProcessNode::start(&[]).unwrap();
    let mut provider = ProcessNode::start(&[]).unwrap();
    let (rc, pc) = (requester.client().await.unwrap(), provider.client().await.unwrap());
    let (provider_id, listen) = lcp::testkit::peerd_address(&pc).await.expect("peerd address");
    for c in [&rc, &pc] {
        poll_until(PATIENCE, "payd up", || async { balance(c).await }).await.unwrap();
    }
    lcp::testkit::connect_with_channel(&rc, &provider_id, listen, true, 200_000).await.unwrap();
    let p0 = poll_until(PATIENCE, "provider's channel usable", || async {
        balance(&pc).await.filter(|b| b.usable_channels == 1)
    })
    .await
    .unwrap();
    let amount = 50_000;
    let (bolt11, hash) =
        match payd(&pc, PaydApi::CreateInvoice { amount_msat: amount, description_hash: [0x77; 32], expiry_secs: 600 })
            .await
            .unwrap()
        {
            PaydApi::Invoice { bolt11, payment_hash } => (bolt11, payment_hash),
            other => panic!("{other:?}"),
        };

    // The payee's payd is down: the payment goes out and stays in flight.
    provider.kill("payd").unwrap();
    let e = payd(&rc, PaydApi::Pay { bolt11: bolt11.clone(), max_fee_msat: 1_000, timeout_secs: 2 })
        .await
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("deadline_exceeded:") && e.contains("still in flight"), "{e}");
    match payd(&rc, PaydApi::ListPayments).await.unwrap() {
        PaydApi::Payments(v) => assert_eq!((v.len(), v[0].state), (1, PaymentState::Pending)),
        other => panic!("{other:?}"),
    }

    // The crash: the payer's payd dies with the payment in flight. Both come back.
    requester.kill("payd").unwrap();
    provider.start_daemon("payd").unwrap();
    requester.start_daemon("payd").unwrap();

    // Asking again finds the recorded attempt and waits for it; it completes once the peers have
    // reconnected and reestablished the channel.
    let paid = poll_until(Duration::from_secs(60), "payment completes after the restart", || async {
        match payd(&rc, PaydApi::Pay { bolt11: bolt11.clone(), max_fee_msat: 1_000, timeout_secs: 5 }).await {
            Ok(p @ PaydApi::Paid { .. }) => Some(p),
            _ => None,
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nrequester payd log:\n{}", requester.log("payd")));
    let preimage = match paid {
        PaydApi::Paid { payment_hash, preimage, amount_msat, .. } => {
            assert_eq!((payment_hash, amount_msat), (hash, amount));
            assert_eq!(<[u8; 32]>::from(Sha256::digest(preimage)), hash);
            preimage
        }
        other => panic!("{other:?}"),
    };
    // One record, succeeded; the payee settled the invoice once, for the amount.
    match payd(&rc, PaydApi::ListPayments).await.unwrap() {
        PaydApi::Payments(v) => {
            assert_eq!((v.len(), v[0].state, v[0].preimage), (1, PaymentState::Succeeded, Some(preimage)))
        }
        other => panic!("{other:?}"),
    }
    let inv = poll_until(PATIENCE, "invoice settled", || async {
        match payd(&pc, PaydApi::LookupInvoice { payment_hash: hash }).await.ok()? {
            PaydApi::InvoiceInfo(Some(i)) if i.state == InvoiceState::Settled => Some(i),
            _ => None,
        }
    })
    .await
    .unwrap();
    assert_eq!(inv.amount_received_msat, Some(amount));
    // Paid exactly once: what the payee can receive shrank by the amount, not twice the amount.
    let p1 = poll_until(PATIENCE, "payee balance", || async {
        balance(&pc).await.filter(|b| b.inbound_msat + amount == p0.inbound_msat)
    })
    .await
    .unwrap();
    assert_eq!((p1.invoices_settled, p1.received_msat), (1, amount));
    // And again: the first outcome, nothing new.
    match payd(&rc, PaydApi::Pay { bolt11, max_fee_msat: 1_000, timeout_secs: 5 }).await.unwrap() {
        PaydApi::Paid { preimage: again, .. } => assert_eq!(again, preimage),
        other => panic!("{other:?}"),
    }
    let r = balance(&rc).await.unwrap();
    assert_eq!((r.payments_succeeded, r.payments_pending, r.sent_msat), (1, 0, amount));
    assert_eq!(balance(&pc).await.unwrap().inbound_msat + amount, p0.inbound_msat);
    rc.close();
    pc.close();
}
