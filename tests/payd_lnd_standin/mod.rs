//! A local stand-in for lnd's REST API, written for payd's tests: HTTPS with a self-signed
//! certificate marked as a CA (as lnd's `tls.cert` is), the macaroon header checked on every
//! request, and the request and response shapes lnd documents (protojson field names, 64-bit
//! integers as strings, base64 bytes, streams of `{"result": ...}` lines, errors as
//! `{"code", "message"}`). Several stand-in nodes share one ledger, so a payment from one settles
//! an invoice of another and moves the balances of their channel.
//!
//! Like lnd's gateway, streaming calls send their head only with their first message: a
//! `/v2/router/send` with `no_inflight_updates` answers when the payment is final, and the invoice
//! subscription answers when the first invoice changes.
//!
//! Peers (for peerd's lnd transport): stand-in nodes of one ledger connect to each other
//! (`POST /v1/peers`, or [`Ledger::connect_peers`]), list them (`GET /v1/peers`), report them
//! online and offline on `GET /v1/peers/subscribe`, and deliver custom messages to each other
//! (`POST /v1/custommessage` on one, a line on `GET /v1/custommessage/subscribe` of the other), as
//! the ledger delivers payments. [`StandinNode::restart`] is an lnd restart: its streams end, its
//! peers go offline, it serves again on the same port and its peers come back.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use lcp::lnd::LndConnection;
use lcp::payd::lnd::wire::{b64_decode, b64_encode};
use lcp::payd::lnd::LndConfig;
use lightning::bitcoin::hashes::{sha256, Hash};
use lightning::bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use lightning_invoice::{Bolt11Invoice, Bolt11InvoiceDescriptionRef, Currency, InvoiceBuilder, PaymentSecret};
use serde_json::{json, Value};
use sha2::Digest;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

type Body = BoxBody<Bytes, Infallible>;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

/// A body fed line by line through a channel.
struct ChanBody(mpsc::UnboundedReceiver<Bytes>);

impl hyper::body::Body for ChanBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

#[derive(Clone, Debug)]
pub struct StInvoice {
    pub bolt11: String,
    pub hash: [u8; 32],
    pub preimage: [u8; 32],
    pub amount_msat: u64,
    pub description_hash: [u8; 32],
    pub created: u64,
    pub expiry: u64,
    pub settled: bool,
    pub amt_paid_msat: u64,
    pub settle_date: u64,
    pub settle_index: u64,
    pub add_index: u64,
}

impl StInvoice {
    fn state(&self) -> &'static str {
        if self.settled {
            "SETTLED"
        } else if now() >= self.created + self.expiry {
            "CANCELED"
        } else {
            "OPEN"
        }
    }

    fn json(&self) -> Value {
        json!({
            "memo": "",
            "r_preimage": b64_encode(&self.preimage, false),
            "r_hash": b64_encode(&self.hash, false),
            "value": (self.amount_msat / 1000).to_string(),
            "value_msat": self.amount_msat.to_string(),
            "settled": self.settled,
            "creation_date": self.created.to_string(),
            "settle_date": self.settle_date.to_string(),
            "payment_request": self.bolt11,
            "description_hash": b64_encode(&self.description_hash, false),
            "expiry": self.expiry.to_string(),
            "amt_paid_msat": self.amt_paid_msat.to_string(),
            "state": self.state(),
            "settle_index": self.settle_index.to_string(),
            "add_index": self.add_index.to_string(),
        })
    }
}

#[derive(Clone, Debug)]
pub struct StPayment {
    pub hash: [u8; 32],
    pub value_msat: u64,
    pub status: &'static str,
    pub preimage: Option<[u8; 32]>,
    pub failure_reason: &'static str,
}

impl StPayment {
    fn json(&self) -> Value {
        json!({
            "payment_hash": hex::encode(self.hash),
            "value": (self.value_msat / 1000).to_string(),
            "value_msat": self.value_msat.to_string(),
            "payment_preimage": self.preimage.map(hex::encode).unwrap_or_default(),
            "status": self.status,
            "fee_msat": "0",
            "failure_reason": self.failure_reason,
            "htlcs": [],
            "payment_index": "1",
        })
    }
}

#[derive(Clone, Debug)]
pub struct StChannel {
    pub remote: PublicKey,
    pub local_sat: u64,
    pub remote_sat: u64,
    pub reserve_sat: u64,
    pub active: bool,
}

