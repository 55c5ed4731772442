//! The lnd backend against a local HTTPS stand-in that follows lnd's documented REST shapes
//! (`payd_lnd_standin`): the conformance suite, settlement by polling, certificate pinning, the
//! macaroon, a dead lnd, a payment in flight across a restart, and payd over the bus with lnd.
//! One test talks to a real lnd when `LCP_LIVE_LND_REST` is set.

mod payd_lnd_standin;

use std::sync::Arc;
use std::time::Duration;

use lcp::bus::api::payd::{PaydApi, PaymentState};
use lcp::bus::api::Body;
use lcp::bus::{Bus, ServiceId};
use lcp::lnd::LndConnection;
use lcp::payd::backend::{PayParams, PaydError, PaydEvent, PaymentBackend, PaymentStatus};
use lcp::payd::conformance::{self, wait_settled};
use lcp::payd::lnd::{LndBackend, LndConfig};
use lcp::payd::opts::PaydBackend;
use lcp::testkit::{poll_until, InProcessNode, PATIENCE};
use payd_lnd_standin::{Ledger, StandinNode};
use sha2::{Digest, Sha256};

const T: Duration = Duration::from_secs(20);

fn params(timeout: Duration) -> PayParams {
    PayParams { max_fee_msat: 1_000, timeout, expected: None }
}

fn terms(tag: &str) -> [u8; 32] {
    Sha256::digest(tag.as_bytes()).into()
}

