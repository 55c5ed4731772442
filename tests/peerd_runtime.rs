//! peerd's runtime: two peerd instances connected over loopback, with test clients on each bus
//! standing in for lcpd and payd, so every routed message and event is observed.

use lcp::bus::api::peerd::{PeerInfo, PeerdApi};
use lcp::bus::api::Body;
use lcp::bus::{Bus, Incoming, ServiceId};
use lcp::testkit::{poll_until, PeerdNode, PATIENCE};
use lcp::wire::bolt1::Init;
use std::time::Duration;
use tokio::sync::mpsc::Receiver;

const T: Duration = Duration::from_secs(10);

type PeerNode = PeerdNode;

async fn peer_node() -> PeerNode {
    PeerdNode::start().await.unwrap()
}

async fn next_event(rx: &mut Receiver<Incoming>) -> PeerdApi {
    PeerdNode::next_event(rx).await.unwrap()
}

fn start_peerd(ep: &lcp::bus::Endpoint, cfg: &lcp::peerd::PeerdConfig) -> lcp::node::ServiceThread {
    PeerdNode::spawn_peerd(ep, cfg).unwrap()
}

async fn connect(from: &PeerNode, to: &PeerNode, persistent: bool) -> Result<PeerInfo, lcp::bus::BusError> {
    let req = PeerdApi::Connect { node_id: to.node_id.clone(), addr: to.listen.clone(), persistent };
    match from.client.request(&ServiceId::Peerd, Body::Peerd(req), T).await? {
        Body::Peerd(PeerdApi::Connected(info)) => Ok(info),
        other => panic!("{other:?}"),
    }
}

fn send(from: &Bus, to: &str, session: u64, msg: Vec<u8>) {
    from.send_event(&ServiceId::Peerd, Body::Peerd(PeerdApi::Send { node_id: to.into(), session, msg })).unwrap();
}