/// One stand-in node's state.
pub struct NodeState {
    pub key: SecretKey,
    pub id: PublicKey,
    pub invoices: HashMap<[u8; 32], StInvoice>,
    pub payments: HashMap<[u8; 32], StPayment>,
    pub channels: Vec<StChannel>,
    subscribers: Vec<mpsc::UnboundedSender<Bytes>>,
    next_add: u64,
    next_settle: u64,
    /// Requests seen, `METHOD path`.
    pub requests: Vec<String>,
    /// Serve the invoice subscription (else answer it with an error).
    pub subscription: bool,
    /// `POST /v2/router/send` calls that reached the router.
    pub sends: u64,
    /// Connected peers: address and whether they dialed us.
    pub peers: HashMap<PublicKey, (String, bool)>,
    peer_subscribers: Vec<mpsc::UnboundedSender<Bytes>>,
    custom_subscribers: Vec<mpsc::UnboundedSender<Bytes>>,
    /// Custom messages this node sent: (to, type, data).
    pub custom_sent: Vec<(PublicKey, u16, Vec<u8>)>,
    /// While set, `POST /v1/custommessage` fails (lnd's 500 with a gRPC error) and sends nothing.
    pub custom_send_fails: bool,
    /// `POST /v1/custommessage` calls failed that way.
    pub custom_send_failures: u64,
    /// The REST address (where peers dial it).
    pub addr: String,
}

fn peer_event(node: &PublicKey, online: bool) -> Bytes {
    let kind = if online { "PEER_ONLINE" } else { "PEER_OFFLINE" };
    line(json!({ "result": { "pub_key": hex::encode(node.serialize()), "type": kind } }))
}

fn custom_line(from: &PublicKey, msg_type: u16, data: &[u8]) -> Bytes {
    line(json!({ "result": {
        "peer": b64_encode(&from.serialize(), false), "type": msg_type, "data": b64_encode(data, false)
    } }))
}

/// The shared ledger of all stand-in nodes.
#[derive(Default)]
pub struct Ledger {
    nodes: Mutex<HashMap<PublicKey, NodeState>>,
    /// Bumped on every change.
    changed: watch::Sender<u64>,
    /// While true, payments stay in flight.
    hold: watch::Sender<bool>,
}

