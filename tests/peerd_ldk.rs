//! Interoperability of peerd's transport with LDK's `PeerManager` (lightning-net-tokio) over
//! loopback, in both directions: handshake, init exchange, ping/pong, custom messages both ways,
//! and LDK disconnecting us for an unknown even message type.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lightning::bitcoin::constants::ChainHash;
use lightning::bitcoin::secp256k1::{PublicKey, Secp256k1};
use lightning::bitcoin::Network;
use lightning::io;
use lightning::ln::msgs::{DecodeError, Init, LightningError, Ping, Pong};
use lightning::ln::peer_handler::{
    CustomMessageHandler, ErroringMessageHandler, IgnoringMessageHandler, MessageHandler, PeerManager,
};
use lightning::ln::wire::{CustomMessageReader, Type};
use lightning::sign::KeysManager;
use lightning::types::features::{InitFeatures, NodeFeatures};
use lightning::util::logger::{Logger, Record};
use lightning::util::ser::{LengthLimitedRead, LengthReadable, Writeable, Writer};
use lightning_net_tokio::SocketDescriptor;
use tokio::sync::mpsc;

use lcp::peerd::transport::{
    Bolt1Pings, Connection, Dialer, DisconnectReason, Intercept, Listener, ListenerEvent, LocalIdentity, NodeId,
    PassThrough, PingHooks, RawMessage, TransportConfig,
};

const LCP_MANIFEST: u16 = 42081;
const UNKNOWN_EVEN: u16 = 42082;
const INIT: u16 = 16;
const PING: u16 = 18;
const PONG: u16 = 19;
const WAIT: Duration = Duration::from_secs(10);

/// A custom message as LDK sees it: type and opaque payload.
#[derive(Debug, Clone, PartialEq)]
struct Custom {
    ty: u16,
    data: Vec<u8>,
}

impl Writeable for Custom {
    fn write<W: Writer>(&self, w: &mut W) -> Result<(), io::Error> {
        w.write_all(&self.data)
    }
}

impl Type for Custom {
    fn type_id(&self) -> u16 {
        self.ty
    }
}

/// Accepts odd type 42081 only (so 42082 is an unknown even type to LDK) and reports what
/// happens on channels the test waits on.
struct Recorder {
    received: mpsc::UnboundedSender<(PublicKey, Custom)>,
    connected: mpsc::UnboundedSender<PublicKey>,
    disconnected: mpsc::UnboundedSender<PublicKey>,
    outbox: Mutex<Vec<(PublicKey, Custom)>>,
}

impl CustomMessageReader for Recorder {
    type CustomMessage = Custom;
    fn read<R: LengthLimitedRead>(&self, message_type: u16, buffer: &mut R) -> Result<Option<Custom>, DecodeError> {
        if message_type != LCP_MANIFEST {
            return Ok(None);
        }
        let mut data = vec![0u8; buffer.remaining_bytes() as usize];
        buffer.read_exact(&mut data).map_err(|_| DecodeError::ShortRead)?;
        Ok(Some(Custom { ty: message_type, data }))
    }
}

impl CustomMessageHandler for Recorder {
    fn handle_custom_message(&self, msg: Custom, sender: PublicKey) -> Result<(), LightningError> {
        let _ = self.received.send((sender, msg));
        Ok(())
    }
    fn get_and_clear_pending_msg(&self) -> Vec<(PublicKey, Custom)> {
        std::mem::take(&mut *self.outbox.lock().expect("outbox lock"))
    }
    fn peer_disconnected(&self, their_node_id: PublicKey) {
        let _ = self.disconnected.send(their_node_id);
    }
    fn peer_connected(&self, their_node_id: PublicKey, _msg: &Init, _inbound: bool) -> Result<(), ()> {
        let _ = self.connected.send(their_node_id);
        Ok(())
    }
    fn provided_node_features(&self) -> NodeFeatures {
        NodeFeatures::empty()
    }
    fn provided_init_features(&self, _their_node_id: PublicKey) -> InitFeatures {
        InitFeatures::empty()
    }
}

struct StderrLogger;
impl Logger for StderrLogger {
    fn log(&self, record: Record) {
        eprintln!("ldk {:?} {}", record.level, record.args);
    }
}

type Ldk = PeerManager<
    SocketDescriptor,
    Arc<ErroringMessageHandler>,
    Arc<IgnoringMessageHandler>,
    Arc<IgnoringMessageHandler>,
    Arc<StderrLogger>,
    Arc<Recorder>,
    Arc<KeysManager>,
    Arc<IgnoringMessageHandler>,
>;

