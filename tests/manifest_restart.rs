//! Manifests after a restart on a live connection, against a peer that follows the reference's
//! (go-lcpd's) manifest rules exactly, over BOLT #8 and over the lnd transport (the lnd REST
//! stand-in). The peer here is a model written for this test: at its start, and when lnd reports
//! the peer online, it sends its manifest only if not sent on this connection; on a manifest it
//! answers if it held none from that peer, else only if it never sent its own; unknown odd TLVs
//! mean nothing to it; lnd reporting the peer offline is a fresh state. Its provider refuses a
//! quote_request with code 10 until both manifests were exchanged, and otherwise quotes with a
//! BOLT11 invoice signed by its key.
//!
//! (a) our lcpd restarts while the connection stays up: jobs work both ways again, without any
//! connection cycle (peerd kept the peer's manifest). (b) the peer restarts (fresh state, its
//! manifest again): it gets ours and quotes. Over lnd, (c) our peerd restarts (nothing kept the
//! manifest): lcpd cycles the lnd connection when a quote is asked for, and jobs work again.
//! Over BOLT #8, (d) a peer whose manifests were all lost on the first connection: lcpd cycles
//! the connection and peerd dials it again.

mod payd_lnd_standin;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use lcp::bus::api::lcpd::{LcpdApi, QuoteArgs, QuoteRow};
use lcp::bus::api::Body;
use lcp::bus::{Bus, ServiceId};
use lcp::config::Network;
use lcp::lnd::LndConnection;
use lcp::payd::opts::PaydBackend;
use lcp::peerd::opts::PeerTransport;
use lcp::peerd::transport::{Bolt1Pings, Connection, Dialer, LocalIdentity, PeerHandle, RawMessage, TransportConfig};
use lcp::testkit::{poll_until, InProcessNode, PATIENCE};
use lcp::wire::lcp::{
    v02, Envelope, ErrorCode, LcpError, LcpMessage, Manifest, Params, QuoteRequest, QuoteResponse, StreamBegin,
    StreamChunk, StreamEnd, StreamKind, TaskTemplate, Terms,
};
use lightning::bitcoin::hashes::{sha256, Hash};
use lightning::bitcoin::secp256k1::{Secp256k1, SecretKey};
use lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};
use payd_lnd_standin::{Ledger, StandinNode};
use rand::Rng;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

