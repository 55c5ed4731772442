//! peerd's lnd transport against the local stand-in of lnd's REST API (`payd_lnd_standin`, which
//! follows lnd's documented shapes): two whole nodes, each with peerd in lnd mode and payd on
//! the lnd backend, each on its own stand-in lnd, the stand-ins connected to each other. LCP goes
//! as custom messages through the stand-ins; payments through their ledger. One test talks to a
//! real lnd when `LCP_LIVE_LND_REST` is set.

mod payd_lnd_standin;

use std::time::Duration;

use lcp::bus::api::lcpd::{JobEvent, LcpdApi, QuoteArgs, QuoteRow};
use lcp::bus::api::peerd::{PeerInfo, PeerdApi};
use lcp::bus::api::Body;
use lcp::bus::{Bus, ErrorCode, ServiceId};
use lcp::config::Network;
use lcp::lnd::LndConnection;
use lcp::payd::opts::PaydBackend;
use lcp::peerd::opts::PeerTransport;
use lcp::testkit::{poll_until, InProcessNode, PATIENCE};
use lcp::wire::lcp::v02::MSG_MANIFEST;
use payd_lnd_standin::{Ledger, StandinNode};
use sha2::{Digest, Sha256};

const T: Duration = Duration::from_secs(30);
const MODEL: &str = "gpt-5.2";

/// A whole node (regtest) whose peerd and payd both use the lnd at `conn`.
fn lnd_node(lnd: &StandinNode, conn: LndConnection) -> InProcessNode {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = lcp::demo::node_config(dir.path()).unwrap();
    for n in [&mut cfg.node, &mut cfg.peerd.node, &mut cfg.lcpd.node, &mut cfg.jobd.node, &mut cfg.payd.node] {
        n.network = Network::Regtest;
    }
    cfg.peerd.transport = PeerTransport::Lnd(conn.clone());
    cfg.payd.backend = PaydBackend::Lnd(lcp::payd::lnd::LndConfig { conn, ..lnd.config(dir.path().join("payd")) });
    InProcessNode::start_with(dir, cfg).unwrap()
}

async fn ask(c: &Bus, to: ServiceId, body: Body) -> Result<Body, lcp::bus::BusError> {
    c.request(&to, body, T).await
}

async fn peers(c: &Bus) -> Result<Vec<PeerInfo>, lcp::bus::BusError> {
    match ask(c, ServiceId::Peerd, Body::Peerd(PeerdApi::ListPeers)).await? {
        Body::Peerd(PeerdApi::Peers(p)) => Ok(p),
        other => panic!("{other:?}"),
    }
}

/// peerd's status details.
async fn peerd_status(c: &Bus) -> (Option<String>, Vec<(String, String)>) {
    let s = lcp::testkit::services(c).await.unwrap();
    let p = s.into_iter().find(|s| s.id == ServiceId::Peerd).expect("peerd registered");
    (p.info.node_id, p.info.details)
}

fn detail(d: &[(String, String)], k: &str) -> String {
    d.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_default()
}

/// Waits until the requester holds the provider's manifest with its worker's offer on a session
/// other than `not_session`; returns the requester's session with the provider.
async fn manifest_at(rc: &Bus, provider: &str, not_session: u64) -> u64 {
    poll_until(PATIENCE, "provider manifest on a current session", || async {
        let session = peers(rc).await.ok()?.into_iter().find(|p| p.node_id == provider)?.session;
        if session == not_session {
            return None;
        }
        let LcpdApi::LcpPeers(ps) = lcpd(rc, LcpdApi::ListLcpPeers).await.ok()? else { return None };
        ps.into_iter()
            .any(|p| p.node_id == provider && p.manifest.tasks.iter().any(|t| t.model.as_deref() == Some(MODEL)))
            .then_some(session)
    })
    .await
    .unwrap()
}

async fn lcpd(c: &Bus, req: LcpdApi) -> Result<LcpdApi, lcp::bus::BusError> {
    match ask(c, ServiceId::Lcpd, Body::Lcpd(req)).await? {
        Body::Lcpd(p) => Ok(p),
        other => panic!("{other:?}"),
    }
}