impl Ledger {
    pub fn new() -> Arc<Ledger> {
        Arc::new(Ledger::default())
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// A channel of `sat` from `a` (all on its side) to `b`, active on both.
    pub fn open_channel(&self, a: PublicKey, b: PublicKey, sat: u64) {
        let mut nodes = self.nodes.lock().expect("ledger");
        let reserve_sat = sat / 100;
        if let Some(n) = nodes.get_mut(&a) {
            n.channels.push(StChannel { remote: b, local_sat: sat, remote_sat: 0, reserve_sat, active: true });
        }
        if let Some(n) = nodes.get_mut(&b) {
            n.channels.push(StChannel { remote: a, local_sat: 0, remote_sat: sat, reserve_sat, active: true });
        }
    }

    /// Connects `a` (dialing) and `b`, as lnd's `ConnectPeer` does; both report the other online.
    /// False if they already were.
    pub fn connect_peers(&self, a: PublicKey, b: PublicKey) -> bool {
        let mut nodes = self.nodes.lock().expect("ledger");
        let (Some(addr_a), Some(addr_b)) =
            (nodes.get(&a).map(|n| n.addr.clone()), nodes.get(&b).map(|n| n.addr.clone()))
        else {
            return false;
        };
        if nodes.get(&a).is_some_and(|n| n.peers.contains_key(&b)) {
            return false;
        }
        for (me, other, addr, inbound) in [(a, b, addr_b, false), (b, a, addr_a, true)] {
            let n = nodes.get_mut(&me).expect("node");
            n.peers.insert(other, (addr, inbound));
            let ev = peer_event(&other, true);
            n.peer_subscribers.retain(|s| s.send(ev.clone()).is_ok());
        }
        true
    }

    /// Disconnects `a` and `b`; both report the other offline. False if they were not connected.
    pub fn disconnect_peers(&self, a: PublicKey, b: PublicKey) -> bool {
        let mut nodes = self.nodes.lock().expect("ledger");
        let mut was = false;
        for (me, other) in [(a, b), (b, a)] {
            if let Some(n) = nodes.get_mut(&me) {
                if n.peers.remove(&other).is_some() {
                    was = true;
                    let ev = peer_event(&other, false);
                    n.peer_subscribers.retain(|s| s.send(ev.clone()).is_ok());
                }
            }
        }
        was
    }

    /// Delivers a custom message from `from` to `to` (their subscribers), as lnd does for a
    /// message its peer sent. False if they are not connected.
    pub fn deliver_custom(&self, from: PublicKey, to: PublicKey, msg_type: u16, data: &[u8]) -> bool {
        let mut nodes = self.nodes.lock().expect("ledger");
        let Some(n) = nodes.get_mut(&to).filter(|n| n.peers.contains_key(&from)) else { return false };
        let l = custom_line(&from, msg_type, data);
        n.custom_subscribers.retain(|s| s.send(l.clone()).is_ok());
        true
    }

    /// What lnd's two streams would show a client of `node`: its custom messages and its peer
    /// events, as the same JSON lines (for a test peer standing on `node` without a REST client;
    /// it sends with [`Ledger::deliver_custom`]).
    pub fn tap(&self, node: PublicKey) -> (mpsc::UnboundedReceiver<Bytes>, mpsc::UnboundedReceiver<Bytes>) {
        let ((ct, cr), (pt, pr)) = (mpsc::unbounded_channel(), mpsc::unbounded_channel());
        self.with(&node, |n| {
            n.custom_subscribers.push(ct);
            n.peer_subscribers.push(pt);
        });
        (cr, pr)
    }

    /// Payments stay in flight while held; released, they complete.
    pub fn hold_payments(&self, hold: bool) {
        self.hold.send_replace(hold);
    }

    pub fn with<T>(&self, node: &PublicKey, f: impl FnOnce(&mut NodeState) -> T) -> T {
        let mut nodes = self.nodes.lock().expect("ledger");
        f(nodes.get_mut(node).expect("known node"))
    }

    /// Executes a payment from `payer` to `invoice`; returns the payment's final state.
    fn settle(&self, payer: &PublicKey, hash: [u8; 32], dest: PublicKey, amount_msat: u64) -> StPayment {
        let mut nodes = self.nodes.lock().expect("ledger");
        let fail = |reason| StPayment {
            hash,
            value_msat: amount_msat,
            status: "FAILED",
            preimage: None,
            failure_reason: reason,
        };
        let Some(inv) = nodes.get(&dest).and_then(|n| n.invoices.get(&hash)).cloned() else {
            return fail("FAILURE_REASON_INCORRECT_PAYMENT_DETAILS");
        };
        if inv.settled || inv.state() != "OPEN" || amount_msat < inv.amount_msat {
            return fail("FAILURE_REASON_INCORRECT_PAYMENT_DETAILS");
        }
        let amount_sat = amount_msat.div_ceil(1000);
        let Some(ch) = nodes.get_mut(payer).and_then(|n| {
            n.channels.iter_mut().find(|c| c.remote == dest && c.active && c.local_sat >= amount_sat + c.reserve_sat)
        }) else {
            return fail("FAILURE_REASON_NO_ROUTE");
        };
        ch.local_sat -= amount_sat;
        ch.remote_sat += amount_sat;
        let payee = nodes.get_mut(&dest).expect("dest");
        if let Some(ch) = payee.channels.iter_mut().find(|c| c.remote == *payer) {
            ch.local_sat += amount_sat;
            ch.remote_sat -= amount_sat;
        }
        payee.next_settle += 1;
        let settle_index = payee.next_settle;
        let inv = payee.invoices.get_mut(&hash).expect("invoice");
        inv.settled = true;
        inv.amt_paid_msat = amount_msat;
        inv.settle_date = now();
        inv.settle_index = settle_index;
        let line = Bytes::from(format!("{}\n", json!({ "result": inv.json() })));
        payee.subscribers.retain(|s| s.send(line.clone()).is_ok());
        StPayment {
            hash,
            value_msat: amount_msat,
            status: "SUCCEEDED",
            preimage: Some(inv.preimage),
            failure_reason: "FAILURE_REASON_NONE",
        }
    }
}

/// A real lnd, when `LCP_LIVE_LND_REST` (https://HOST:PORT) is set with `LCP_LIVE_LND_TLS_CERT`,
/// `LCP_LIVE_LND_MACAROON` and optionally `LCP_LIVE_LND_NETWORK` (default regtest).
pub fn live_lnd() -> Option<(LndConnection, lcp::config::Network)> {
    let Ok(url) = std::env::var("LCP_LIVE_LND_REST") else {
        eprintln!(
            "skipped: set LCP_LIVE_LND_REST, LCP_LIVE_LND_TLS_CERT and LCP_LIVE_LND_MACAROON to run against a live lnd"
        );
        return None;
    };
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} must be set with LCP_LIVE_LND_REST"));
    let network = std::env::var("LCP_LIVE_LND_NETWORK").unwrap_or_else(|_| "regtest".into()).parse().expect("network");
    let conn = LndConnection {
        rest_url: url,
        tls_cert: var("LCP_LIVE_LND_TLS_CERT").into(),
        macaroon: var("LCP_LIVE_LND_MACAROON").into(),
        request_timeout: lcp::lnd::DEFAULT_REQUEST_TIMEOUT,
    };
    Some((conn, network))
}