const T: Duration = Duration::from_secs(30);
const MODEL: &str = "gpt-5.2";
const CHAT: &str = "openai.chat_completions.v1";
const JSON: &str = "application/json; charset=utf-8";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn input() -> Vec<u8> {
    format!(r#"{{"model":"{MODEL}","messages":[{{"role":"user","content":"hi"}}]}}"#).into_bytes()
}

/// A job asked of the model peer.
#[derive(Default)]
struct Asked {
    task_kind: String,
    params: Option<Vec<u8>>,
    content_type: String,
    content_encoding: String,
    input: Vec<u8>,
}

/// The model peer's state (one connection).
#[derive(Default)]
struct Core {
    sent: bool,
    remote: Option<Manifest>,
    asked: HashMap<[u8; 32], Asked>,
    /// What came back for its own quote_requests: (job id, message type, error code).
    answers: Vec<([u8; 32], u16, Option<u16>)>,
    /// Quote_requests it refused for want of a manifest.
    refused: u32,
    /// Restarts so far (kept across them).
    restarts: u32,
}

/// What the model peer is told to do.
enum Cmd {
    /// Restart: a fresh state, then what it does at its start.
    Restart,
    /// Ask the node for a quote (quote_request and input stream) for this job id.
    Ask([u8; 32]),
}

impl Core {
    fn manifest() -> Manifest {
        Manifest {
            protocol_version: v02::PROTOCOL_VERSION,
            max_payload_bytes: v02::DEFAULT_MAX_PAYLOAD_BYTES,
            supported_tasks: Some(vec![TaskTemplate {
                task_kind: CHAT.into(),
                params_template: Params::with_model(MODEL).encode().ok(),
                extra: Vec::new(),
            }]),
            max_stream_bytes: v02::DEFAULT_MAX_STREAM_BYTES,
            max_job_bytes: v02::DEFAULT_MAX_JOB_BYTES,
            max_inflight_jobs: None,
            extra: Vec::new(),
        }
    }

    /// At its start and on peer-online: its manifest if not sent on this connection.
    fn start(&mut self) -> Vec<LcpMessage> {
        if std::mem::replace(&mut self.sent, true) {
            return Vec::new();
        }
        vec![LcpMessage::Manifest(Self::manifest())]
    }

    fn on(&mut self, key: &SecretKey, msg: LcpMessage) -> Vec<LcpMessage> {
        match msg {
            LcpMessage::Manifest(m) => {
                let had = self.remote.replace(m).is_some();
                if !had || !self.sent {
                    self.sent = true;
                    return vec![LcpMessage::Manifest(Self::manifest())];
                }
                Vec::new()
            }
            LcpMessage::QuoteRequest(q) => {
                if !(self.sent && self.remote.is_some()) {
                    self.refused += 1;
                    let e = LcpError {
                        envelope: envelope(q.envelope.job_id),
                        code: ErrorCode::InvalidState,
                        message: Some("manifest not exchanged".into()),
                        extra: Vec::new(),
                    };
                    return vec![LcpMessage::Error(e)];
                }
                let a = Asked { task_kind: q.task_kind, params: q.params, ..Default::default() };
                self.asked.insert(q.envelope.job_id, a);
                Vec::new()
            }
            LcpMessage::StreamBegin(b) if b.stream_kind == StreamKind::Input => {
                if let Some(a) = self.asked.get_mut(&b.envelope.job_id) {
                    (a.content_type, a.content_encoding) = (b.content_type, b.content_encoding);
                }
                Vec::new()
            }
            LcpMessage::StreamChunk(c) => {
                if let Some(a) = self.asked.get_mut(&c.job_id) {
                    a.input.extend_from_slice(&c.data);
                }
                Vec::new()
            }
            LcpMessage::StreamEnd(e) => match self.asked.remove(&e.envelope.job_id) {
                Some(a) => vec![LcpMessage::QuoteResponse(quote(key, e.envelope.job_id, &a))],
                None => Vec::new(),
            },
            LcpMessage::QuoteResponse(r) => {
                self.answers.push((r.envelope.job_id, v02::MSG_QUOTE_RESPONSE, None));
                Vec::new()
            }
            LcpMessage::Error(e) => {
                self.answers.push((e.envelope.job_id, v02::MSG_ERROR, Some(e.code.code())));
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn act(&mut self, cmd: Cmd) -> Vec<LcpMessage> {
        match cmd {
            Cmd::Restart => {
                *self = Core { restarts: self.restarts + 1, ..Core::default() };
                self.start()
            }
            Cmd::Ask(job_id) => ask(job_id),
        }
    }
}

fn envelope(job_id: [u8; 32]) -> Envelope {
    Envelope { protocol_version: 2, job_id, msg_id: rand::thread_rng().gen(), expiry: now() + 300 }
}

fn quote(key: &SecretKey, job_id: [u8; 32], a: &Asked) -> QuoteResponse {
    let (price, expiry) = (7_000, now() + 600);
    let terms = Terms::new(
        2,
        job_id,
        price,
        expiry,
        &a.task_kind,
        a.params.as_deref(),
        &a.input,
        &a.content_type,
        &a.content_encoding,
    )
    .expect("terms");
    let terms_hash = terms.hash().expect("terms hash");
    let secp = Secp256k1::new();
    let invoice = InvoiceBuilder::new(Currency::Regtest)
        .description_hash(sha256::Hash::from_byte_array(terms_hash))
        .payment_hash(sha256::Hash::from_byte_array(rand::thread_rng().gen()))
        .payment_secret(PaymentSecret([3; 32]))
        .duration_since_epoch(Duration::from_secs(now()))
        .min_final_cltv_expiry_delta(18)
        .expiry_time(Duration::from_secs(600))
        .amount_milli_satoshis(price)
        .build_signed(|m| secp.sign_ecdsa_recoverable(m, key))
        .expect("invoice");
    QuoteResponse {
        envelope: envelope(job_id),
        price_msat: price,
        quote_expiry: expiry,
        terms_hash,
        payment_request: invoice.to_string(),
        extra: Vec::new(),
    }
}

fn ask(job_id: [u8; 32]) -> Vec<LcpMessage> {
    let data = input();
    let stream_id: [u8; 32] = rand::thread_rng().gen();
    let qr = QuoteRequest {
        envelope: envelope(job_id),
        task_kind: CHAT.into(),
        params: Params::with_model(MODEL).encode().ok(),
        extra: Vec::new(),
    };
    let begin = StreamBegin {
        envelope: envelope(job_id),
        stream_id,
        stream_kind: StreamKind::Input,
        total_len: Some(data.len() as u64),
        sha256: Some(Sha256::digest(&data).into()),
        content_type: JSON.into(),
        content_encoding: "identity".into(),
        extra: Vec::new(),
    };
    let chunk = StreamChunk {
        protocol_version: 2,
        job_id,
        expiry: now() + 300,
        stream_id,
        seq: 0,
        data: data.clone(),
        extra: Vec::new(),
    };
    let end = StreamEnd {
        envelope: envelope(job_id),
        stream_id,
        total_len: data.len() as u64,
        sha256: Sha256::digest(&data).into(),
        extra: Vec::new(),
    };
    vec![
        LcpMessage::QuoteRequest(qr),
        LcpMessage::StreamBegin(begin),
        LcpMessage::StreamChunk(chunk),
        LcpMessage::StreamEnd(end),
    ]
}

/// The model peer as the test sees it.
struct GoPeer {
    id: String,
    core: Arc<Mutex<Core>>,
    cmd: mpsc::UnboundedSender<Cmd>,
    /// Its BOLT #8 connection ended (a cycle would end it).
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl GoPeer {
    fn tell(&self, c: Cmd) {
        self.cmd.send(c).expect("model peer running");
    }

    fn with<R>(&self, f: impl FnOnce(&mut Core) -> R) -> R {
        f(&mut self.core.lock().expect("core"))
    }

    /// Asks the node for quotes until one comes back (a restarted lcpd refuses with code 2
    /// until its workers announced their offers again); returns the answers it got.
    async fn node_quotes(&self) -> Vec<(u16, Option<u16>)> {
        let got = Mutex::new(Vec::new());
        let quoted = poll_until(PATIENCE, "a quote from the node", || async {
            let a = self.ask_node().await;
            got.lock().expect("got").push(a);
            (a.0 == v02::MSG_QUOTE_RESPONSE).then_some(())
        })
        .await;
        let got = got.into_inner().expect("got");
        quoted.unwrap_or_else(|e| panic!("{e}: {got:?}"));
        got
    }

    /// Asks the node for a quote; returns the type (and error code) of its answer.
    async fn ask_node(&self) -> (u16, Option<u16>) {
        let job_id: [u8; 32] = rand::thread_rng().gen();
        self.tell(Cmd::Ask(job_id));
        poll_until(T, "the node's answer to the model peer's quote_request", || async {
            self.with(|c| c.answers.iter().find(|a| a.0 == job_id).map(|a| (a.1, a.2)))
        })
        .await
        .unwrap()
    }
}

fn encode(m: &LcpMessage) -> (u16, Vec<u8>) {
    m.encode().expect("model peer messages encode")
}

/// The model peer over BOLT #8: it dials `addr` as `identity` and runs until the test ends.
async fn go_peer_bolt8(addr: std::net::SocketAddr, node_id: &str, secret: [u8; 32]) -> GoPeer {
    let key = SecretKey::from_slice(&secret).expect("key");
    let identity = LocalIdentity::from_secret_bytes(secret).expect("identity");
    let id = identity.node_id().to_string();
    let remote = lcp::peerd::runtime::parse_node_id(node_id).expect("node id");
    let dialer = Dialer::new(identity, TransportConfig::default(), Arc::new(Bolt1Pings::default()));
    let Connection { handle, mut inbound } = dialer.dial(addr, remote).await.expect("dial the node");
    let init = lcp::peerd::features::our_init(Network::Devnet).encode().expect("init");
    handle.send(RawMessage::new(lcp::wire::bolt1::INIT, &init).expect("init fits")).await.expect("send init");
    let theirs = tokio::time::timeout(T, inbound.recv()).await.expect("init in time").expect("open");
    assert_eq!(theirs.msg_type(), lcp::wire::bolt1::INIT);
    let (core, closed) = (Arc::new(Mutex::new(Core::default())), Arc::new(std::sync::atomic::AtomicBool::new(false)));
    let gone = closed.clone();
    let (cmd, mut cmds) = mpsc::unbounded_channel();
    let c = core.clone();
    async fn send_all(h: &PeerHandle, out: Vec<LcpMessage>) {
        for m in out {
            let (t, p) = encode(&m);
            let _ = h.send(RawMessage::new(t, &p).expect("fits")).await;
        }
    }
    let first = c.lock().expect("core").start();
    send_all(&handle, first).await;
    tokio::spawn(async move {
        loop {
            let out = tokio::select! {
                m = inbound.recv() => match m {
                    None => return gone.store(true, std::sync::atomic::Ordering::SeqCst),
                    Some(raw) => match LcpMessage::decode(raw.msg_type(), raw.payload()) {
                        Ok(msg) => c.lock().expect("core").on(&key, msg),
                        Err(_) => Vec::new(),
                    },
                },
                Some(cmd) = cmds.recv() => c.lock().expect("core").act(cmd),
            };
            send_all(&handle, out).await;
        }
    });
    GoPeer { id, core, cmd, closed }
}

/// The model peer on stand-in lnd `me`, talking to the node on stand-in lnd `node`.
fn go_peer_lnd(ledger: Arc<Ledger>, me: &StandinNode, node: &StandinNode) -> GoPeer {
    let (g, ours) = (me.id, node.id);
    let key = ledger.with(&g, |n| n.key);
    let (mut custom, mut events) = ledger.tap(g);
    let core = Arc::new(Mutex::new(Core::default()));
    let (cmd, mut cmds) = mpsc::unbounded_channel();
    let c = core.clone();
    let line = |b: Bytes| serde_json::from_slice::<serde_json::Value>(&b).ok().map(|v| v["result"].clone());
    tokio::spawn(async move {
        loop {
            let out = tokio::select! {
                Some(l) = custom.recv() => {
                    let Some(r) = line(l) else { continue };
                    let from = r["peer"].as_str().and_then(lcp::payd::lnd::wire::b64_decode);
                    let t = r["type"].as_u64().and_then(|t| u16::try_from(t).ok());
                    let data = r["data"].as_str().and_then(lcp::payd::lnd::wire::b64_decode);
                    match (from, t, data) {
                        (Some(f), Some(t), Some(d)) if f == ours.serialize().to_vec() => match LcpMessage::decode(t, &d) {
                            Ok(msg) => c.lock().expect("core").on(&key, msg),
                            Err(_) => Vec::new(),
                        },
                        _ => Vec::new(),
                    }
                }
                Some(l) = events.recv() => {
                    let Some(r) = line(l) else { continue };
                    if r["pub_key"].as_str() != Some(&hex::encode(ours.serialize())) {
                        continue;
                    }
                    let mut core = c.lock().expect("core");
                    match r["type"].as_str() {
                        Some("PEER_ONLINE") => core.start(),
                        Some("PEER_OFFLINE") => {
                            let (answers, restarts) = (std::mem::take(&mut core.answers), core.restarts);
                            *core = Core { answers, restarts, ..Core::default() };
                            Vec::new()
                        }
                        _ => Vec::new(),
                    }
                }
                Some(cmd) = cmds.recv() => c.lock().expect("core").act(cmd),
                else => return,
            };
            for m in out {
                let (t, p) = encode(&m);
                ledger.deliver_custom(g, ours, t, &p);
            }
        }
    });
    GoPeer { id: hex::encode(g.serialize()), core, cmd, closed: Arc::default() }
}

async fn lcpd(c: &Bus, req: LcpdApi) -> Result<LcpdApi, lcp::bus::BusError> {
    match c.request(&ServiceId::Lcpd, Body::Lcpd(req), T).await? {
        Body::Lcpd(p) => Ok(p),
        other => panic!("{other:?}"),
    }
}

/// Asks our lcpd for a quote from the model peer.
async fn quote_from(c: &Bus, peer: &str) -> Result<QuoteRow, String> {
    let args = QuoteArgs {
        peer: peer.to_string(),
        task_kind: CHAT.into(),
        model: Some(MODEL.into()),
        input: input(),
        input_content_type: None,
        max_price_msat: None,
        timeout_secs: Some(5),
    };
    match lcpd(c, LcpdApi::RequestQuote(args)).await {
        Ok(LcpdApi::Quote(q)) => Ok(q),
        Ok(other) => Err(format!("{other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Waits until a quote from the model peer works (lcpd may still be starting).
async fn quote_works(c: &Bus, peer: &str, what: &str) -> QuoteRow {
    let last = Mutex::new(String::new());
    let r = poll_until(3 * PATIENCE, what, || async {
        match quote_from(c, peer).await {
            Ok(q) => Some(q),
            Err(e) => {
                *last.lock().expect("last") = e;
                None
            }
        }
    })
    .await;
    r.unwrap_or_else(|e| panic!("{e}: last answer: {}", last.lock().expect("last")))
}

fn restart_lcpd(node: &mut InProcessNode) {
    node.node.stop_service("lcpd").expect("lcpd stops");
    node.node.start_service("lcpd").expect("lcpd starts");
}

/// The checks of (a) and (b) on a node connected to the model peer `g`.
async fn restarts_both_ways(node: &mut InProcessNode, c: &Bus, g: &GoPeer) {
    // A first exchange: jobs work both ways.
    quote_works(c, &g.id, "a quote from the model peer").await;
    assert_eq!(g.ask_node().await, (v02::MSG_QUOTE_RESPONSE, None));
    // (a) Our lcpd restarts; the connection stays up and the model peer sends nothing again.
    restart_lcpd(node);
    let q = quote_works(c, &g.id, "a quote after our lcpd restarted").await;
    assert_eq!(q.peer, g.id);
    let answers = g.node_quotes().await;
    let code10 = (v02::MSG_ERROR, Some(ErrorCode::InvalidState.code()));
    assert!(!answers.contains(&code10), "our restarted provider holds the model peer's manifest: {answers:?}");
    // (b) The model peer restarts: it sends its manifest with a fresh state; it must get ours.
    g.tell(Cmd::Restart);
    poll_until(PATIENCE, "the restarted model peer holds our manifest", || async {
        g.with(|c| (c.restarts == 1 && c.remote.is_some()).then_some(()))
    })
    .await
    .unwrap();
    let refused = g.with(|c| c.refused);
    quote_from(c, &g.id).await.expect("the restarted model peer quotes at once");
    assert_eq!(g.with(|c| c.refused), refused, "no code 10 from the restarted model peer");
    assert_eq!(g.ask_node().await, (v02::MSG_QUOTE_RESPONSE, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_rules_peer_over_bolt8_survives_restarts_of_either_side() {
    let mut node = InProcessNode::start().unwrap();
    let c = node.client().await.unwrap();
    lcp::testkit::wait_services(&c, &[ServiceId::Peerd, ServiceId::Payd, ServiceId::Lcpd]).await.unwrap();
    let (node_id, listen) = lcp::testkit::peerd_address(&c).await.unwrap();
    let g = go_peer_bolt8(listen.parse().expect("listen addr"), &node_id, [0x47; 32]).await;
    restarts_both_ways(&mut node, &c, &g).await;
    // Nothing cycled the connection: the model peer's one connection is still up.
    assert!(!g.closed.load(std::sync::atomic::Ordering::SeqCst), "the model peer's connection is still up");
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_rules_peer_over_lnd_survives_restarts_of_either_side_and_of_peerd() {
    let ledger = Ledger::new();
    let (lnd_n, lnd_g) = (StandinNode::start(&ledger, 1).await, StandinNode::start(&ledger, 2).await);
    let mut node = lnd_node(&lnd_n, lnd_n.connection());
    let c = node.client().await.unwrap();
    lcp::testkit::wait_services(&c, &[ServiceId::Peerd, ServiceId::Payd, ServiceId::Lcpd]).await.unwrap();
    let g = go_peer_lnd(ledger.clone(), &lnd_g, &lnd_n);
    // Our lnd dials the model peer's lnd (so lnd can dial it again when lcpd cycles it).
    assert!(ledger.connect_peers(lnd_n.id, lnd_g.id));
    restarts_both_ways(&mut node, &c, &g).await;
    let cycles = || lnd_n.requests().iter().filter(|r| r.starts_with("DELETE /v1/peers/")).count();
    assert_eq!(cycles(), 0, "nothing cycled the lnd connection");
    // (c) Our peerd restarts: new sessions on the same lnd connection, and nobody holds the model
    // peer's manifest. Asking for a quote cycles the lnd connection once, and quotes work again.
    node.node.stop_service("peerd").unwrap();
    node.node.start_service("peerd").unwrap();
    quote_works(&c, &g.id, "a quote after our peerd restarted").await;
    assert_eq!(cycles(), 1);
    assert_eq!(g.ask_node().await, (v02::MSG_QUOTE_RESPONSE, None));
}

/// The model peer listening over BOLT #8; every manifest it sends on its first connection is
/// lost on the way, so neither our lcpd nor peerd ever holds it. Returns its node id, address
/// and the number of connections it accepted so far.
async fn go_peer_losing_first_manifests(secret: [u8; 32]) -> (String, String, Arc<Mutex<u32>>) {
    let key = SecretKey::from_slice(&secret).expect("key");
    let identity = LocalIdentity::from_secret_bytes(secret).expect("identity");
    let id = identity.node_id().to_string();
    let mut listener = lcp::peerd::transport::Listener::bind(
        "127.0.0.1:0".parse().expect("addr"),
        identity,
        TransportConfig::default(),
        Arc::new(Bolt1Pings::default()),
    )
    .await
    .expect("bind loopback");
    let addr = listener.local_addr().to_string();
    let accepted = Arc::new(Mutex::new(0u32));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Some(ev) = listener.next_event().await {
            let lcp::peerd::transport::ListenerEvent::Connected(Connection { handle, mut inbound }) = ev else {
                continue;
            };
            let n = {
                let mut c = count.lock().expect("count");
                *c += 1;
                *c
            };
            let key = key;
            tokio::spawn(async move {
                let init = lcp::peerd::features::our_init(Network::Devnet).encode().expect("init");
                let _ = handle.send(RawMessage::new(lcp::wire::bolt1::INIT, &init).expect("fits")).await;
                // A new connection is a fresh state (the reference clears it when the peer goes
                // offline).
                let mut core = Core::default();
                let lost = |out: Vec<LcpMessage>| -> Vec<LcpMessage> {
                    out.into_iter().filter(|m| n > 1 || !matches!(m, LcpMessage::Manifest(_))).collect()
                };
                let mut out = lost(core.start());
                loop {
                    for m in out.drain(..) {
                        let (t, p) = encode(&m);
                        let _ = handle.send(RawMessage::new(t, &p).expect("fits")).await;
                    }
                    let Some(raw) = inbound.recv().await else { return };
                    if let Ok(msg) = LcpMessage::decode(raw.msg_type(), raw.payload()) {
                        out = lost(core.on(&key, msg));
                    }
                }
            });
        }
    });
    (id, addr, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bolt8_connection_is_cycled_when_no_one_holds_the_reference_peers_manifest() {
    let node = InProcessNode::start().unwrap();
    let c = node.client().await.unwrap();
    lcp::testkit::wait_services(&c, &[ServiceId::Peerd, ServiceId::Payd, ServiceId::Lcpd]).await.unwrap();
    let (g, addr, accepted) = go_peer_losing_first_manifests([0x48; 32]).await;
    // We dial it, not as a persistent peer: peerd redials it once for the cycle.
    let connect = lcp::bus::api::peerd::PeerdApi::Connect { node_id: g.clone(), addr, persistent: false };
    match c.request(&ServiceId::Peerd, Body::Peerd(connect), T).await.unwrap() {
        Body::Peerd(lcp::bus::api::peerd::PeerdApi::Connected(info)) => assert_eq!(info.node_id, g),
        other => panic!("{other:?}"),
    }
    quote_works(&c, &g, "a quote from the model peer over a cycled connection").await;
    assert_eq!(*accepted.lock().unwrap(), 2, "one cycle: a second connection");
}
