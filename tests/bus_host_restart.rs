//! The bus host restarts under a busy channel. With services as separate processes, lcpd runs the
//! node's bus broker; killing it (SIGKILL) loses the channel messages between peerd and payd that
//! were on the bus at that moment. Nothing may stall for it: payd sees the broker's new epoch when
//! it registers again, ends its channel sessions and has peerd end them, so the peers reconnect and
//! LDK reestablishes the channel at once (not when LDK times the peer out, about 100 s later).
//!
//! Two nodes as real processes with a channel; payments flow from the requester to the provider
//! without pause while the requester's lcpd, then the provider's, is killed and started again,
//! several times. After each restart a new payment must succeed within [`BACK_WITHIN`], and at the
//! end every payment has a definite outcome that both nodes agree on.

use lcp::bus::api::payd::{InvoiceState, PaydApi, PaymentState};
use lcp::bus::api::Body;
use lcp::bus::{Bus, BusError, ServiceId};
use lcp::testkit::{poll_until, wait_services, ProcessNode, PATIENCE};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);
/// How soon after the bus host is back a new payment must have gone through.
const BACK_WITHIN: Duration = Duration::from_secs(20);
/// Payers running at once.
const PAYERS: usize = 3;
const AMOUNT: u64 = 20_000;

async fn payd(c: &Bus, req: PaydApi) -> Result<PaydApi, BusError> {
    match c.request(&ServiceId::Payd, Body::Payd(req), T).await? {
        Body::Payd(p) => Ok(p),
        other => panic!("{other:?}"),
    }
}

async fn invoice(pc: &Bus, tag: u8) -> Option<String> {
    let req = PaydApi::CreateInvoice { amount_msat: AMOUNT, description_hash: [tag; 32], expiry_secs: 3600 };
    match payd(pc, req).await.ok()? {
        PaydApi::Invoice { bolt11, .. } => Some(bolt11),
        _ => None,
    }
}

async fn pay(rc: &Bus, bolt11: &str, timeout_secs: u32) -> bool {
    let req = PaydApi::Pay { bolt11: bolt11.to_string(), max_fee_msat: 1_000, timeout_secs };
    matches!(payd(rc, req).await, Ok(PaydApi::Paid { .. }))
}

/// Pays fresh invoices one after the other until `stop`, ignoring failures (the buses go down under
/// it); counts the payments that succeeded.
async fn payer(rc: Bus, pc: Bus, stop: Arc<AtomicBool>, paid: Arc<AtomicUsize>, tag: u8) {
    while !stop.load(Ordering::Relaxed) {
        let Some(bolt11) = invoice(&pc, tag).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if pay(&rc, &bolt11, 5).await {
            paid.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn logs(n: &ProcessNode) -> String {
    ["lcpd", "peerd", "payd"].iter().map(|d| format!("--- {d}\n{}", n.log(d))).collect::<Vec<_>>().join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bus_host_killed_under_payments_the_channel_recovers_at_once() {
    let mut requester = ProcessNode::start(&[]).unwrap();
    let mut provider = ProcessNode::start(&[]).unwrap();
    let (rc, pc) = (requester.client().await.unwrap(), provider.client().await.unwrap());
    let (provider_id, listen) = lcp::testkit::peerd_address(&pc).await.expect("peerd address");
    for c in [&rc, &pc] {
        wait_services(c, &[ServiceId::Peerd, ServiceId::Payd, ServiceId::Lcpd]).await.unwrap();
    }
    lcp::testkit::connect_with_channel(&rc, &provider_id, listen, true, 1_000_000).await.unwrap();
    // The channel works before anything is killed.
    let first = poll_until(PATIENCE, "first invoice", || invoice(&pc, 1)).await.unwrap();
    poll_until(PATIENCE, "first payment", || async { pay(&rc, &first, 5).await.then_some(()) }).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let paid = Arc::new(AtomicUsize::new(0));
    let payers: Vec<_> = (0..PAYERS)
        .map(|i| tokio::spawn(payer(rc.clone(), pc.clone(), stop.clone(), paid.clone(), 0x10 + i as u8)))
        .collect();

    // Whose bus host dies in each round.
    let rounds = [true, false, true, false, true, false, true, false];
    for (round, requester_side) in rounds.into_iter().enumerate() {
        // Payments are flowing: the kill lands while channel messages cross the bus.
        let before = paid.load(Ordering::Relaxed);
        poll_until(PATIENCE, "payments flowing", || async {
            (paid.load(Ordering::Relaxed) >= before + 2).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("round {round}: {e}\nrequester:\n{}", logs(&requester)));
        let (node, client) = if requester_side { (&mut requester, &rc) } else { (&mut provider, &pc) };
        node.kill("lcpd").unwrap();
        node.start_daemon("lcpd").unwrap();
        wait_services(client, &[ServiceId::Peerd, ServiceId::Payd, ServiceId::Lcpd]).await.unwrap();

        // Right after it is back, a payment goes through within seconds.
        let back = Instant::now();
        let bolt11 = poll_until(BACK_WITHIN, "an invoice", || invoice(&pc, 2)).await.unwrap();
        let remaining = BACK_WITHIN.saturating_sub(back.elapsed());
        poll_until(remaining, "a payment after the bus host restarted", || async {
            pay(&rc, &bolt11, 3).await.then_some(())
        })
        .await
        .unwrap_or_else(|e| {
            let side = if requester_side { "requester" } else { "provider" };
            panic!(
                "round {round} ({side}'s lcpd): {e}\nrequester:\n{}\nprovider:\n{}",
                logs(&requester),
                logs(&provider)
            )
        });
        eprintln!("round {round}: paid {:?} after the bus host was back", back.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    for p in payers {
        p.await.unwrap();
    }

    // Every payment made ends definitely, and the provider was paid exactly for the succeeded ones.
    let payments = poll_until(Duration::from_secs(30), "no payment left in flight", || async {
        match payd(&rc, PaydApi::ListPayments).await.ok()? {
            PaydApi::Payments(v) if v.iter().all(|p| p.state != PaymentState::Pending) => Some(v),
            _ => None,
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nrequester:\n{}", logs(&requester)));
    let succeeded: Vec<_> = payments.iter().filter(|p| p.state == PaymentState::Succeeded).collect();
    assert!(succeeded.len() > rounds.len(), "{} payments succeeded", succeeded.len());
    let settled = poll_until(PATIENCE, "the provider settled every paid invoice", || async {
        let all = match payd(&pc, PaydApi::ListInvoices).await.ok()? {
            PaydApi::Invoices(v) => v,
            _ => return None,
        };
        let settled: Vec<_> = all.into_iter().filter(|i| i.state == InvoiceState::Settled).collect();
        (settled.len() == succeeded.len()).then_some(settled)
    })
    .await
    .unwrap();
    for p in &succeeded {
        let inv = settled.iter().find(|i| i.payment_hash == p.payment_hash).expect("a settled invoice per payment");
        assert_eq!(inv.amount_received_msat, Some(AMOUNT));
    }
    rc.close();
    pc.close();
}