async fn backend(node: &StandinNode, state: &tempfile::TempDir) -> Arc<LndBackend> {
    LndBackend::start(node.config(state.path().to_path_buf())).await.expect("backend starts")
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_against_lnd_rest_standin() {
    let ledger = Ledger::new();
    let (a, b, c) = (
        StandinNode::start(&ledger, 1).await,
        StandinNode::start(&ledger, 2).await,
        StandinNode::start(&ledger, 3).await,
    );
    ledger.open_channel(a.id, b.id, 1_000_000);
    let (sa, sb, sc) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (payer, payee, lonely) = (backend(&a, &sa).await, backend(&b, &sb).await, backend(&c, &sc).await);
    assert_eq!(payer.node_id(), a.id);
    conformance::invoice_contract(&*payee).await.unwrap();
    conformance::pay_contract(&*payer, &*payee).await.unwrap();
    conformance::idempotency_contract(&*payer, &*payee).await.unwrap();
    conformance::bad_input_contract(&*payer, &*payee).await.unwrap();
    conformance::paid_then_expired_contract(&*payer, &*payee).await.unwrap();
    conformance::no_channel_contract(&*lonely, &*payee).await.unwrap();
    // Three payments reached lnd's router, each once; payd's calls are the documented ones.
    assert_eq!(a.sends(), 3);
    let reqs = a.requests();
    for call in ["GET /v1/getinfo", "GET /v1/channels", "POST /v2/router/send"] {
        assert!(reqs.iter().any(|r| r == call), "{call} not used: {reqs:?}");
    }
    assert!(reqs.iter().any(|r| r.starts_with("GET /v1/payreq/")), "{reqs:?}");
    assert!(b.requests().iter().any(|r| r == "POST /v1/invoices"));
    // Balances as lnd reports them: 100 sat moved (50 + 30 + 20), less the reserves.
    let bal = payer.channel_balance().await.unwrap();
    assert_eq!((bal.channels, bal.usable_channels), (1, 1));
    assert_eq!(bal.outbound_msat, (1_000_000 - 100 - 10_000) * 1000);
}

/// With polling too slow to matter, the settlement arrives on lnd's invoice subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_arrives_on_the_subscription_against_lnd_rest_standin() {
    let ledger = Ledger::new();
    let (a, b) = (StandinNode::start(&ledger, 1).await, StandinNode::start(&ledger, 2).await);
    ledger.open_channel(a.id, b.id, 100_000);
    let (sa, sb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let payer = backend(&a, &sa).await;
    let slow = LndConfig { poll_interval: Duration::from_secs(3600), ..b.config(sb.path().to_path_buf()) };
    let payee = LndBackend::start(slow).await.unwrap();
    let mut events = payee.subscribe();
    poll_until(PATIENCE, "subscription requested", || async {
        b.requests().iter().any(|r| r == "GET /v1/invoices/subscribe").then_some(())
    })
    .await
    .unwrap();
    let inv = payee.create_invoice(8_000, terms("streamed"), 600).await.unwrap();
    payer.pay(inv.bolt11.clone(), params(T)).await.unwrap();
    let got = wait_settled(&mut events, inv.payment_hash).await.expect("settlement reported from the subscription");
    assert_eq!(got, 8_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_is_polled_when_the_subscription_fails_against_lnd_rest_standin() {
    let ledger = Ledger::new();
    let (a, b) = (StandinNode::start(&ledger, 1).await, StandinNode::start(&ledger, 2).await);
    ledger.open_channel(a.id, b.id, 100_000);
    ledger.with(&b.id, |n| n.subscription = false);
    let (sa, sb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (payer, payee) = (backend(&a, &sa).await, backend(&b, &sb).await);
    let mut events = payee.subscribe();
    let inv = payee.create_invoice(12_000, terms("polled"), 600).await.unwrap();
    payer.pay(inv.bolt11.clone(), params(T)).await.unwrap();
    // Nobody looks the invoice up: the settlement comes from the poll alone.
    let got = wait_settled(&mut events, inv.payment_hash).await.expect("settlement reported by polling");
    assert_eq!(got, 12_000);
    assert!(b.requests().iter().any(|r| r == "GET /v2/invoices/lookup"));
    assert!(b.requests().iter().any(|r| r == "GET /v1/invoices/subscribe"), "the subscription was tried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_certificate_or_macaroon_is_refused_against_lnd_rest_standin() {
    let ledger = Ledger::new();
    let (a, b) = (StandinNode::start(&ledger, 1).await, StandinNode::start(&ledger, 2).await);
    let state = tempfile::tempdir().unwrap();
    // b's certificate for a's endpoint: the handshake is refused before any request is sent.
    let wrong_cert = LndConfig {
        conn: LndConnection { tls_cert: b.cert_path.clone(), ..a.connection() },
        ..a.config(state.path().into())
    };
    let e = LndBackend::start(wrong_cert).await.unwrap_err();
    assert!(matches!(e, PaydError::BackendUnavailable { .. }), "{e}");
    assert!(e.to_string().contains("not the pinned lnd certificate"), "{e}");
    assert!(a.requests().is_empty(), "nothing reached the server: {:?}", a.requests());
    // b's macaroon: lnd refuses it.
    let wrong_mac = LndConfig {
        conn: LndConnection { macaroon: b.macaroon_path.clone(), ..a.connection() },
        ..a.config(state.path().into())
    };
    let e = LndBackend::start(wrong_mac).await.unwrap_err();
    assert!(matches!(e, PaydError::BackendRefused { op: "getinfo", .. }), "{e}");
    assert!(e.to_string().contains("verification failed"), "{e}");
    // Not a certificate at all.
    let not_pem = state.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let bad =
        LndConfig { conn: LndConnection { tls_cert: not_pem, ..a.connection() }, ..a.config(state.path().into()) };
    let e = LndBackend::start(bad).await.unwrap_err();
    assert!(matches!(e, PaydError::InvalidArgument { field: "lnd_tls_cert", .. }), "{e}");
    // The right files work.
    backend(&a, &state).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_lnd_is_unavailable_and_nothing_is_paid_against_lnd_rest_standin() {
    let ledger = Ledger::new();
    let (a, b) = (StandinNode::start(&ledger, 1).await, StandinNode::start(&ledger, 2).await);
    ledger.open_channel(a.id, b.id, 100_000);
    let (sa, sb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Nothing listens: connection refused.
    let dead = LndConfig {
        conn: LndConnection { rest_url: format!("https://127.0.0.1:{}", closed_port()), ..a.connection() },
        ..a.config(sa.path().into())
    };
    let e = LndBackend::start(dead).await.unwrap_err();
    assert!(matches!(e, PaydError::BackendUnavailable { .. }), "{e}");
    assert!(e.to_string().to_lowercase().contains("connection refused"), "{e}");
    // lnd dies after payd connected: refused before anything is recorded.
    let (payer, payee) = (backend(&a, &sa).await, backend(&b, &sb).await);
    let inv = payee.create_invoice(5_000, terms("dead"), 600).await.unwrap();
    a.stop();
    let r = payer.pay(inv.bolt11.clone(), params(T)).await;
    assert!(matches!(r, Err(PaydError::BackendUnavailable { .. })), "{r:?}");
    assert!(payer.list_payments().await.unwrap().is_empty(), "nothing recorded");
    assert!(matches!(payer.create_invoice(1_000, terms("x"), 60).await, Err(PaydError::BackendUnavailable { .. })));
    assert_eq!(a.sends(), 0);
    assert!(!ledger.with(&b.id, |n| n.invoices.values().any(|i| i.settled)), "nothing paid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_by_lnd_records_nothing_against_lnd_rest_standin() {
    let ledger = Ledger::new();
    let (a, b) = (StandinNode::start(&ledger, 1).await, StandinNode::start(&ledger, 2).await);
    ledger.open_channel(a.id, b.id, 100_000);
    let sa = tempfile::tempdir().unwrap();
    let payer = backend(&a, &sa).await;
    // lnd refuses to pay its own invoice, and does not know the payment afterwards.
    let own = payer.create_invoice(3_000, terms("self"), 600).await.unwrap();
    let r = payer.pay(own.bolt11, params(T)).await;
    assert!(
        matches!(&r, Err(PaydError::PaymentFailed { reason, .. }) if reason.contains("no self-payments allowed")),
        "{r:?}"
    );
    assert!(payer.list_payments().await.unwrap().is_empty(), "a refused payment leaves no record");
}

/// A payment in flight when payd stops is tracked after the restart: it completes once, and
/// paying again returns its preimage without a second send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_in_flight_is_tracked_after_a_restart_against_lnd_rest_standin() {
    let ledger = Ledger::new();
    let (a, b) = (StandinNode::start(&ledger, 1).await, StandinNode::start(&ledger, 2).await);
    ledger.open_channel(a.id, b.id, 100_000);
    let (sa, sb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let payee = backend(&b, &sb).await;
    let inv = payee.create_invoice(21_000, terms("restart"), 600).await.unwrap();
    ledger.hold_payments(true);
    let payer = backend(&a, &sa).await;
    let r = payer.pay(inv.bolt11.clone(), params(Duration::from_millis(500))).await;
    assert!(matches!(r, Err(PaydError::Timeout { .. })), "{r:?}");
    let recs = payer.list_payments().await.unwrap();
    assert_eq!((recs.len(), recs[0].status), (1, PaymentStatus::Pending));
    payer.shutdown();
    drop(payer);
    let payer = backend(&a, &sa).await;
    let mut events = payer.subscribe();
    ledger.hold_payments(false);
    let preimage = tokio::time::timeout(T, async {
        loop {
            if let Ok(PaydEvent::PaymentSucceeded { payment_hash, preimage }) = events.recv().await {
                if payment_hash == inv.payment_hash {
                    return preimage;
                }
            }
        }
    })
    .await
    .expect("the restarted backend tracks the payment to its end");
    assert_eq!(<[u8; 32]>::from(Sha256::digest(preimage)), inv.payment_hash);
    let again = payer.pay(inv.bolt11.clone(), params(T)).await.unwrap();
    assert_eq!(again.preimage, preimage);
    assert_eq!(a.sends(), 1, "sent once");
    assert!(a.requests().iter().any(|r| r.starts_with("GET /v2/router/track/")), "tracked");
    let recs = payer.list_payments().await.unwrap();
    assert_eq!((recs.len(), recs[0].status), (1, PaymentStatus::Succeeded));
}

async fn payd(c: &Bus, req: PaydApi) -> Result<PaydApi, lcp::bus::BusError> {
    match c.request(&ServiceId::Payd, Body::Payd(req), T).await? {
        Body::Payd(p) => Ok(p),
        other => panic!("{other:?}"),
    }
}

/// A whole node whose payd runs the lnd backend against `config`.
fn lnd_node(config: impl FnOnce(&std::path::Path) -> LndConfig) -> InProcessNode {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = lcp::demo::node_config(dir.path()).unwrap();
    cfg.payd.node.network = lcp::config::Network::Regtest;
    cfg.payd.backend = PaydBackend::Lnd(config(&dir.path().join("payd")));
    InProcessNode::start_with(dir, cfg).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payd_over_the_bus_with_lnd_against_lnd_rest_standin() {
    let ledger = Ledger::new();
    let (a, b) = (StandinNode::start(&ledger, 1).await, StandinNode::start(&ledger, 2).await);
    ledger.open_channel(a.id, b.id, 100_000);
    let requester = lnd_node(|d| a.config(d.to_path_buf()));
    let provider = lnd_node(|d| b.config(d.to_path_buf()));
    let (rc, pc) = (requester.client().await.unwrap(), provider.client().await.unwrap());
    // payd answers once it reached lnd.
    let b0 = poll_until(PATIENCE, "payd connected to lnd", || async {
        match payd(&rc, PaydApi::Balance).await.ok()? {
            PaydApi::BalanceInfo(b) => Some(b),
            _ => None,
        }
    })
    .await
    .unwrap();
    assert_eq!((b0.channels, b0.usable_channels, b0.outbound_msat), (1, 1, 99_000_000));
    let dh = terms("bus");
    let (bolt11, hash) = poll_until(PATIENCE, "invoice", || async {
        match payd(&pc, PaydApi::CreateInvoice { amount_msat: 33_000, description_hash: dh, expiry_secs: 300 })
            .await
            .ok()?
        {
            PaydApi::Invoice { bolt11, payment_hash } => Some((bolt11, payment_hash)),
            _ => None,
        }
    })
    .await
    .unwrap();
    let payee = hex::encode(b.id.serialize());
    let checked = |amount_msat| PaydApi::PayChecked {
        bolt11: bolt11.clone(),
        max_fee_msat: 0,
        timeout_secs: 20,
        amount_msat,
        payee: payee.clone(),
        description_hash: dh,
        not_after_secs: None,
    };
    let e = payd(&rc, checked(32_000)).await.unwrap_err().to_string();
    assert!(e.starts_with("failed_precondition: invoice amount is 33000 msat"), "{e}");
    match payd(&rc, checked(33_000)).await.unwrap() {
        PaydApi::Paid { payment_hash, preimage, .. } => {
            assert_eq!(payment_hash, hash);
            assert_eq!(<[u8; 32]>::from(Sha256::digest(preimage)), hash);
        }
        other => panic!("{other:?}"),
    }
    match payd(&rc, PaydApi::ListPayments).await.unwrap() {
        PaydApi::Payments(v) => assert_eq!((v.len(), v[0].state), (1, PaymentState::Succeeded)),
        other => panic!("{other:?}"),
    }
    poll_until(PATIENCE, "provider's invoice settled", || async {
        match payd(&pc, PaydApi::LookupInvoice { payment_hash: hash }).await.ok()? {
            PaydApi::InvoiceInfo(Some(i)) if i.amount_received_msat == Some(33_000) => Some(()),
            _ => None,
        }
    })
    .await
    .unwrap();
    // Channels belong to lnd.
    let e = payd(&rc, PaydApi::ListChannels).await.unwrap_err().to_string();
    assert!(e.starts_with("unimplemented:"), "{e}");
    // lnd goes away: a clear error over the bus, nothing paid or recorded.
    let (bolt11, _) =
        match payd(&pc, PaydApi::CreateInvoice { amount_msat: 1_000, description_hash: dh, expiry_secs: 300 })
            .await
            .unwrap()
        {
            PaydApi::Invoice { bolt11, payment_hash } => (bolt11, payment_hash),
            other => panic!("{other:?}"),
        };
    a.stop();
    let e = payd(&rc, PaydApi::Pay { bolt11, max_fee_msat: 0, timeout_secs: 5 }).await.unwrap_err().to_string();
    assert!(e.starts_with("unavailable:") && e.contains("cannot connect to lnd"), "{e}");
    match payd(&rc, PaydApi::ListPayments).await.unwrap() {
        PaydApi::Payments(v) => assert_eq!(v.len(), 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(a.sends(), 1);
    rc.close();
    pc.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_lnd_at_start_gives_a_clear_error_over_the_bus_against_lnd_rest_standin() {
    let ledger = Ledger::new();
    let a = StandinNode::start(&ledger, 1).await;
    let port = closed_port();
    let node = lnd_node(|d| LndConfig {
        conn: LndConnection { rest_url: format!("https://127.0.0.1:{port}"), ..a.connection() },
        ..a.config(d.to_path_buf())
    });
    let c = node.client().await.unwrap();
    lcp::testkit::wait_services(&c, &[ServiceId::Payd]).await.unwrap();
    let e = payd(&c, PaydApi::Pay { bolt11: "lnbcrt1x".into(), max_fee_msat: 0, timeout_secs: 1 })
        .await
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("unavailable: payd's lnd backend is not ready"), "{e}");
    // The reason names the failure once the first attempt is over.
    poll_until(PATIENCE, "the reason", || async {
        let e = payd(&c, PaydApi::ListPayments).await.err()?.to_string();
        e.to_lowercase().contains("connection refused").then_some(())
    })
    .await
    .unwrap();
    c.close();
}

/// Against a real lnd: set `LCP_LIVE_LND_REST` (https://HOST:PORT), `LCP_LIVE_LND_TLS_CERT`,
/// `LCP_LIVE_LND_MACAROON` and optionally `LCP_LIVE_LND_NETWORK` (default regtest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_lnd_rest_invoice_contract() {
    let Some((conn, network)) = payd_lnd_standin::live_lnd() else { return };
    let state = tempfile::tempdir().unwrap();
    let config = LndConfig {
        network,
        conn,
        state_dir: state.path().to_path_buf(),
        poll_interval: lcp::payd::lnd::DEFAULT_POLL_INTERVAL,
    };
    let lnd = LndBackend::start(config).await.expect("live lnd reachable");
    conformance::invoice_contract(&*lnd).await.unwrap();
    lnd.channel_balance().await.expect("channel balance");
}