/// One stand-in lnd node: an HTTPS server on 127.0.0.1 and its files.
pub struct StandinNode {
    pub addr: std::net::SocketAddr,
    pub id: PublicKey,
    pub ledger: Arc<Ledger>,
    pub dir: tempfile::TempDir,
    pub cert_path: PathBuf,
    pub macaroon_path: PathBuf,
    stop: Mutex<CancellationToken>,
    acceptor: tokio_rustls::TlsAcceptor,
    macaroon_hex: String,
    served: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
}

impl Drop for StandinNode {
    fn drop(&mut self) {
        self.stop.lock().expect("stop").cancel();
    }
}

/// Serves `listener` until `stop` fires (then the listener is dropped and open connections end).
fn serve(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    ledger: Arc<Ledger>,
    id: PublicKey,
    mac: String,
    stop: CancellationToken,
) -> tokio::sync::oneshot::Receiver<()> {
    let (done_tx, done) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        loop {
            let tcp = tokio::select! {
                _ = stop.cancelled() => break,
                a = listener.accept() => match a { Ok((tcp, _)) => tcp, Err(_) => break },
            };
            let (acceptor, st, l, mac) = (acceptor.clone(), stop.clone(), ledger.clone(), mac.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let svc = hyper::service::service_fn(move |req| {
                    let (l, mac) = (l.clone(), mac.clone());
                    async move { Ok::<_, Infallible>(handle(&l, id, &mac, req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), svc);
                tokio::select! {
                    _ = st.cancelled() => {}
                    _ = conn => {}
                }
            });
        }
        drop(listener);
        let _ = done_tx.send(());
    });
    done
}

/// A certificate like lnd's: self-signed, ECDSA P-256, CA:TRUE, SAN localhost and 127.0.0.1.
pub fn lnd_like_certificate() -> (String, rustls::pki_types::PrivateKeyDer<'static>) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("certificate parameters");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("certificate");
    let der = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()));
    (cert.pem(), der)
}

impl StandinNode {
    /// Starts a node with node key `seed` repeated in `ledger`.
    pub async fn start(ledger: &Arc<Ledger>, seed: u8) -> StandinNode {
        let key = SecretKey::from_slice(&[seed; 32]).expect("key");
        let id = PublicKey::from_secret_key(&Secp256k1::new(), &key);
        ledger.nodes.lock().expect("ledger").insert(
            id,
            NodeState {
                key,
                id,
                invoices: HashMap::new(),
                payments: HashMap::new(),
                channels: Vec::new(),
                subscribers: Vec::new(),
                next_add: 0,
                next_settle: 0,
                requests: Vec::new(),
                subscription: true,
                sends: 0,
                peers: HashMap::new(),
                peer_subscribers: Vec::new(),
                custom_subscribers: Vec::new(),
                custom_sent: Vec::new(),
                custom_send_fails: false,
                custom_send_failures: 0,
                addr: String::new(),
            },
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let (pem, key_der) = lnd_like_certificate();
        let cert_path = dir.path().join("tls.cert");
        std::fs::write(&cert_path, &pem).expect("write cert");
        let macaroon: Vec<u8> = (0..48u8).map(|i| i.wrapping_mul(seed).wrapping_add(7)).collect();
        let macaroon_path = dir.path().join("admin.macaroon");
        std::fs::write(&macaroon_path, &macaroon).expect("write macaroon");
        let certs = lcp::payd::lnd::rest::parse_certificates(pem.as_bytes()).expect("pem");
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key_der)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let mac = hex::encode(&macaroon);
        ledger.with(&id, |n| n.addr = format!("127.0.0.1:{}", addr.port()));
        let served = serve(listener, acceptor.clone(), ledger.clone(), id, mac.clone(), stop.clone());
        StandinNode {
            addr,
            id,
            ledger: ledger.clone(),
            dir,
            cert_path,
            macaroon_path,
            stop: Mutex::new(stop),
            acceptor,
            macaroon_hex: mac,
            served: Mutex::new(Some(served)),
        }
    }

