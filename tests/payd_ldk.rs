//! The LDK engine end to end: two engines in one process joined by the test pump.

#[path = "payd_pump.rs"]
mod pump;

use std::time::Duration;

use lcp::payd::backend::{
    check_invoice, ExpectedInvoice, InvoiceStatus, Network, PayParams, PaydError, PaymentBackend, PaymentStatus,
};
use lcp::payd::conformance::{self, count_settled, wait_settled};
use lcp::payd::ldk::{feature_bit_set_be, Dispatched, LdkConfig, LdkEngine, PeerOutput, TrustPolicy};
use lightning::bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use pump::{pair_with_channel, wait_until, Link, Node, WAIT};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

fn params(expected: Option<ExpectedInvoice>) -> PayParams {
    PayParams { max_fee_msat: 10_000, timeout: WAIT, expected }
}

fn terms(tag: &str) -> [u8; 32] {
    Sha256::digest(tag.as_bytes()).into()
}

/// What the payee can still receive: it shrinks by exactly what it was paid.
fn inbound_msat(node: &Node) -> u64 {
    node.engine.channels().iter().map(|c| c.inbound_capacity_msat).sum()
}

/// Start paying `bolt11` from `a` while the link holds every message, and return once the
/// payment's HTLC exists in the payer's channel (so the payment is really in flight).
async fn start_held_payment(
    link: &Link,
    a: &Node,
    bolt11: &str,
) -> tokio::task::JoinHandle<Result<lcp::payd::backend::PaidInvoice, PaydError>> {
    link.hold_after(0);
    let payer = a.engine.clone();
    let bolt11 = bolt11.to_string();
    let pay = tokio::spawn(async move { payer.pay(bolt11, params(None)).await });
    let ea = a.engine.clone();
    wait_until("payment HTLC offered", || ea.channels().iter().any(|c| c.pending_outbound_htlcs > 0)).await;
    pay
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_channel_invoice_and_payment() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b, link) = pair_with_channel(da.path(), db.path(), 1_000_000).await;
    let chans = a.engine.channels();
    assert_eq!(chans.len(), 1);
    assert_eq!(chans[0].counterparty, b.id());
    assert_eq!(chans[0].capacity_sat, 1_000_000);
    assert!(chans[0].is_outbound && chans[0].is_usable);

    let mut events = b.engine.subscribe();
    let dh = terms("job terms");
    let inv = b.engine.create_invoice(2_100_000, dh, 600).await.unwrap();
    assert!(inv.bolt11.starts_with("lnbcrt"), "devnet invoices use regtest currency: {}", inv.bolt11);
    let decoded = a.engine.decode_invoice(&inv.bolt11).unwrap();
    assert_eq!(decoded.payee, b.id(), "payee is the node id");
    // A mainnet wallet rejects a devnet invoice.
    assert!(matches!(check_invoice(&decoded, None, Network::Mainnet, 0), Err(PaydError::WrongNetwork { .. })));

    let expected =
        ExpectedInvoice { amount_msat: 2_100_000, payee: b.id(), description_hash: dh, not_after_secs: None };
    let paid = a.engine.pay(inv.bolt11.clone(), params(Some(expected))).await.unwrap();
    let h: [u8; 32] = Sha256::digest(paid.preimage).into();
    assert_eq!(h, inv.payment_hash);
    assert_eq!(wait_settled(&mut events, inv.payment_hash).await.unwrap(), 2_100_000);
    let rec = b.engine.lookup_invoice(inv.payment_hash).await.unwrap().unwrap();
    assert_eq!(rec.status, InvoiceStatus::Settled);
    assert_eq!(rec.amount_received_msat, Some(2_100_000));
    let pays = a.engine.list_payments().await.unwrap();
    assert_eq!(pays.len(), 1);
    assert_eq!(pays[0].status, PaymentStatus::Succeeded);
    assert_eq!(pays[0].preimage, Some(paid.preimage));
    assert_eq!(count_settled(&mut events, inv.payment_hash), 0, "settled exactly once");
    assert_eq!(link.incident_count(), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_on_ldk() {
    let (da, db, dc) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b, link) = pair_with_channel(da.path(), db.path(), 1_000_000).await;
    let payer: &dyn PaymentBackend = &*a.engine;
    let payee: &dyn PaymentBackend = &*b.engine;
    conformance::invoice_contract(payee).await.unwrap();
    conformance::pay_contract(payer, payee).await.unwrap();
    conformance::idempotency_contract(payer, payee).await.unwrap();
    conformance::bad_input_contract(payer, payee).await.unwrap();
    conformance::paid_then_expired_contract(payer, payee).await.unwrap();
    let lonely = Node::start(dc.path(), [0x0c; 32]);
    conformance::no_channel_contract(&*lonely.engine, payee).await.unwrap();
    assert_eq!(link.incident_count(), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_devnet_networks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for network in [Network::Mainnet, Network::Testnet, Network::Signet, Network::Regtest] {
        let mut cfg = LdkConfig::devnet(dir.path().to_path_buf(), [1; 32]);
        cfg.network = network;
        let (tx, _rx) = mpsc::unbounded_channel();
        match LdkEngine::start(cfg, tx) {
            Err(PaydError::ChainSourceRequired { network: n }) => assert_eq!(n, network),
            Err(e) => panic!("{network}: unexpected error {e}"),
            Ok(_) => panic!("{network}: engine started without a chain source"),
        }
    }
    let (tx, _rx) = mpsc::unbounded_channel();
    let bad = LdkConfig::devnet(dir.path().to_path_buf(), [0; 32]);
    assert!(matches!(LdkEngine::start(bad, tx), Err(PaydError::InvalidArgument { field: "node_secret", .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_features_and_init_checks() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Node::start(da.path(), [0x0a; 32]);
    let b = Node::start(db.path(), [0x0b; 32]);
    let f = a.engine.init_features();
    for required in [12, 14, 8] {
        assert!(feature_bit_set_be(&f, required), "bit {required} required by LDK");
    }
    for cleared in [34, 35, 42, 43, 62, 63] {
        assert!(!feature_bit_set_be(&f, cleared), "bit {cleared} must not be advertised");
    }
    assert_eq!(a.engine.chain_hashes().len(), 1);
    // Not an Init.
    assert!(matches!(a.engine.peer_connected(b.id(), 1, &[0, 17, 0], false), Err(PaydError::PeerProtocol { .. })));
    // Truncated Init.
    assert!(a.engine.peer_connected(b.id(), 1, &[0, 16, 0], false).is_err());
    // Init for another chain.
    let mut other_chain = b.engine.init_message();
    let n = other_chain.len();
    other_chain[n - 1] ^= 0xff;
    assert!(a.engine.peer_connected(b.id(), 1, &other_chain, false).is_err());
    assert!(!a.engine.is_connected(&b.id()));
    a.engine.peer_connected(b.id(), 1, &b.engine.init_message(), false).unwrap();
    assert!(a.engine.is_connected(&b.id()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_connect_and_session_replacement_do_not_break_the_engine() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut a, mut b, link) = pair_with_channel(da.path(), db.path(), 500_000).await;
    let (rx_a, rx_b, _) = link.cut().await;
    a.rx = Some(rx_a);
    b.rx = Some(rx_b);
    let init_b = b.engine.init_message();
    a.engine.peer_connected(b.id(), 7, &init_b, false).unwrap();
    // The same session again: refused, and LDK is not touched (no panic, engine usable).
    assert!(matches!(a.engine.peer_connected(b.id(), 7, &init_b, false), Err(PaydError::PeerProtocol { .. })));
    // A new session without a disconnect first: the old one is closed, the new one works.
    a.engine.peer_connected(b.id(), 8, &init_b, false).unwrap();
    // Disconnect of the stale session 7 is ignored; session 8 stays.
    a.engine.peer_disconnected(b.id(), 7);
    assert!(a.engine.is_connected(&b.id()));
    a.engine.peer_disconnected(b.id(), 8);
    assert!(!a.engine.is_connected(&b.id()));
    // Drain what those sessions emitted and reconnect properly; payments still work.
    let mut rx_a = a.take_rx();
    while rx_a.try_recv().is_ok() {}
    a.rx = Some(rx_a);
    let link = pump::link_ready(&mut a, &mut b, 9).await;
    let inv = b.engine.create_invoice(10_000, terms("x"), 600).await.unwrap();
    let paid = a.engine.pay(inv.bolt11, params(None)).await.unwrap();
    assert_eq!(<[u8; 32]>::from(Sha256::digest(paid.preimage)), inv.payment_hash);
    assert_eq!(link.incident_count(), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_ask_for_disconnect() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Node::start(da.path(), [0x0a; 32]);
    let b = Node::start(db.path(), [0x0b; 32]);
    let mut rx = a.take_rx();
    let stranger = PublicKey::from_secret_key(&Secp256k1::new(), &SecretKey::from_slice(&[5; 32]).unwrap());
    // Never connected: dropped as stale, no panic.
    assert_eq!(a.engine.handle_message(stranger, 1, &[0, 128, 1, 2]).unwrap(), Dispatched::Ignored(128));
    assert_eq!(a.engine.stats().stale_dropped, 1);

    let init_b = b.engine.init_message();
    let cases: [(&[u8], &str); 3] =
        [(&[0, 128, 1, 2, 3], "truncated update_add_htlc"), (&[0x7f, 0xfe, 1], "unknown even type"), (&[0], "no type")];
    for (session, (raw, what)) in (10u64..).zip(cases) {
        a.engine.peer_connected(b.id(), session, &init_b, false).unwrap();
        let r = a.engine.handle_message(b.id(), session, raw);
        assert!(matches!(r, Err(PaydError::PeerProtocol { .. })), "{what}: {r:?}");
        assert!(!a.engine.is_connected(&b.id()), "{what}: session dropped");
        let mut saw_disconnect = false;
        while let Ok(o) = rx.try_recv() {
            if let PeerOutput::Disconnect { session_id, .. } = o {
                assert_eq!(session_id, session);
                saw_disconnect = true;
            }
        }
        assert!(saw_disconnect, "{what}: caller told to disconnect");
    }
    a.engine.peer_connected(b.id(), 20, &init_b, false).unwrap();
    assert_eq!(
        a.engine.handle_message(b.id(), 20, &[0x7f, 0xff, 9, 9]).unwrap(),
        Dispatched::Ignored(0x7fff),
        "unknown odd type ignored"
    );
    assert!(a.engine.is_connected(&b.id()));
}

fn bogus_reestablish(channel_id: [u8; 32]) -> Vec<u8> {
    let point = PublicKey::from_secret_key(&Secp256k1::new(), &SecretKey::from_slice(&[3; 32]).unwrap());
    let mut raw = vec![0, 136];
    raw.extend_from_slice(&channel_id);
    raw.extend_from_slice(&1u64.to_be_bytes());
    raw.extend_from_slice(&0u64.to_be_bytes());
    raw.extend_from_slice(&[0u8; 32]);
    raw.extend_from_slice(&point.serialize());
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reestablish_for_unknown_channel_is_rate_limited() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Node::start(da.path(), [0x0a; 32]);
    let b = Node::start(db.path(), [0x0b; 32]);
    let mut rx = a.take_rx();
    a.engine.peer_connected(b.id(), 1, &b.engine.init_message(), false).unwrap();
    while rx.try_recv().is_ok() {}
    let raw = bogus_reestablish([0x99; 32]);
    assert_eq!(a.engine.handle_message(b.id(), 1, &raw).unwrap(), Dispatched::Delivered(136));
    let mut first = Vec::new();
    while let Ok(PeerOutput::Send { raw, .. }) = rx.try_recv() {
        first.push(u16::from_be_bytes([raw[0], raw[1]]));
    }
    assert!(!first.is_empty(), "the first one is answered");
    for _ in 0..5 {
        assert_eq!(a.engine.handle_message(b.id(), 1, &raw).unwrap(), Dispatched::Ignored(136));
    }
    assert!(rx.try_recv().is_err(), "repeats are not answered");
    assert_eq!(a.engine.stats().reestablish_dropped, 5);
    // A new session gets one answer again.
    a.engine.peer_disconnected(b.id(), 1);
    a.engine.peer_connected(b.id(), 2, &b.engine.init_message(), false).unwrap();
    while rx.try_recv().is_ok() {}
    assert_eq!(a.engine.handle_message(b.id(), 2, &raw).unwrap(), Dispatched::Delivered(136));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_peer_cannot_open_a_channel() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Node::start(da.path(), [0x0a; 32]);
    let mut cfg = LdkConfig::devnet(db.path().to_path_buf(), [0x0b; 32]);
    cfg.trust = TrustPolicy::Peers(Default::default());
    let mut b = Node::start_with(cfg);
    let link = pump::link(&mut a, &mut b, 1);
    let r = a.engine.open_channel(b.id(), 100_000, Duration::from_secs(10)).await;
    assert!(r.is_err(), "untrusted open refused: {r:?}");
    assert!(b.engine.channels().iter().all(|c| !c.is_usable));
    drop(link);
}

/// Cut the link after `k` messages of a payment, deliver the queued messages late (they must be
/// dropped as stale), reconnect, and check the payment completes exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_survives_a_cut_at_every_point() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut a, mut b, mut link) = pair_with_channel(da.path(), db.path(), 1_000_000).await;
    let mut session = 1;
    for k in 0..10u64 {
        let mut events = b.engine.subscribe();
        let inv = b.engine.create_invoice(100_000 + k, terms(&format!("cut {k}")), 600).await.unwrap();
        let pay = start_held_payment(&link, &a, &inv.bolt11).await;
        link.hold_after(k);
        link.wait_held().await;
        let (rx_a, rx_b, _stale) = link.cut().await;
        session += 1;
        link = Link::connect(&a.engine, rx_a, &b.engine, rx_b, session);
        let paid = pay.await.unwrap().unwrap_or_else(|e| panic!("cut after {k}: {e}"));
        // Let the previous HTLC's removal finish before the next payment starts.
        let (ea, eb) = (a.engine.clone(), b.engine.clone());
        wait_until("channel quiet", || {
            ea.channels()
                .iter()
                .chain(eb.channels().iter())
                .all(|c| c.is_usable && c.pending_outbound_htlcs == 0 && c.pending_inbound_htlcs == 0)
        })
        .await;
        assert_eq!(<[u8; 32]>::from(Sha256::digest(paid.preimage)), inv.payment_hash);
        assert_eq!(wait_settled(&mut events, inv.payment_hash).await.unwrap(), 100_000 + k);
        let rec = b.engine.lookup_invoice(inv.payment_hash).await.unwrap().unwrap();
        assert_eq!(rec.status, InvoiceStatus::Settled);
        assert_eq!(count_settled(&mut events, inv.payment_hash), 0);
    }
    assert_eq!(link.incident_count(), (0, 0));
    let (rx_a, rx_b, _) = link.cut().await;
    a.rx = Some(rx_a);
    b.rx = Some(rx_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_message_after_reconnect_is_dropped() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b, link) = pair_with_channel(da.path(), db.path(), 1_000_000).await;
    let inv = b.engine.create_invoice(50_000, terms("stale"), 600).await.unwrap();
    // Let nothing through, start a payment, and capture its first message by hand.
    link.hold_after(0);
    let payer = a.engine.clone();
    let bolt11 = inv.bolt11.clone();
    let pay = tokio::spawn(async move { payer.pay(bolt11, params(None)).await });
    let (mut rx_a, rx_b) = {
        let mut link = link;
        link.wait_held().await;
        link.detach().await
    };
    // Deliver whatever precedes the payment (late channel_update), keep the update_add_htlc.
    let raw = loop {
        let o = tokio::time::timeout(WAIT, rx_a.recv()).await.unwrap().unwrap();
        let PeerOutput::Send { session_id, raw, .. } = o else { panic!("unexpected disconnect") };
        assert_eq!(session_id, 1);
        if u16::from_be_bytes([raw[0], raw[1]]) == 128 {
            break raw;
        }
        b.engine.handle_message(a.id(), 1, &raw).unwrap();
    };
    a.engine.peer_disconnected(b.id(), 1);
    b.engine.peer_disconnected(a.id(), 1);
    while rx_a.try_recv().is_ok() {}
    let link = Link::connect(&a.engine, rx_a, &b.engine, rx_b, 2);
    // The old session's update_add_htlc arrives after the new session began: dropped.
    let before = b.engine.stats().stale_dropped;
    assert_eq!(b.engine.handle_message(a.id(), 1, &raw).unwrap(), Dispatched::Ignored(128));
    assert_eq!(b.engine.stats().stale_dropped, before + 1);
    let paid = pay.await.unwrap().unwrap();
    assert_eq!(<[u8; 32]>::from(Sha256::digest(paid.preimage)), inv.payment_hash);
    assert!(b.engine.channels().iter().all(|c| c.is_usable), "no force-close");
    assert_eq!(link.incident_count(), (0, 0));
}

async fn crash_mid_payment(crash_payer: bool, k: u64) {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut a, mut b, link) = pair_with_channel(da.path(), db.path(), 1_000_000).await;
    let amount = 70_000;
    let inv = b.engine.create_invoice(amount, terms("crash"), 600).await.unwrap();
    let b_in_before = inbound_msat(&b);
    let mut link = link;
    let pay = start_held_payment(&link, &a, &inv.bolt11).await;
    link.hold_after(k);
    link.wait_held().await;
    let (rx_a, rx_b) = link.abandon().await;
    let mut pay = Some(pay);
    if crash_payer {
        if let Some(p) = pay.take() {
            p.abort();
            let _ = p.await;
        }
        b.engine.peer_disconnected(a.id(), 1);
        b.rx = Some(rx_b);
        drop(rx_a);
        a = a.crash_and_restart();
    } else {
        a.engine.peer_disconnected(b.id(), 1);
        a.rx = Some(rx_a);
        drop(rx_b);
        b = b.crash_and_restart();
    }
    let mut events = b.engine.subscribe();
    let link = pump::link(&mut a, &mut b, 2);
    let paid = if crash_payer {
        // The restarted payer finds the attempt on disk; asking again never pays twice.
        a.engine.pay(inv.bolt11.clone(), params(None)).await.unwrap()
    } else {
        pay.take().expect("payer task kept").await.unwrap().unwrap()
    };
    assert_eq!(<[u8; 32]>::from(Sha256::digest(paid.preimage)), inv.payment_hash);
    let eb = b.engine.clone();
    let hash = inv.payment_hash;
    let rec = tokio::time::timeout(WAIT, async {
        loop {
            let r = eb.lookup_invoice(hash).await.unwrap().unwrap();
            if r.status == InvoiceStatus::Settled {
                return r;
            }
            let _ = events.recv().await;
        }
    })
    .await
    .expect("invoice settles after restart");
    assert_eq!(rec.amount_received_msat, Some(amount));
    // Received once: the payee's balance grew by exactly the amount.
    wait_until("payee balance updated", || inbound_msat(&b) + amount == b_in_before).await;
    let again = a.engine.pay(inv.bolt11.clone(), params(None)).await.unwrap();
    assert_eq!(again.preimage, paid.preimage);
    assert_eq!(inbound_msat(&b) + amount, b_in_before, "not paid twice");
    let records = a.engine.list_payments().await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].status, PaymentStatus::Succeeded);
    // The reloaded channel keeps working once the commitment dance has settled.
    let (ea, eb) = (a.engine.clone(), b.engine.clone());
    wait_until("channel usable again", || ea.channels().iter().chain(eb.channels().iter()).all(|c| c.is_usable)).await;
    let inv2 = b.engine.create_invoice(1_000, terms("after"), 600).await.unwrap();
    if let Err(e) = a.engine.pay(inv2.bolt11, params(None)).await {
        panic!(
            "k={k} crash_payer={crash_payer}: {e}; a: {:?} b: {:?} incidents {:?}",
            a.engine.channels(),
            b.engine.channels(),
            link.incidents.lock().unwrap()
        );
    }
    assert_eq!(link.incident_count(), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payer_crash_mid_payment_then_reload() {
    for k in [0, 1, 3, 5, 8] {
        crash_mid_payment(true, k).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payee_crash_mid_payment_then_reload() {
    for k in [1, 2, 4, 6, 9] {
        crash_mid_payment(false, k).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_payment_keeps_records_and_channel() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut a, mut b, link) = pair_with_channel(da.path(), db.path(), 1_000_000).await;
    let inv = b.engine.create_invoice(12_345, terms("before restart"), 600).await.unwrap();
    let paid = a.engine.pay(inv.bolt11.clone(), params(None)).await.unwrap();
    let (rx_a, rx_b, _) = link.cut().await;
    a.rx = Some(rx_a);
    b.rx = Some(rx_b);
    a.engine.shutdown().unwrap();
    b.engine.shutdown().unwrap();
    assert!(matches!(b.engine.create_invoice(1, terms("late"), 60).await, Err(PaydError::BackendUnavailable { .. })));
    assert!(matches!(a.engine.pay(inv.bolt11.clone(), params(None)).await, Err(PaydError::BackendUnavailable { .. })));
    let mut a = a.crash_and_restart();
    let mut b = b.crash_and_restart();
    let mut events = b.engine.subscribe();
    assert_eq!(a.engine.channels().len(), 1, "channel reloaded");
    let rec = b.engine.lookup_invoice(inv.payment_hash).await.unwrap().unwrap();
    assert_eq!(rec.status, InvoiceStatus::Settled);
    let link = pump::link_ready(&mut a, &mut b, 2).await;
    let again = a.engine.pay(inv.bolt11.clone(), params(None)).await.unwrap();
    assert_eq!(again, paid, "first outcome returned after restart");
    let inv2 = b.engine.create_invoice(54_321, terms("after restart"), 600).await.unwrap();
    a.engine.pay(inv2.bolt11, params(None)).await.unwrap();
    assert_eq!(wait_settled(&mut events, inv2.payment_hash).await.unwrap(), 54_321);
    assert_eq!(count_settled(&mut events, inv.payment_hash), 0, "old invoice not re-settled");
    assert_eq!(link.incident_count(), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_leaves_payment_pending_and_a_retry_waits_for_it() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b, link) = pair_with_channel(da.path(), db.path(), 1_000_000).await;
    let mut events = b.engine.subscribe();
    let inv = b.engine.create_invoice(77_000, terms("timeout"), 600).await.unwrap();
    link.hold_after(0);
    let short = PayParams { max_fee_msat: 0, timeout: Duration::from_millis(300), expected: None };
    let r = a.engine.pay(inv.bolt11.clone(), short).await;
    assert!(matches!(r, Err(PaydError::Timeout { .. })), "held link times out: {r:?}");
    let recs = a.engine.list_payments().await.unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].status, PaymentStatus::Pending, "still in flight, not failed");
    // A second call waits for the attempt in flight instead of paying again.
    let payer = a.engine.clone();
    let bolt11 = inv.bolt11.clone();
    let retry = tokio::spawn(async move { payer.pay(bolt11, params(None)).await });
    link.release();
    let paid = retry.await.unwrap().unwrap();
    assert_eq!(<[u8; 32]>::from(Sha256::digest(paid.preimage)), inv.payment_hash);
    assert_eq!(wait_settled(&mut events, inv.payment_hash).await.unwrap(), 77_000);
    assert_eq!(count_settled(&mut events, inv.payment_hash), 0);
    assert_eq!(a.engine.list_payments().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_channel_needs_a_connected_peer() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Node::start(da.path(), [0x0a; 32]);
    let b = Node::start(db.path(), [0x0b; 32]);
    let r = a.engine.open_channel(b.id(), 100_000, Duration::from_secs(5)).await;
    assert!(matches!(r, Err(PaydError::PeerNotConnected { peer }) if peer == b.id()));
    assert!(a.engine.channels().is_empty());
}

/// Payments one right after another, with no pause for the previous HTLC's removal. Amounts of a
/// few hundred sat are dust HTLCs: while one is still being removed, LDK's dust-exposure limit
/// raises the minimum of the next HTLC and the router finds no route. The engine then waits for
/// the channel to change and tries again, so every payment succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_payments_without_pauses_all_succeed() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b, link) = pair_with_channel(da.path(), db.path(), 1_000_000).await;
    let mut events = b.engine.subscribe();
    let b_in_before = inbound_msat(&b);
    let n = 20u64;
    let mut invoices = Vec::new();
    for k in 0..n {
        // Dust (300 sat) and small (10 sat) payments, alternating.
        let amount = if k % 2 == 0 { 300_000 + k } else { 10_000 + k };
        invoices.push((amount, b.engine.create_invoice(amount, terms(&format!("b2b {k}")), 600).await.unwrap()));
    }
    for (k, (_, inv)) in invoices.iter().enumerate() {
        let paid = a.engine.pay(inv.bolt11.clone(), params(None)).await.unwrap_or_else(|e| panic!("payment {k}: {e}"));
        assert_eq!(<[u8; 32]>::from(Sha256::digest(paid.preimage)), inv.payment_hash);
    }
    for (amount, inv) in &invoices {
        assert_eq!(wait_settled(&mut events, inv.payment_hash).await.unwrap(), *amount);
    }
    let recs = a.engine.list_payments().await.unwrap();
    assert_eq!(recs.len(), n as usize);
    assert!(recs.iter().all(|r| r.status == PaymentStatus::Succeeded));
    let total: u64 = invoices.iter().map(|(a, _)| a).sum();
    wait_until("payee balance updated", || inbound_msat(&b) + total == b_in_before).await;
    assert_eq!(link.incident_count(), (0, 0));
}

/// While the channel stays busy (a dust HTLC held in flight), a second payment is retried until its
/// timeout, then refused with nothing recorded; once the channel is quiet it goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_channel_retry_gives_up_at_the_timeout_without_a_record() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b, link) = pair_with_channel(da.path(), db.path(), 1_000_000).await;
    let first = b.engine.create_invoice(300_000, terms("held"), 600).await.unwrap();
    let second = b.engine.create_invoice(200_000, terms("waits"), 600).await.unwrap();
    let held = start_held_payment(&link, &a, &first.bolt11).await;
    let short = PayParams { max_fee_msat: 0, timeout: Duration::from_millis(500), expected: None };
    let r = a.engine.pay(second.bolt11.clone(), short).await;
    assert!(
        matches!(&r, Err(PaydError::PaymentFailed { reason, .. }) if reason.contains("RouteNotFound")),
        "busy channel: {r:?}"
    );
    let recs = a.engine.list_payments().await.unwrap();
    assert_eq!(recs.len(), 1, "only the held payment is recorded");
    assert_eq!(recs[0].payment_hash, first.payment_hash);
    // Started while the channel is still busy, the payment waits and then goes through.
    let payer = a.engine.clone();
    let bolt11 = second.bolt11.clone();
    let waiting = tokio::spawn(async move { payer.pay(bolt11, params(None)).await });
    link.release();
    held.await.unwrap().unwrap();
    let paid = waiting.await.unwrap().unwrap();
    assert_eq!(<[u8; 32]>::from(Sha256::digest(paid.preimage)), second.payment_hash);
    assert_eq!(a.engine.list_payments().await.unwrap().len(), 2);
}

/// A payment in flight is not work for the engine: LDK reports pending HTLC processing for as
/// long as an outbound payment may still be retried, and the engine must neither loop on that nor
/// rely on looping to finish the payment. Each payment stops for a while at a different point (the
/// link holds the remaining messages, so both engines go idle), then completes once it moves
/// again, is settled once, and costs the payer far fewer processing rounds than one pass of the
/// old driver that counted that flag as progress (64 rounds per processing call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_in_flight_leaves_the_engine_idle_and_completes_when_messages_move() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b, mut link) = pair_with_channel(da.path(), db.path(), 1_000_000).await;
    let mut events = b.engine.subscribe();
    for k in [0u64, 1, 3, 5, 8] {
        let inv = b.engine.create_invoice(2_100_000, terms(&format!("idle {k}")), 600).await.unwrap();
        let rounds_before = a.engine.stats().rounds;
        link.hold_after(k);
        let payer = a.engine.clone();
        let bolt11 = inv.bolt11.clone();
        let pay = tokio::spawn(async move { payer.pay(bolt11, params(None)).await });
        link.wait_held().await;
        let ea = a.engine.clone();
        wait_until("payment HTLC in the payer's channel", || {
            ea.channels().iter().any(|c| c.pending_outbound_htlcs > 0)
        })
        .await;
        link.release();
        let paid = pay.await.unwrap().unwrap_or_else(|e| panic!("payment held after {k} messages: {e}"));
        assert_eq!(<[u8; 32]>::from(Sha256::digest(paid.preimage)), inv.payment_hash);
        assert_eq!(wait_settled(&mut events, inv.payment_hash).await.unwrap(), 2_100_000);
        let rounds = a.engine.stats().rounds - rounds_before;
        assert!(rounds < 64, "payer ran {rounds} processing rounds for one payment (held after {k} messages)");
        let ea = a.engine.clone();
        wait_until("channel quiet", || ea.channels().iter().all(|c| c.pending_outbound_htlcs == 0)).await;
    }
    let pays = a.engine.list_payments().await.unwrap();
    assert_eq!(pays.len(), 5);
    assert!(pays.iter().all(|r| r.status == PaymentStatus::Succeeded));
    let invoices = b.engine.list_invoices().await.unwrap();
    assert!(invoices.iter().all(|i| i.status == InvoiceStatus::Settled && i.amount_received_msat == Some(2_100_000)));
    assert_eq!(link.incident_count(), (0, 0));
}