/// Quote (checked by lcpd, payee included), pay, result: the job's quote and result bytes.
async fn paid_job(c: &Bus, provider: &str, content: &str) -> (QuoteRow, Vec<u8>) {
    let input = format!(r#"{{"model":"{MODEL}","messages":[{{"role":"user","content":"{content}"}}]}}"#);
    let args = QuoteArgs {
        peer: provider.to_string(),
        task_kind: "openai.chat_completions.v1".into(),
        model: Some(MODEL.into()),
        input: input.into_bytes(),
        input_content_type: None,
        max_price_msat: None,
        timeout_secs: Some(30),
    };
    let q = match lcpd(c, LcpdApi::RequestQuote(args)).await.expect("quote") {
        LcpdApi::Quote(q) => q,
        other => panic!("{other:?}"),
    };
    let mut rx = c.take_incoming().expect("incoming");
    let job_id = q.job_id;
    let got = lcpd(c, LcpdApi::Execute { job_id, max_price_msat: None, timeout_secs: Some(30) }).await.unwrap();
    assert_eq!(got, LcpdApi::Executing { job_id });
    let (mut paid, mut bytes) = (None, Vec::new());
    loop {
        let m = tokio::time::timeout(T, rx.recv()).await.expect("job events in time").expect("bus open");
        let Body::Lcpd(LcpdApi::JobEvent { job_id: j, event }) = m.body else { continue };
        assert_eq!(j, job_id);
        match event {
            JobEvent::Paid { payment_hash, preimage, .. } => paid = Some((payment_hash, preimage)),
            JobEvent::Chunk(b) => bytes.extend_from_slice(&b),
            JobEvent::Result(r) => {
                assert!(matches!(r, lcp::bus::api::lcpd::JobOutcomeRow::Ok { .. }), "{r:?}");
                break;
            }
            _ => {}
        }
    }
    c.put_incoming(rx);
    let (hash, preimage) = paid.expect("paid");
    assert_eq!((hash, <[u8; 32]>::from(Sha256::digest(preimage))), (q.payment_hash, q.payment_hash));
    (q, bytes)
}

struct Two {
    _ledger: std::sync::Arc<Ledger>,
    lnd_r: StandinNode,
    lnd_p: StandinNode,
    _requester: InProcessNode,
    _provider: InProcessNode,
    rc: Bus,
    pc: Bus,
    provider_id: String,
}

/// Two nodes on two connected stand-in lnds with a channel from the requester's to the
/// provider's; the requester's peerd asked its lnd to connect.
async fn two() -> Two {
    let ledger = Ledger::new();
    let (lnd_r, lnd_p) = (StandinNode::start(&ledger, 1).await, StandinNode::start(&ledger, 2).await);
    ledger.open_channel(lnd_r.id, lnd_p.id, 1_000_000);
    let (requester, provider) = (lnd_node(&lnd_r, lnd_r.connection()), lnd_node(&lnd_p, lnd_p.connection()));
    let (rc, pc) = (requester.client().await.unwrap(), provider.client().await.unwrap());
    for c in [&rc, &pc] {
        lcp::testkit::wait_services(c, &[ServiceId::Peerd, ServiceId::Payd, ServiceId::Lcpd]).await.unwrap();
    }
    let provider_id = hex::encode(lnd_p.id.serialize());
    // peerd's node id is lnd's identity.
    for (c, lnd) in [(&rc, &lnd_r), (&pc, &lnd_p)] {
        poll_until(PATIENCE, "peerd up on lnd", || async {
            (peerd_status(c).await.0 == Some(hex::encode(lnd.id.serialize()))).then_some(())
        })
        .await
        .unwrap();
    }
    let addr = format!("127.0.0.1:{}", lnd_p.addr.port());
    let connect = PeerdApi::Connect { node_id: provider_id.clone(), addr, persistent: true };
    match ask(&rc, ServiceId::Peerd, Body::Peerd(connect)).await.unwrap() {
        Body::Peerd(PeerdApi::Connected(info)) => assert_eq!(info.node_id, provider_id),
        other => panic!("{other:?}"),
    }
    Two { _ledger: ledger, lnd_r, lnd_p, _requester: requester, _provider: provider, rc, pc, provider_id }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_job_over_lnd_custom_messages_against_lnd_rest_standin() {
    let t = two().await;
    manifest_at(&t.rc, &t.provider_id, 0).await;
    // The provider sees the requester as its lnd's peer, by the requester's lnd identity.
    let requester_id = hex::encode(t.lnd_r.id.serialize());
    poll_until(PATIENCE, "requester at the provider", || async {
        peers(&t.pc).await.ok()?.iter().any(|p| p.node_id == requester_id && p.inbound).then_some(())
    })
    .await
    .unwrap();
    let (q, bytes) = paid_job(&t.rc, &t.provider_id, "hello").await;
    // The invoice is lnd's (payee == the provider's lnd identity == the peer lcpd talked to).
    let inv = lcp::payd::backend::decode_bolt11(&q.payment_request).unwrap();
    assert_eq!(hex::encode(inv.payee.serialize()), t.provider_id);
    assert_eq!(inv.description_hash, Some(q.terms_hash));
    assert!(!bytes.is_empty());
    // Everything LCP went through lnd's custom messages, in LCP's types.
    for lnd in [&t.lnd_r, &t.lnd_p] {
        let reqs = lnd.requests();
        for call in ["GET /v1/custommessage/subscribe", "GET /v1/peers/subscribe", "GET /v1/peers"] {
            assert!(reqs.iter().any(|r| r == call), "{call} not used: {reqs:?}");
        }
        let sent = t.lnd_r.ledger.with(&lnd.id, |n| n.custom_sent.clone());
        assert!(sent.iter().any(|(_, ty, _)| *ty == MSG_MANIFEST), "manifest sent through lnd");
        assert!(sent.iter().all(|(_, ty, _)| (42081..=42097).contains(ty)), "{sent:?}");
    }
    let (_, details) = peerd_status(&t.pc).await;
    assert_eq!((detail(&details, "transport"), detail(&details, "lnd_state")), ("lnd".into(), "up".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_message_and_lnd_restart_against_lnd_rest_standin() {
    let t = two().await;
    let first = manifest_at(&t.rc, &t.provider_id, 0).await;
    let requester_id = hex::encode(t.lnd_r.id.serialize());
    let at_provider =
        || async { peers(&t.pc).await.ok()?.into_iter().find(|p| p.node_id == requester_id).map(|p| p.session) };
    let provider_session = poll_until(PATIENCE, "session at the provider", at_provider).await.unwrap();
    // A manifest that does not decode, as if from the requester: dropped with a log line and
    // counted; the session lives on and a job still works.
    assert!(t.lnd_r.ledger.deliver_custom(t.lnd_r.id, t.lnd_p.id, MSG_MANIFEST, &[0xff, 0x01]));
    poll_until(PATIENCE, "malformed message dropped", || async {
        (detail(&peerd_status(&t.pc).await.1, "dropped_messages") == "1").then_some(())
    })
    .await
    .unwrap();
    assert_eq!(at_provider().await, Some(provider_session), "the session survived");
    paid_job(&t.rc, &t.provider_id, "before the restart").await;
    // The provider's lnd restarts while idle: its streams end, its peers drop and come back;
    // peerd reconnects, every session is new, manifests are exchanged again.
    t.lnd_p.restart().await;
    let second = manifest_at(&t.rc, &t.provider_id, first).await;
    assert_ne!(second, first);
    poll_until(PATIENCE, "a new session at the provider", || async {
        at_provider().await.filter(|s| *s != provider_session)
    })
    .await
    .unwrap();
    let subscribes = t.lnd_p.requests().iter().filter(|r| r.as_str() == "GET /v1/custommessage/subscribe").count();
    assert!(subscribes >= 2, "the custom message stream was opened again ({subscribes})");
    paid_job(&t.rc, &t.provider_id, "after the restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_sessions_and_failed_sends_start_new_sessions_against_lnd_rest_standin() {
    let t = two().await;
    let first = manifest_at(&t.rc, &t.provider_id, 0).await;
    let drop = |session| {
        let ev = PeerdApi::DropSession { node_id: t.provider_id.clone(), session, reason: "test".into() };
        t.rc.send_event(&ServiceId::Peerd, Body::Peerd(ev)).unwrap();
    };
    // DropSession (what payd and lcpd send when they lost track of a session): lnd keeps the
    // connection, a new session on it starts LCP over, and jobs work on it.
    drop(first);
    let second = manifest_at(&t.rc, &t.provider_id, first).await;
    // A DropSession for a session that is gone changes nothing (peerd handles one client's bus
    // messages in order, so the ListPeers answer comes after it).
    drop(first);
    let session = || async { peers(&t.rc).await.unwrap().into_iter().find(|p| p.node_id == t.provider_id) };
    assert_eq!(session().await.map(|p| p.session), Some(second));
    paid_job(&t.rc, &t.provider_id, "after a dropped session").await;
    // lnd fails to send (the next session's manifest): that session ends, and once lnd sends
    // again a new session begins by itself, because lnd still lists the peer.
    let failures = || t.lnd_r.ledger.with(&t.lnd_r.id, |n| n.custom_send_failures);
    t.lnd_r.ledger.with(&t.lnd_r.id, |n| n.custom_send_fails = true);
    drop(second);
    poll_until(PATIENCE, "a send failed", || async { (failures() > 0).then_some(()) }).await.unwrap();
    t.lnd_r.ledger.with(&t.lnd_r.id, |n| n.custom_send_fails = false);
    let after = manifest_at(&t.rc, &t.provider_id, second).await;
    assert!(after > second + 1, "the failed session {} was replaced by {after}", second + 1);
    paid_job(&t.rc, &t.provider_id, "after a failed send").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_macaroon_and_dead_lnd_are_clear_errors_against_lnd_rest_standin() {
    let ledger = Ledger::new();
    let (a, b) = (StandinNode::start(&ledger, 1).await, StandinNode::start(&ledger, 2).await);
    let wrong = LndConnection { macaroon: b.macaroon_path.clone(), ..a.connection() };
    let node = lnd_node(&a, wrong);
    let c = node.client().await.unwrap();
    lcp::testkit::wait_services(&c, &[ServiceId::Peerd]).await.unwrap();
    let refused = |state: String| state.contains("unavailable") && state.contains("verification failed");
    poll_until(PATIENCE, "status names the refusal", || async {
        refused(detail(&peerd_status(&c).await.1, "lnd_state")).then_some(())
    })
    .await
    .unwrap();
    match peers(&c).await {
        Err(lcp::bus::BusError::Remote(e)) => {
            assert_eq!(e.code, ErrorCode::Unavailable);
            assert!(e.message.contains("verification failed") && e.message.contains(&a.url()), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
    // No node id is claimed without lnd's word.
    assert_eq!(peerd_status(&c).await.0, None);
    let s = lcp::cli::status::run(&c, node.node.remote_endpoint().unwrap(), false, T).await.unwrap();
    assert!(s.contains("lnd_state=unavailable"), "{s}");
    // A dead lnd: connection refused, said the same way.
    b.stop();
    let dead = lnd_node(&b, b.connection());
    let c = dead.client().await.unwrap();
    lcp::testkit::wait_services(&c, &[ServiceId::Peerd]).await.unwrap();
    poll_until(PATIENCE, "status names the dead lnd", || async {
        let s = detail(&peerd_status(&c).await.1, "lnd_state");
        (s.contains("unavailable") && s.contains("cannot connect")).then_some(())
    })
    .await
    .unwrap();
}

/// Against a real lnd: set `LCP_LIVE_LND_REST` (https://HOST:PORT), `LCP_LIVE_LND_TLS_CERT`,
/// `LCP_LIVE_LND_MACAROON` (offchain:read/write, peers:read/write, info:read, invoices:read/write)
/// and optionally `LCP_LIVE_LND_NETWORK` (default regtest): peerd comes up with lnd's identity
/// and lists lnd's peers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_lnd_rest_peerd_transport() {
    let Some((conn, network)) = payd_lnd_standin::live_lnd() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = lcp::demo::node_config(dir.path()).unwrap();
    for n in [&mut cfg.node, &mut cfg.peerd.node, &mut cfg.lcpd.node, &mut cfg.jobd.node, &mut cfg.payd.node] {
        n.network = network;
    }
    cfg.peerd.transport = PeerTransport::Lnd(conn.clone());
    cfg.payd.backend = PaydBackend::Lnd(lcp::payd::lnd::LndConfig {
        network,
        conn,
        state_dir: dir.path().join("payd"),
        poll_interval: lcp::payd::lnd::DEFAULT_POLL_INTERVAL,
    });
    let node = InProcessNode::start_with(dir, cfg).unwrap();
    let c = node.client().await.unwrap();
    lcp::testkit::wait_services(&c, &[ServiceId::Peerd]).await.unwrap();
    let id = poll_until(PATIENCE, "peerd up on the live lnd", || async { peerd_status(&c).await.0 }).await.unwrap();
    assert_eq!(id.len(), 66);
    peers(&c).await.expect("lnd's peers");
}