    /// An lnd restart: the REST port closes (its streams end), the peers go offline, then it
    /// serves again on the same port with the same certificate and macaroon, and the peers it
    /// had come back online (lnd reconnects the peers it has channels with).
    pub async fn restart(&self) {
        let old = self.stop.lock().expect("stop").clone();
        old.cancel();
        let peers: Vec<PublicKey> = self.ledger.with(&self.id, |n| {
            n.peer_subscribers.clear();
            n.custom_subscribers.clear();
            n.subscribers.clear();
            n.peers.keys().copied().collect()
        });
        for p in &peers {
            self.ledger.disconnect_peers(self.id, *p);
        }
        let served = self.served.lock().expect("served").take();
        if let Some(served) = served {
            let _ = served.await; // the old listener is dropped
        }
        let listener = tokio::net::TcpListener::bind(self.addr).await.expect("rebind the same port");
        let stop = CancellationToken::new();
        *self.stop.lock().expect("stop") = stop.clone();
        let served =
            serve(listener, self.acceptor.clone(), self.ledger.clone(), self.id, self.macaroon_hex.clone(), stop);
        *self.served.lock().expect("served") = Some(served);
        for p in peers {
            self.ledger.connect_peers(p, self.id);
        }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    /// The backend configuration for this node.
    pub fn config(&self, state_dir: PathBuf) -> LndConfig {
        LndConfig {
            network: lcp::config::Network::Regtest,
            conn: self.connection(),
            state_dir,
            poll_interval: Duration::from_millis(100),
        }
    }

    /// How to reach this node (the shared lnd options).
    pub fn connection(&self) -> LndConnection {
        LndConnection {
            rest_url: self.url(),
            tls_cert: self.cert_path.clone(),
            macaroon: self.macaroon_path.clone(),
            request_timeout: Duration::from_secs(10),
        }
    }

    /// Stops serving: the port closes and open connections break.
    pub fn stop(&self) {
        self.stop.lock().expect("stop").cancel();
    }

    pub fn requests(&self) -> Vec<String> {
        self.ledger.with(&self.id, |n| n.requests.clone())
    }

    pub fn sends(&self) -> u64 {
        self.ledger.with(&self.id, |n| n.sends)
    }
}

fn reply(status: StatusCode, v: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed())
        .expect("response")
}

fn grpc_error(status: StatusCode, code: i32, message: &str) -> Response<Body> {
    reply(status, json!({ "code": code, "message": message, "details": [] }))
}

/// A streaming answer: `first` now (the head goes with it), then whatever comes on `rest`.
fn stream(first: Vec<Bytes>, rest: Option<mpsc::UnboundedReceiver<Bytes>>) -> Response<Body> {
    let (tx, rx) = mpsc::unbounded_channel();
    for b in first {
        let _ = tx.send(b);
    }
    if let Some(mut rest) = rest {
        tokio::spawn(async move {
            while let Some(b) = rest.recv().await {
                if tx.send(b).is_err() {
                    return;
                }
            }
        });
    }
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(ChanBody(rx).boxed())
        .expect("response")
}