fn connected(ev: PeerdApi) -> (PeerInfo, Vec<u8>) {
    match ev {
        PeerdApi::PeerConnected { peer, their_init } => (peer, their_init),
        other => panic!("expected PeerConnected, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_connect_exchange_init_and_messages_are_routed_by_type() {
    let mut a = peer_node().await;
    let mut b = peer_node().await;
    let info = connect(&a, &b, false).await.unwrap();
    assert_eq!(info.node_id, b.node_id);
    assert!(!info.inbound);
    // Both services on both sides hear of the connection, with the peer's init.
    let (pa, init_b) = connected(next_event(&mut a.lcpd_rx).await);
    assert_eq!(pa.node_id, b.node_id);
    connected(next_event(&mut a.payd_rx).await);
    let (pb, init_a) = connected(next_event(&mut b.lcpd_rx).await);
    assert_eq!((pb.node_id.as_str(), pb.inbound), (a.node_id.as_str(), true));
    connected(next_event(&mut b.payd_rx).await);
    for raw in [&init_a, &init_b] {
        assert_eq!(&raw[..2], &[0, 16]);
        let init = Init::decode(&raw[2..]).unwrap();
        assert_eq!(
            init.networks.as_deref(),
            Some(&[lcp::peerd::features::chain_hash(lcp::config::Network::Devnet)][..])
        );
    }
    // LCP types go to lcpd, channel types to payd, each with its own sequence per session.
    let manifest = hex::decode("a461010200020b0240000e034000000f03800000").unwrap();
    send(&a.lcpd, &b.node_id, pa.session, manifest.clone());
    let channel_msg = [vec![0, 32], vec![7u8; 100]].concat(); // open_channel-typed bytes
    send(&a.payd, &b.node_id, pa.session, channel_msg.clone());
    send(&a.lcpd, &b.node_id, pa.session, [vec![0xa4, 0x73], vec![1, 2]].concat()); // unknown odd 42099: ignored
    send(&a.lcpd, &b.node_id, pa.session, manifest.clone());
    send(&a.lcpd, &b.node_id, pa.session + 1000, manifest.clone()); // wrong session: dropped
    for want_seq in [0, 1] {
        match next_event(&mut b.lcpd_rx).await {
            PeerdApi::Message { node_id, session, seq, msg } => {
                assert_eq!((node_id.as_str(), session, seq), (a.node_id.as_str(), pb.session, want_seq));
                assert_eq!(msg, manifest);
            }
            other => panic!("{other:?}"),
        }
    }
    match next_event(&mut b.payd_rx).await {
        PeerdApi::Message { seq, msg, .. } => assert_eq!((seq, msg), (0, channel_msg)),
        other => panic!("{other:?}"),
    }
    // The peer list shows the connection on both sides.
    match b.client.request(&ServiceId::Peerd, Body::Peerd(PeerdApi::ListPeers), T).await.unwrap() {
        Body::Peerd(PeerdApi::Peers(p)) => {
            assert_eq!(p.iter().map(|p| p.node_id.as_str()).collect::<Vec<_>>(), [a.node_id.as_str()])
        }
        other => panic!("{other:?}"),
    }
    // An unknown even type ends the connection; both sides' services hear of it.
    send(&a.lcpd, &b.node_id, pa.session, vec![0xa4, 0x74]);
    for rx in [&mut a.lcpd_rx, &mut a.payd_rx, &mut b.lcpd_rx, &mut b.payd_rx] {
        match next_event(rx).await {
            PeerdApi::PeerDisconnected { .. } => {}
            other => panic!("expected PeerDisconnected, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_peers_are_redialed_and_survive_a_restart() {
    let mut a = peer_node().await;
    let mut b = peer_node().await;
    let first = connect(&a, &b, true).await.unwrap();
    assert!(first.persistent);
    connected(next_event(&mut a.lcpd_rx).await);
    connected(next_event(&mut b.lcpd_rx).await);
    // B drops the connection; A redials on its own.
    let req = PeerdApi::Disconnect { node_id: a.node_id.clone() };
    assert_eq!(b.client.request(&ServiceId::Peerd, Body::Peerd(req), T).await.unwrap(), Body::Peerd(PeerdApi::Done));
    assert!(matches!(next_event(&mut a.lcpd_rx).await, PeerdApi::PeerDisconnected { .. }));
    assert!(matches!(next_event(&mut b.lcpd_rx).await, PeerdApi::PeerDisconnected { .. }));
    let (again, _) = connected(next_event(&mut a.lcpd_rx).await);
    assert!(again.session > first.session && again.persistent);
    // A's peerd restarts: the persistent peer is in its database and is dialed again.
    a.peerd.take().unwrap().stop().unwrap();
    assert!(matches!(next_event(&mut b.lcpd_rx).await, PeerdApi::PeerConnected { .. }));
    assert!(matches!(next_event(&mut b.lcpd_rx).await, PeerdApi::PeerDisconnected { .. }));
    a.peerd = Some(start_peerd(&a.endpoint, &a.config));
    let (p, _) = connected(next_event(&mut b.lcpd_rx).await);
    assert_eq!(p.node_id, a.node_id);
    // Disconnect on A forgets the peer: no redial after it.
    let req = PeerdApi::Disconnect { node_id: b.node_id.clone() };
    let _ = a.client.request(&ServiceId::Peerd, Body::Peerd(req), T).await.unwrap();
    let listed = poll_until(PATIENCE, "A without peers", || async {
        match a.client.request(&ServiceId::Peerd, Body::Peerd(PeerdApi::ListPeers), T).await.ok()? {
            Body::Peerd(PeerdApi::Peers(p)) if p.is_empty() => Some(()),
            _ => None,
        }
    })
    .await;
    assert!(listed.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnecting_a_persistent_peer_that_is_away_forgets_it() {
    let mut a = peer_node().await;
    let mut b = peer_node().await;
    connect(&a, &b, true).await.unwrap();
    connected(next_event(&mut a.lcpd_rx).await);
    connected(next_event(&mut b.lcpd_rx).await);
    // B goes away: A is between connections, redialing.
    b.peerd.take().unwrap().stop().unwrap();
    assert!(matches!(next_event(&mut a.lcpd_rx).await, PeerdApi::PeerDisconnected { .. }));
    // Disconnect still does what it says: A forgets B (no error because B is not connected now)...
    let req = || Body::Peerd(PeerdApi::Disconnect { node_id: b.node_id.clone() });
    assert_eq!(a.client.request(&ServiceId::Peerd, req(), T).await.unwrap(), Body::Peerd(PeerdApi::Done));
    // ...so the second time there is nothing left to disconnect.
    let again = a.client.request(&ServiceId::Peerd, req(), T).await.unwrap_err().to_string();
    assert!(again.starts_with("not_found:"), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_connect_requests_get_clear_errors() {
    let a = peer_node().await;
    let b = peer_node().await;
    let e = |body| async { a.client.request(&ServiceId::Peerd, Body::Peerd(body), T).await.unwrap_err().to_string() };
    let bad_id = e(PeerdApi::Connect { node_id: "zz".into(), addr: b.listen.clone(), persistent: false }).await;
    assert!(bad_id.starts_with("invalid_argument:") && bad_id.contains("not hex"), "{bad_id}");
    // Right address, wrong key: the BOLT #8 handshake fails.
    let wrong = a.node_id.clone();
    let wrong_key = e(PeerdApi::Connect { node_id: wrong, addr: b.listen.clone(), persistent: false }).await;
    assert!(wrong_key.starts_with("unavailable:"), "{wrong_key}");
    let nobody =
        e(PeerdApi::Connect { node_id: b.node_id.clone(), addr: "127.0.0.1:1".into(), persistent: false }).await;
    assert!(nobody.starts_with("unavailable:"), "{nobody}");
    let not_connected = e(PeerdApi::Disconnect { node_id: b.node_id.clone() }).await;
    assert!(not_connected.starts_with("not_found:"), "{not_connected}");
    // After all that, a good connect still works.
    assert!(connect(&a, &b, false).await.is_ok());
}

fn cli(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(lcp::testkit::bin_path("lcp-cli"))
        .arg("--datadir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lcp_cli_peer_commands_between_two_process_nodes() {
    let a = lcp::testkit::ProcessNode::start(&[]).unwrap();
    let b = lcp::testkit::ProcessNode::start(&[]).unwrap();
    let bc = b.client().await.unwrap();
    let (b_id, b_listen) = lcp::testkit::peerd_address(&bc).await.unwrap();
    bc.close();
    let (ad, bd) = (a.dir.path().to_path_buf(), b.dir.path().to_path_buf());
    let uri = format!("{b_id}@{b_listen}");
    let (out_a, out_b) = tokio::task::spawn_blocking(move || {
        let (ok, out, err) = cli(&ad, &["peer", "connect", &uri]);
        assert!(ok && out.starts_with("connected: ") && out.contains(&b_id), "{out}{err}");
        let (ok, list, _) = cli(&ad, &["peer", "list", "--json"]);
        assert!(ok);
        let (ok, list_b, _) = cli(&bd, &["peer", "list"]);
        assert!(ok);
        let (ok, out, err) = cli(&ad, &["peer", "disconnect", &b_id, "--json"]);
        assert!(ok, "{out}{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!((v["node_id"].as_str(), v["disconnected"].as_bool()), (Some(b_id.as_str()), Some(true)), "{out}");
        let (ok, out, err) = cli(&ad, &["peer", "connect", &uri]);
        assert!(ok && out.contains(&b_id), "{out}{err}");
        let (ok, out, err) = cli(&ad, &["peer", "disconnect", &b_id]);
        assert!(ok && out.contains("disconnected"), "{out}{err}");
        let (ok, _, err) = cli(&ad, &["peer", "connect", "nonsense"]);
        assert!(!ok && err.starts_with("lcp-cli: error: ") && err.contains("NODEID@HOST:PORT"), "{err}");
        (list, list_b)
    })
    .await
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out_a).unwrap();
    assert_eq!(v[0]["inbound"], false);
    assert!(out_b.contains("inbound"), "{out_b}");
}