struct LdkNode {
    pm: Arc<Ldk>,
    recorder: Arc<Recorder>,
    node_id: PublicKey,
    received: mpsc::UnboundedReceiver<(PublicKey, Custom)>,
    connected: mpsc::UnboundedReceiver<PublicKey>,
    disconnected: mpsc::UnboundedReceiver<PublicKey>,
}

fn ldk_node() -> LdkNode {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970");
    let keys = Arc::new(KeysManager::new(&[42; 32], now.as_secs(), now.subsec_nanos(), true));
    let node_id = PublicKey::from_secret_key(&Secp256k1::new(), &keys.get_node_secret_key());
    let (rtx, received) = mpsc::unbounded_channel();
    let (ctx, connected) = mpsc::unbounded_channel();
    let (dtx, disconnected) = mpsc::unbounded_channel();
    let recorder =
        Arc::new(Recorder { received: rtx, connected: ctx, disconnected: dtx, outbox: Mutex::new(Vec::new()) });
    let handler = MessageHandler {
        chan_handler: Arc::new(ErroringMessageHandler::new()),
        route_handler: Arc::new(IgnoringMessageHandler {}),
        onion_message_handler: Arc::new(IgnoringMessageHandler {}),
        custom_message_handler: Arc::clone(&recorder),
        send_only_message_handler: Arc::new(IgnoringMessageHandler {}),
    };
    let pm = Arc::new(PeerManager::new(handler, now.as_secs() as u32, &[7; 32], Arc::new(StderrLogger), keys));
    LdkNode { pm, recorder, node_id, received, connected, disconnected }
}

fn our_identity() -> LocalIdentity {
    LocalIdentity::from_secret_bytes([0x5a; 32]).expect("valid key")
}

fn ldk_id_as_ours(pk: &PublicKey) -> NodeId {
    NodeId::from_bytes(pk.serialize()).expect("LDK node id is a valid point")
}

fn config() -> TransportConfig {
    let mut c = TransportConfig::default();
    c.connection.keepalive = None;
    c
}

/// Init with no features and the regtest chain hash, encoded by LDK.
fn our_init() -> RawMessage {
    let init = Init {
        features: InitFeatures::empty(),
        networks: Some(vec![ChainHash::using_genesis_block(Network::Regtest)]),
        remote_network_address: None,
    };
    RawMessage::new(INIT, &init.encode()).expect("init fits")
}