fn line(v: Value) -> Bytes {
    Bytes::from(format!("{v}\n"))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hash_param(s: &str) -> Option<[u8; 32]> {
    b64_decode(&percent_decode(s))?.try_into().ok()
}

fn decode_payreq(s: &str) -> Result<Bolt11Invoice, String> {
    s.parse::<Bolt11Invoice>().map_err(|e| format!("invalid payment request: {e}"))
}

async fn handle(ledger: &Arc<Ledger>, me: PublicKey, macaroon_hex: &str, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    ledger.with(&me, |n| n.requests.push(format!("{method} {path}")));
    let mac = req.headers().get("grpc-metadata-macaroon").and_then(|v| v.to_str().ok()).unwrap_or("");
    if mac != macaroon_hex {
        return grpc_error(
            StatusCode::UNAUTHORIZED,
            2,
            "verification failed: signature mismatch after caveat verification",
        );
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return grpc_error(StatusCode::BAD_REQUEST, 3, "unreadable body"),
    };
    let body: Value = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap_or(Value::Null) };
    let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), seg.as_slice()) {
        ("GET", ["v1", "getinfo"]) => reply(
            StatusCode::OK,
            json!({
                "identity_pubkey": hex::encode(me.serialize()),
                "alias": "standin",
                "num_active_channels": ledger.with(&me, |n| n.channels.len()),
                "block_height": 150,
                "synced_to_chain": true,
                "chains": [{ "chain": "bitcoin", "network": "regtest" }],
                "version": "0.21.2-beta standin",
            }),
        ),
        ("POST", ["v1", "invoices"]) => add_invoice(ledger, me, &body),
        ("GET", ["v2", "invoices", "lookup"]) => {
            let hash = query.split('&').find_map(|kv| kv.strip_prefix("payment_hash=")).and_then(hash_param);
            let Some(hash) = hash else { return grpc_error(StatusCode::BAD_REQUEST, 3, "bad payment_hash") };
            match ledger.with(&me, |n| n.invoices.get(&hash).map(|i| i.json())) {
                Some(v) => reply(StatusCode::OK, v),
                None => grpc_error(StatusCode::NOT_FOUND, 5, "there are no existing invoices"),
            }
        }
        ("GET", ["v1", "invoices", "subscribe"]) => {
            if !ledger.with(&me, |n| n.subscription) {
                return grpc_error(StatusCode::SERVICE_UNAVAILABLE, 14, "invoice subscription unavailable");
            }
            subscription(ledger, me, |n| &mut n.subscribers).await
        }
        ("GET", ["v1", "peers", "subscribe"]) => subscription(ledger, me, |n| &mut n.peer_subscribers).await,
        ("GET", ["v1", "custommessage", "subscribe"]) => subscription(ledger, me, |n| &mut n.custom_subscribers).await,
        ("GET", ["v1", "peers"]) => {
            let peers: Vec<Value> = ledger.with(&me, |n| {
                n.peers
                    .iter()
                    .map(|(id, (addr, inbound))| {
                        json!({
                            "pub_key": hex::encode(id.serialize()), "address": addr, "inbound": inbound,
                            "bytes_sent": "0", "bytes_recv": "0", "ping_time": "0", "sync_type": "PASSIVE_SYNC",
                            "features": { "1": { "name": "data-loss-protect", "is_required": false, "is_known": true } },
                        })
                    })
                    .collect()
            });
            reply(StatusCode::OK, json!({ "peers": peers }))
        }
        ("POST", ["v1", "peers"]) => {
            let pk = body["addr"]["pubkey"].as_str().and_then(|h| hex::decode(h).ok());
            let Some(to) = pk.and_then(|b| PublicKey::from_slice(&b).ok()) else {
                return grpc_error(StatusCode::BAD_REQUEST, 3, "invalid pubkey");
            };
            let host = body["addr"]["host"].as_str().unwrap_or("");
            let known = ledger.nodes.lock().expect("ledger").get(&to).map(|n| n.addr.clone());
            if known.as_deref() != Some(host) {
                return grpc_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    2,
                    &format!("dial tcp {host}: connection refused"),
                );
            }
            if !ledger.connect_peers(me, to) {
                let msg = format!("already connected to peer: {}@{host}", hex::encode(to.serialize()));
                return grpc_error(StatusCode::INTERNAL_SERVER_ERROR, 2, &msg);
            }
            reply(StatusCode::OK, json!({ "status": "" }))
        }
        ("DELETE", ["v1", "peers", pk]) => {
            let Some(other) = hex::decode(pk).ok().and_then(|b| PublicKey::from_slice(&b).ok()) else {
                return grpc_error(StatusCode::BAD_REQUEST, 3, "invalid pubkey");
            };
            if ledger.disconnect_peers(me, other) {
                reply(StatusCode::OK, json!({ "status": "" }))
            } else {
                grpc_error(StatusCode::INTERNAL_SERVER_ERROR, 2, &format!("peer {pk} is not connected"))
            }
        }
        ("POST", ["v1", "custommessage"]) => {
            let peer = body["peer"].as_str().and_then(b64_decode).and_then(|b| PublicKey::from_slice(&b).ok());
            let Some(to) = peer else { return grpc_error(StatusCode::BAD_REQUEST, 3, "invalid peer") };
            let t = body["type"].as_u64().or_else(|| body["type"].as_str().and_then(|t| t.parse().ok())).unwrap_or(0);
            let Ok(t) = u16::try_from(t).map_err(|_| ()).and_then(|t| if t >= 32768 { Ok(t) } else { Err(()) }) else {
                return grpc_error(StatusCode::BAD_REQUEST, 3, &format!("custom message type {t} is below 32768"));
            };
            let data = body["data"].as_str().and_then(b64_decode).unwrap_or_default();
            let fail = ledger.with(&me, |n| {
                n.custom_send_failures += u64::from(n.custom_send_fails);
                n.custom_send_fails
            });
            if fail {
                return grpc_error(StatusCode::INTERNAL_SERVER_ERROR, 2, "unable to send custom message (injected)");
            }
            if !ledger.deliver_custom(me, to, t, &data) {
                return grpc_error(StatusCode::INTERNAL_SERVER_ERROR, 2, "peer is not connected");
            }
            ledger.with(&me, |n| n.custom_sent.push((to, t, data)));
            reply(StatusCode::OK, json!({ "status": "message sent successfully" }))
        }
        ("GET", ["v1", "payreq", pr]) => match decode_payreq(&percent_decode(pr)) {
            Ok(inv) => {
                let dh = match inv.description() {
                    Bolt11InvoiceDescriptionRef::Hash(h) => hex::encode(h.0.to_byte_array()),
                    Bolt11InvoiceDescriptionRef::Direct(_) => String::new(),
                };
                let msat = inv.amount_milli_satoshis().unwrap_or(0);
                reply(
                    StatusCode::OK,
                    json!({
                        "destination": hex::encode(inv.get_payee_pub_key().serialize()),
                        "payment_hash": hex::encode(inv.payment_hash().to_byte_array()),
                        "num_satoshis": (msat / 1000).to_string(),
                        "timestamp": inv.duration_since_epoch().as_secs().to_string(),
                        "expiry": inv.expiry_time().as_secs().to_string(),
                        "description": "",
                        "description_hash": dh,
                        "cltv_expiry": inv.min_final_cltv_expiry_delta().to_string(),
                        "num_msat": msat.to_string(),
                        "payment_addr": b64_encode(&inv.payment_secret().0, false),
                    }),
                )
            }
            Err(e) => grpc_error(StatusCode::INTERNAL_SERVER_ERROR, 2, &e),
        },
        ("POST", ["v2", "router", "send"]) => send_payment(ledger, me, &body).await,
        ("GET", ["v2", "router", "track", h]) => {
            let Some(hash) = hash_param(h) else { return grpc_error(StatusCode::BAD_REQUEST, 3, "bad payment hash") };
            let mut changed = ledger.changed.subscribe();
            loop {
                match ledger.with(&me, |n| n.payments.get(&hash).cloned()) {
                    None => return grpc_error(StatusCode::NOT_FOUND, 5, "payment isn't initiated"),
                    Some(p) if p.status != "IN_FLIGHT" => {
                        return stream(vec![line(json!({ "result": p.json() }))], None)
                    }
                    Some(_) => {
                        if changed.changed().await.is_err() {
                            return grpc_error(StatusCode::SERVICE_UNAVAILABLE, 14, "shutting down");
                        }
                    }
                }
            }
        }
        ("GET", ["v1", "channels"]) => {
            let chans: Vec<Value> = ledger.with(&me, |n| {
                n.channels
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        json!({
                            "active": c.active,
                            "remote_pubkey": hex::encode(c.remote.serialize()),
                            "chan_id": (1000 + i).to_string(),
                            "capacity": (c.local_sat + c.remote_sat).to_string(),
                            "local_balance": c.local_sat.to_string(),
                            "remote_balance": c.remote_sat.to_string(),
                            "local_constraints": { "chan_reserve_sat": c.reserve_sat.to_string() },
                            "remote_constraints": { "chan_reserve_sat": c.reserve_sat.to_string() },
                        })
                    })
                    .collect()
            });
            reply(StatusCode::OK, json!({ "channels": chans }))
        }
        _ => grpc_error(StatusCode::NOT_FOUND, 12, "Not Found"),
    }
}

/// A subscription stream: registered at once, and, as lnd's gateway does, its head sent with the
/// first message.
async fn subscription(
    ledger: &Arc<Ledger>,
    me: PublicKey,
    list: fn(&mut NodeState) -> &mut Vec<mpsc::UnboundedSender<Bytes>>,
) -> Response<Body> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    ledger.with(&me, |n| list(n).push(tx));
    match rx.recv().await {
        Some(first) => stream(vec![first], Some(rx)),
        None => grpc_error(StatusCode::SERVICE_UNAVAILABLE, 14, "subscription closed"),
    }
}

fn add_invoice(ledger: &Arc<Ledger>, me: PublicKey, body: &Value) -> Response<Body> {
    let msat: u64 = body["value_msat"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
    let expiry: u64 = body["expiry"].as_str().and_then(|s| s.parse().ok()).unwrap_or(86_400);
    let Some(dh) = body["description_hash"].as_str().and_then(b64_decode).and_then(|v| <[u8; 32]>::try_from(v).ok())
    else {
        return grpc_error(StatusCode::BAD_REQUEST, 3, "description_hash must be 32 bytes");
    };
    let preimage: [u8; 32] = rand::random();
    let hash: [u8; 32] = sha2::Sha256::digest(preimage).into();
    let created = now();
    let key = ledger.with(&me, |n| n.key);
    let secp = Secp256k1::new();
    let inv = InvoiceBuilder::new(Currency::Regtest)
        .description_hash(sha256::Hash::from_byte_array(dh))
        .payment_hash(sha256::Hash::from_byte_array(hash))
        .payment_secret(PaymentSecret(rand::random()))
        .duration_since_epoch(Duration::from_secs(created))
        .min_final_cltv_expiry_delta(80)
        .amount_milli_satoshis(msat)
        .expiry_time(Duration::from_secs(expiry))
        .build_signed(|m| secp.sign_ecdsa_recoverable(m, &key))
        .expect("invoice");
    let bolt11 = inv.to_string();
    let add_index = ledger.with(&me, |n| {
        n.next_add += 1;
        let add_index = n.next_add;
        n.invoices.insert(
            hash,
            StInvoice {
                bolt11: bolt11.clone(),
                hash,
                preimage,
                amount_msat: msat,
                description_hash: dh,
                created,
                expiry,
                settled: false,
                amt_paid_msat: 0,
                settle_date: 0,
                settle_index: 0,
                add_index,
            },
        );
        add_index
    });
    reply(
        StatusCode::OK,
        json!({
            "r_hash": b64_encode(&hash, false),
            "payment_request": bolt11,
            "add_index": add_index.to_string(),
            "payment_addr": b64_encode(&inv.payment_secret().0, false),
        }),
    )
}

async fn send_payment(ledger: &Arc<Ledger>, me: PublicKey, body: &Value) -> Response<Body> {
    let Some(pr) = body["payment_request"].as_str() else {
        return grpc_error(StatusCode::BAD_REQUEST, 3, "payment_request missing");
    };
    if body["fee_limit_msat"].as_str().is_none() || body["timeout_seconds"].as_i64().unwrap_or(0) <= 0 {
        return grpc_error(StatusCode::BAD_REQUEST, 3, "fee_limit_msat and timeout_seconds are required");
    }
    let inv = match decode_payreq(pr) {
        Ok(i) => i,
        Err(e) => return grpc_error(StatusCode::INTERNAL_SERVER_ERROR, 2, &e),
    };
    let hash = inv.payment_hash().to_byte_array();
    let dest = inv.get_payee_pub_key();
    let amount = inv.amount_milli_satoshis().unwrap_or(0);
    if dest == me {
        return grpc_error(StatusCode::INTERNAL_SERVER_ERROR, 2, "no self-payments allowed");
    }
    // lnd refuses a second payment for a hash it knows, unless the first failed.
    let existing = ledger.with(&me, |n| n.payments.get(&hash).cloned());
    match existing {
        Some(p) if p.status == "SUCCEEDED" => return grpc_error(StatusCode::CONFLICT, 6, "invoice is already paid"),
        Some(p) if p.status == "IN_FLIGHT" => return grpc_error(StatusCode::CONFLICT, 6, "payment is in transition"),
        _ => {}
    }
    ledger.with(&me, |n| {
        n.sends += 1;
        n.payments.insert(
            hash,
            StPayment {
                hash,
                value_msat: amount,
                status: "IN_FLIGHT",
                preimage: None,
                failure_reason: "FAILURE_REASON_NONE",
            },
        );
    });
    ledger.bump();
    // The router goes on whether or not the client stays to hear the outcome.
    let mut changed = ledger.changed.subscribe();
    let l = ledger.clone();
    tokio::spawn(async move {
        let mut hold = l.hold.subscribe();
        let _ = hold.wait_for(|h| !*h).await;
        let done = l.settle(&me, hash, dest, amount);
        l.with(&me, |n| n.payments.insert(hash, done));
        l.bump();
    });
    loop {
        match ledger.with(&me, |n| n.payments.get(&hash).cloned()) {
            Some(p) if p.status != "IN_FLIGHT" => return stream(vec![line(json!({ "result": p.json() }))], None),
            _ => {
                if changed.changed().await.is_err() {
                    return grpc_error(StatusCode::SERVICE_UNAVAILABLE, 14, "shutting down");
                }
            }
        }
    }
}