async fn recv_type(conn: &mut Connection, ty: u16) -> RawMessage {
    tokio::time::timeout(WAIT, async {
        loop {
            match conn.inbound.recv().await {
                Some(m) if m.msg_type() == ty => return m,
                Some(_) => continue,
                None => panic!("connection closed while waiting for type {ty}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no message of type {ty} within {WAIT:?}"))
}

async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap_or_else(|| panic!("channel closed waiting for {what}"))
}

/// Everything after the handshake, identical in both directions.
async fn exercise(ldk: &mut LdkNode, mut conn: Connection, our_id: NodeId) {
    assert_eq!(conn.handle.remote(), ldk_id_as_ours(&ldk.node_id));

    // Init both ways; LDK accepts ours (it reports the peer connected).
    let their_init = recv_type(&mut conn, INIT).await;
    Init::read_from_fixed_length_buffer(&mut &their_init.payload()[..]).expect("LDK's init decodes");
    conn.handle.send(our_init()).await.expect("send init");
    let connected = next(&mut ldk.connected, "LDK peer_connected").await;
    assert_eq!(ldk_id_as_ours(&connected), our_id);

    // Ping answered with a pong of the requested size.
    let ping = Ping { ponglen: 10, byteslen: 4 };
    conn.handle.send(RawMessage::new(PING, &ping.encode()).expect("ping fits")).await.expect("send ping");
    let pong = recv_type(&mut conn, PONG).await;
    let pong = Pong::read_from_fixed_length_buffer(&mut &pong.payload()[..]).expect("pong decodes");
    assert_eq!(pong.byteslen, 10);

    // Custom message from us to LDK.
    let payload = b"manifest from peerd".to_vec();
    conn.handle.send(RawMessage::new(LCP_MANIFEST, &payload).expect("fits")).await.expect("send custom");
    let (sender, msg) = next(&mut ldk.received, "custom message at LDK").await;
    assert_eq!(ldk_id_as_ours(&sender), our_id);
    assert_eq!(msg, Custom { ty: LCP_MANIFEST, data: payload });

    // Custom message from LDK to us.
    let back = b"manifest from ldk".to_vec();
    let our_pk = PublicKey::from_slice(&our_id.to_bytes()).expect("valid id");
    ldk.recorder.outbox.lock().expect("outbox lock").push((our_pk, Custom { ty: LCP_MANIFEST, data: back.clone() }));
    ldk.pm.process_events();
    let got = recv_type(&mut conn, LCP_MANIFEST).await;
    assert_eq!(got.payload(), &back[..]);

    // An unknown even type makes LDK drop us.
    conn.handle
        .send(RawMessage::new(UNKNOWN_EVEN, b"must be understood").expect("fits"))
        .await
        .expect("send unknown even");
    let gone = next(&mut ldk.disconnected, "LDK peer_disconnected").await;
    assert_eq!(ldk_id_as_ours(&gone), our_id);
    let reason = tokio::time::timeout(WAIT, conn.handle.closed()).await.expect("our side sees the close");
    assert!(matches!(reason, DisconnectReason::RemoteClosed | DisconnectReason::Io(_)), "unexpected reason {reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldk_dials_us() {
    let mut ldk = ldk_node();
    let identity = our_identity();
    let our_id = identity.node_id();
    let mut listener = Listener::bind("127.0.0.1:0".parse().expect("addr"), identity, config(), Arc::new(PassThrough))
        .await
        .expect("bind");
    let our_pk = PublicKey::from_slice(&our_id.to_bytes()).expect("valid id");
    let addr = listener.local_addr();
    let pm = Arc::clone(&ldk.pm);
    let ldk_conn = tokio::spawn(async move {
        let fut = lightning_net_tokio::connect_outbound(pm, our_pk, addr).await.expect("LDK connects");
        fut.await;
    });
    let conn = match tokio::time::timeout(WAIT, listener.next_event()).await {
        Ok(Some(ListenerEvent::Connected(c))) => c,
        other => panic!("expected a connection, got {other:?}"),
    };
    exercise(&mut ldk, conn, our_id).await;
    tokio::time::timeout(WAIT, ldk_conn).await.expect("LDK connection future ends").expect("LDK task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn we_dial_ldk() {
    let mut ldk = ldk_node();
    let identity = our_identity();
    let our_id = identity.node_id();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr: SocketAddr = tcp.local_addr().expect("addr");
    let pm = Arc::clone(&ldk.pm);
    let ldk_side = tokio::spawn(async move {
        let (stream, _) = tcp.accept().await.expect("accept");
        let std_stream = stream.into_std().expect("std stream");
        lightning_net_tokio::setup_inbound(pm, std_stream).await;
    });
    let dialer = Dialer::new(identity, config(), Arc::new(PassThrough));
    let conn = dialer.dial(addr, ldk_id_as_ours(&ldk.node_id)).await.expect("handshake with LDK");
    exercise(&mut ldk, conn, our_id).await;
    tokio::time::timeout(WAIT, ldk_side).await.expect("LDK connection future ends").expect("LDK task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialing_ldk_with_the_wrong_node_id_fails_the_handshake() {
    let ldk = ldk_node();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let pm = Arc::clone(&ldk.pm);
    tokio::spawn(async move {
        if let Ok((stream, _)) = tcp.accept().await {
            if let Ok(s) = stream.into_std() {
                lightning_net_tokio::setup_inbound(pm, s).await;
            }
        }
    });
    let wrong = LocalIdentity::from_secret_bytes([0x33; 32]).expect("key").node_id();
    let dialer = Dialer::new(our_identity(), config(), Arc::new(PassThrough));
    match dialer.dial(addr, wrong).await {
        Err(e) => {
            let reason = DisconnectReason::from(e);
            assert!(matches!(reason, DisconnectReason::HandshakeFailed(_)), "unexpected {reason}");
        }
        Ok(c) => panic!("handshake with the wrong key succeeded: {:?}", c.handle),
    }
}

/// Our BOLT #1 ping hooks, reporting each inbound ping to the test.
struct CountingPings {
    inner: Bolt1Pings,
    seen: mpsc::UnboundedSender<()>,
}

impl PingHooks for CountingPings {
    fn ping(&self) -> RawMessage {
        self.inner.ping()
    }
    fn on_inbound(&self, msg: &RawMessage) -> Intercept {
        if msg.msg_type() == PING {
            let _ = self.seen.send(());
        }
        self.inner.on_inbound(msg)
    }
}

/// LDK pings on every timer tick only once the previous ping was answered, so a new ping at
/// each tick proves it received our pongs. (Current-thread runtime: our pong is queued before
/// the test task runs again, and replies go out before queued application messages.)
#[tokio::test]
async fn ldk_pings_are_answered_by_our_hooks() {
    let mut ldk = ldk_node();
    let identity = our_identity();
    let our_id = identity.node_id();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr: SocketAddr = tcp.local_addr().expect("addr");
    let pm = Arc::clone(&ldk.pm);
    tokio::spawn(async move {
        let (stream, _) = tcp.accept().await.expect("accept");
        let std_stream = stream.into_std().expect("std stream");
        lightning_net_tokio::setup_inbound(pm, std_stream).await;
    });
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let hooks = Arc::new(CountingPings { inner: Bolt1Pings::default(), seen: seen_tx });
    let dialer = Dialer::new(identity, config(), hooks);
    let mut conn = dialer.dial(addr, ldk_id_as_ours(&ldk.node_id)).await.expect("handshake with LDK");
    recv_type(&mut conn, INIT).await;
    conn.handle.send(our_init()).await.expect("send init");
    next(&mut ldk.connected, "LDK peer_connected").await;

    for round in 0u8..3 {
        ldk.pm.timer_tick_occurred();
        next(&mut seen, "a ping from LDK").await;
        // Traffic after the pong, so the next tick cannot disconnect us even if LDK had not
        // counted the pong; it then would not ping again and the wait above would fail.
        conn.handle.send(RawMessage::new(LCP_MANIFEST, &[round]).expect("fits")).await.expect("send");
        let (_, msg) = next(&mut ldk.received, "custom message at LDK").await;
        assert_eq!(msg.data, vec![round]);
    }
    assert!(ldk.pm.peer_by_node_id(&PublicKey::from_slice(&our_id.to_bytes()).expect("id")).is_some());
    assert!(!conn.handle.is_closed());
}

/// The whole peerd runtime (init exchange with our features, routing to lcpd, `Send` from lcpd)
/// against LDK, LDK dialing us and us dialing LDK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldk_and_the_peerd_runtime_exchange_lcp_messages_both_ways() {
    use lcp::bus::api::{Body, PeerdApi};
    use lcp::bus::ServiceId;
    use lcp::testkit::PeerdNode;

    for ldk_dials in [true, false] {
        let mut ldk = ldk_node();
        let mut p = PeerdNode::start().await.expect("peerd");
        let our_pk = PublicKey::from_slice(&hex::decode(&p.node_id).expect("hex")).expect("key");
        let ldk_hex = hex::encode(ldk.node_id.serialize());
        if ldk_dials {
            let addr: SocketAddr = p.listen.parse().expect("addr");
            let pm = Arc::clone(&ldk.pm);
            tokio::spawn(async move {
                if let Some(fut) = lightning_net_tokio::connect_outbound(pm, our_pk, addr).await {
                    fut.await;
                }
            });
        } else {
            let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = tcp.local_addr().expect("addr");
            let pm = Arc::clone(&ldk.pm);
            tokio::spawn(async move {
                let (stream, _) = tcp.accept().await.expect("accept");
                lightning_net_tokio::setup_inbound(pm, stream.into_std().expect("std")).await;
            });
            let req = PeerdApi::Connect { node_id: ldk_hex.clone(), addr: addr.to_string(), persistent: false };
            let r = p.client.request(&ServiceId::Peerd, Body::Peerd(req), WAIT).await.expect("connect to LDK");
            assert!(matches!(r, Body::Peerd(PeerdApi::Connected(_))), "{r:?}");
        }
        // LDK accepted our init (features, chain), and peerd told lcpd about the peer.
        assert_eq!(next(&mut ldk.connected, "LDK peer_connected").await, our_pk);
        let session = match PeerdNode::next_event(&mut p.lcpd_rx).await.expect("event") {
            PeerdApi::PeerConnected { peer, their_init } => {
                assert_eq!(peer.node_id, ldk_hex);
                Init::read_from_fixed_length_buffer(&mut &their_init[2..]).expect("LDK's init as peerd kept it");
                peer.session
            }
            other => panic!("{other:?}"),
        };
        // LDK -> our lcpd.
        let payload = vec![1u8, 2, 0, 2];
        ldk.recorder.outbox.lock().expect("lock").push((our_pk, Custom { ty: LCP_MANIFEST, data: payload.clone() }));
        ldk.pm.process_events();
        match PeerdNode::next_event(&mut p.lcpd_rx).await.expect("message") {
            PeerdApi::Message { seq, msg, .. } => {
                assert_eq!(seq, 0);
                assert_eq!(msg, [&LCP_MANIFEST.to_be_bytes()[..], &payload].concat());
            }
            other => panic!("{other:?}"),
        }
        // our lcpd -> LDK.
        let manifest = hex::decode("a461010200020b0240000e034000000f03800000").expect("hex");
        let send = PeerdApi::Send { node_id: ldk_hex.clone(), session, msg: manifest.clone() };
        p.lcpd.send_event(&ServiceId::Peerd, Body::Peerd(send)).expect("send");
        let (from, got) = next(&mut ldk.received, "manifest at LDK").await;
        assert_eq!((from, got.data), (our_pk, manifest[2..].to_vec()));
    }
}
