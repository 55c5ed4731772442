//! The ZeroMQ bus: a ROUTER broker and DEALER clients.
//!
//! Framing: a client sends `[to, frame]`; the broker receives `[from, to, frame]` (ZeroMQ adds the
//! sender's routing identity, so `from` cannot be forged by the frame) and forwards `[to, from,
//! frame]`; the receiving client sees `[from, frame]`. The broker binds an `inproc://` endpoint in
//! the process-wide context (for services in the same process) and optionally one remote endpoint
//! (`ipc://` or `tcp://`) in a context of its own, always with CURVE and a ZAP handler that admits
//! only the client keys in the key file: a connection without them completes no handshake, so it
//! can neither send nor receive anything.

use super::broker::{self, BrokerCore};
use super::keys::{ClientKeys, ServerKeys};
use super::transport::{Handler, Transport};
use super::{BusError, Endpoint, ServiceId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

/// How long an idle I/O thread waits before re-checking its stop flag.
const POLL_MS: i64 = 200;
/// ZeroMQ high-water marks (messages) on bus sockets.
const HWM: i32 = 50_000;
const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The process-wide context: every `inproc://` participant must share it.
pub fn global_context() -> &'static zmq::Context {
    static CTX: OnceLock<zmq::Context> = OnceLock::new();
    CTX.get_or_init(zmq::Context::new)
}

fn unique(prefix: &str) -> String {
    format!("inproc://{prefix}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

// ---------------------------------------------------------------------------------------------
// Client

/// A DEALER connection to the broker, with an I/O thread. Senders hand frames to the thread over
/// an in-process PUSH/PULL pair, so any task may send without owning the socket.
pub struct ZmqTransport {
    push: Mutex<zmq::Socket>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl ZmqTransport {
    /// Connects `id` to the broker at `endpoint`. Remote endpoints need the client keys.
    /// Returns at once: ZeroMQ connects (and reconnects) in the background; readiness is the
    /// bus client's Hello/Welcome handshake. Received frames go to `handler`, on the I/O thread.
    pub fn connect(
        endpoint: &Endpoint,
        id: &ServiceId,
        keys: Option<&ClientKeys>,
        handler: Handler,
    ) -> Result<Arc<dyn Transport>, BusError> {
        let ctx = global_context();
        let dealer = ctx.socket(zmq::DEALER)?;
        dealer.set_identity(&id.to_identity())?;
        dealer.set_linger(500)?;
        dealer.set_sndhwm(HWM)?;
        dealer.set_rcvhwm(HWM)?;
        dealer.set_reconnect_ivl(100)?;
        dealer.set_reconnect_ivl_max(2000)?;
        if endpoint.is_remote() {
            let k = keys.ok_or_else(|| {
                BusError::Keys(format!("{endpoint} needs the bus client key (bus/client.key in the data directory)"))
            })?;
            dealer.set_curve_serverkey(&k.server_public)?;
            dealer.set_curve_publickey(&k.public)?;
            dealer.set_curve_secretkey(&k.secret)?;
        }
        dealer.connect(&endpoint.to_string())?;
        let pipe = unique("lcp-bus-out");
        let pull = ctx.socket(zmq::PULL)?;
        pull.set_rcvhwm(HWM)?;
        pull.bind(&pipe)?;
        let push = ctx.socket(zmq::PUSH)?;
        push.set_sndhwm(HWM)?;
        push.set_linger(0)?;
        push.connect(&pipe)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let name = format!("bus-{}", id.kind());
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || client_loop(dealer, pull, handler, stop2))
            .map_err(|e| BusError::Decode(format!("cannot start the bus thread: {e}")))?;
        let t = ZmqTransport { push: Mutex::new(push), stop, thread: Mutex::new(Some(thread)) };
        Ok(Arc::new(t))
    }
}

/// Frames waiting for the broker to accept them (it is down or slow); beyond this the thread stops
/// taking frames from senders, whose sends then fail with back-pressure.
const MAX_PENDING: usize = 1024;

fn client_loop(dealer: zmq::Socket, pull: zmq::Socket, handler: Handler, stop: Arc<AtomicBool>) {
    // Sends never block: a DEALER with no broker connected would block for ever, and the thread
    // must stay responsive to `stop` and to inbound frames.
    let mut pending: std::collections::VecDeque<Vec<Vec<u8>>> = std::collections::VecDeque::new();
    loop {
        let (from_dealer, to_dealer, from_pull) = {
            let dealer_events = if pending.is_empty() { zmq::POLLIN } else { zmq::POLLIN | zmq::POLLOUT };
            let pull_events = if pending.len() < MAX_PENDING { zmq::POLLIN } else { zmq::PollEvents::empty() };
            let mut items = [dealer.as_poll_item(dealer_events), pull.as_poll_item(pull_events)];
            if let Err(e) = zmq::poll(&mut items, POLL_MS) {
                tracing::error!(target: "bus", "poll failed: {e}");
                return;
            }
            (items[0].is_readable(), items[0].is_writable(), items[1].is_readable())
        };
        if stop.load(Ordering::Acquire) {
            return;
        }
        if to_dealer || !pending.is_empty() {
            while let Some(parts) = pending.front() {
                match dealer.send_multipart(parts.iter().map(Vec::as_slice), zmq::DONTWAIT) {
                    Ok(()) => {
                        pending.pop_front();
                    }
                    Err(zmq::Error::EAGAIN) => break,
                    Err(e) => {
                        tracing::error!(target: "bus", "send to broker failed: {e}");
                        pending.pop_front();
                    }
                }
            }
        }
        if from_pull {
            while pending.len() < MAX_PENDING {
                let Ok(parts) = pull.recv_multipart(zmq::DONTWAIT) else { break };
                if parts.len() != 2 {
                    return; // the stop marker
                }
                if !pending.is_empty() {
                    pending.push_back(parts);
                    continue;
                }
                match dealer.send_multipart(parts.iter().map(Vec::as_slice), zmq::DONTWAIT) {
                    Ok(()) => {}
                    Err(zmq::Error::EAGAIN) => {
                        tracing::debug!(target: "bus", "broker not accepting frames; holding them");
                        pending.push_back(parts);
                    }
                    Err(e) => tracing::error!(target: "bus", "send to broker failed: {e}"),
                }
            }
        }
        if from_dealer {
            while let Ok(mut parts) = dealer.recv_multipart(zmq::DONTWAIT) {
                if parts.len() != 2 {
                    tracing::warn!(target: "bus", parts = parts.len(), "dropping a malformed bus message");
                    continue;
                }
                let frame = parts.pop().unwrap_or_default();
                let from = match ServiceId::from_identity(&parts[0]) {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::warn!(target: "bus", "dropping a bus message: {e}");
                        continue;
                    }
                };
                handler(from, frame);
            }
        }
    }
}

impl Transport for ZmqTransport {
    fn send(&self, to: &ServiceId, frame: Vec<u8>) -> Result<(), BusError> {
        if self.stop.load(Ordering::Acquire) {
            return Err(BusError::Closed);
        }
        let push = self.push.lock().unwrap_or_else(PoisonError::into_inner);
        match push.send_multipart([to.to_identity(), frame], zmq::DONTWAIT) {
            Ok(()) => Ok(()),
            Err(zmq::Error::EAGAIN) => Err(BusError::Backpressure),
            Err(e) => Err(e.into()),
        }
    }

    fn close(&self) {
        if self.stop.swap(true, Ordering::AcqRel) {
            return;
        }
        // Wake the thread so it notices promptly; a failure only delays it by one poll.
        let _ = self.push.lock().unwrap_or_else(PoisonError::into_inner).send(Vec::<u8>::new(), zmq::DONTWAIT);
        if let Some(t) = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = t.join();
        }
    }
}

impl Drop for ZmqTransport {
    fn drop(&mut self) {
        self.close();
    }
}

// ---------------------------------------------------------------------------------------------
// Broker

/// Where a broker listens.
pub struct BrokerConfig {
    /// In-process endpoint for services in this process (none: only remote clients).
    pub inproc: Option<Endpoint>,
    /// Remote endpoint with its keys.
    pub remote: Option<(Endpoint, ServerKeys)>,
}

/// A running broker; stops on drop.
pub struct ZmqBroker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    remote: Option<Endpoint>,
    inproc: Option<Endpoint>,
    epoch: u64,
}

impl ZmqBroker {
    /// Binds the endpoints (errors come back here) and starts routing in a thread.
    pub fn start(cfg: BrokerConfig) -> Result<ZmqBroker, BusError> {
        let mut sockets = Vec::new();
        let mut inproc = None;
        if let Some(ep) = cfg.inproc {
            if ep.is_remote() {
                return Err(BusError::Decode(format!("{ep} is not an inproc:// endpoint")));
            }
            let s = router(global_context())?;
            s.bind(&ep.to_string())?;
            sockets.push(s);
            inproc = Some(ep);
        }
        let mut zap = None;
        let mut remote = None;
        if let Some((ep, keys)) = cfg.remote {
            if !ep.is_remote() {
                return Err(BusError::Decode(format!("{ep} is not a remote endpoint")));
            }
            if let Endpoint::Ipc(path) = &ep {
                // A stale socket file from a killed broker would make bind fail.
                let _ = std::fs::remove_file(path);
            }
            let ctx = zmq::Context::new();
            let z = ctx.socket(zmq::REP)?;
            z.bind(ZAP_ENDPOINT)?;
            let s = router(&ctx)?;
            s.set_curve_server(true)?;
            s.set_curve_secretkey(&keys.secret)?;
            s.set_zap_domain("lcp-bus")?;
            s.bind(&ep.zmq_bind_addr())?;
            let bound = s.get_last_endpoint()?.map_err(|_| BusError::Decode("broker endpoint is not UTF-8".into()))?;
            let bound: Endpoint = bound.parse()?;
            remote = Some(bound);
            sockets.push(s);
            zap = Some((z, keys.authorized, ctx));
        }
        if sockets.is_empty() {
            return Err(BusError::Decode("a broker needs at least one endpoint".into()));
        }
        let core = BrokerCore::default();
        let epoch = core.epoch();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bus-broker".into())
            .spawn(move || broker_loop(sockets, zap, core, stop2))
            .map_err(|e| BusError::Decode(format!("cannot start the broker thread: {e}")))?;
        tracing::info!(target: "bus", inproc = ?inproc.as_ref().map(|e: &Endpoint| e.to_string()),
            remote = ?remote.as_ref().map(|e: &Endpoint| e.to_string()), "bus broker started");
        Ok(ZmqBroker { stop, thread: Some(thread), remote, inproc, epoch })
    }

    /// The remote endpoint as bound (with the real port when asked for port 0).
    pub fn remote_endpoint(&self) -> Option<&Endpoint> {
        self.remote.as_ref()
    }

    /// The in-process endpoint.
    pub fn inproc_endpoint(&self) -> Option<&Endpoint> {
        self.inproc.as_ref()
    }

    /// Random per start; services see it change when the broker restarts.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

impl Drop for ZmqBroker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn router(ctx: &zmq::Context) -> Result<zmq::Socket, BusError> {
    let s = ctx.socket(zmq::ROUTER)?;
    s.set_router_mandatory(true)?;
    s.set_router_handover(true)?;
    s.set_linger(0)?;
    s.set_sndhwm(HWM)?;
    s.set_rcvhwm(HWM)?;
    Ok(s)
}

type Zap = (zmq::Socket, Vec<super::keys::Key>, zmq::Context);

fn broker_loop(sockets: Vec<zmq::Socket>, zap: Option<Zap>, mut core: BrokerCore, stop: Arc<AtomicBool>) {
    // Which socket each identity was last heard on.
    let mut route: HashMap<Vec<u8>, usize> = HashMap::new();
    loop {
        let readable: Vec<bool> = {
            let mut items: Vec<zmq::PollItem> = sockets.iter().map(|s| s.as_poll_item(zmq::POLLIN)).collect();
            if let Some((z, _, _)) = &zap {
                items.push(z.as_poll_item(zmq::POLLIN));
            }
            if let Err(e) = zmq::poll(&mut items, POLL_MS) {
                tracing::error!(target: "bus", "broker poll failed: {e}");
                return;
            }
            items.iter().map(|i| i.is_readable()).collect()
        };
        if stop.load(Ordering::Acquire) {
            return;
        }
        if let (Some((z, authorized, _)), Some(true)) = (&zap, readable.get(sockets.len())) {
            answer_zap(z, authorized);
        }
        for (idx, sock) in sockets.iter().enumerate() {
            if !readable[idx] {
                continue;
            }
            while let Ok(parts) = sock.recv_multipart(zmq::DONTWAIT) {
                route_one(&sockets, idx, parts, &mut route, &mut core);
            }
        }
    }
}

fn route_one(
    sockets: &[zmq::Socket],
    idx: usize,
    parts: Vec<Vec<u8>>,
    route: &mut HashMap<Vec<u8>, usize>,
    core: &mut BrokerCore,
) {
    let [sender, to, frame]: [Vec<u8>; 3] = match parts.try_into() {
        Ok(p) => p,
        Err(p) => {
            tracing::warn!(target: "bus", parts = p.len(), "dropping a malformed bus message");
            return;
        }
    };
    let from = match ServiceId::from_identity(&sender) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(target: "bus", "dropping a message from an invalid identity: {e}");
            return;
        }
    };
    route.insert(sender.clone(), idx);
    let reply = match ServiceId::from_identity(&to) {
        Err(e) => broker::undeliverable(&ServiceId::Broker, &frame, &e.to_string()),
        Ok(ServiceId::Broker) => core.handle(&from, &frame, Instant::now()),
        Ok(dest) => {
            let first = route.get(&to).copied().unwrap_or(0);
            let order = std::iter::once(first).chain((0..sockets.len()).filter(move |i| *i != first));
            let mut outcome = Err("not connected");
            for i in order {
                match sockets[i].send_multipart([&to, &sender, &frame], zmq::DONTWAIT) {
                    Ok(()) => {
                        outcome = Ok(());
                        break;
                    }
                    Err(zmq::Error::EHOSTUNREACH) => continue,
                    Err(zmq::Error::EAGAIN) => {
                        outcome = Err("its queue is full");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(target: "bus", %dest, "forward failed: {e}");
                        outcome = Err("forwarding failed");
                        break;
                    }
                }
            }
            match outcome {
                Ok(()) => None,
                Err(why) => {
                    tracing::debug!(target: "bus", %from, %dest, why, "undeliverable");
                    broker::undeliverable(&dest, &frame, why)
                }
            }
        }
    };
    if let Some(r) = reply {
        let broker_id = ServiceId::Broker.to_identity();
        if let Err(e) = sockets[idx].send_multipart([sender.as_slice(), &broker_id, &r], zmq::DONTWAIT) {
            tracing::debug!(target: "bus", %from, "reply dropped: {e}");
        }
    }
}

/// Answers one ZAP request (ZeroMQ RFC 27): CURVE clients whose key is authorized get 200.
fn answer_zap(z: &zmq::Socket, authorized: &[super::keys::Key]) {
    let Ok(req) = z.recv_multipart(zmq::DONTWAIT) else { return };
    let request_id = req.get(1).cloned().unwrap_or_default();
    let ok = req.len() >= 7
        && req[0] == b"1.0"
        && req[5] == b"CURVE"
        && authorized.iter().any(|k| k.as_slice() == req[6].as_slice());
    if !ok {
        let addr = req.get(3).map(|a| String::from_utf8_lossy(a).into_owned()).unwrap_or_default();
        tracing::warn!(target: "bus", peer = %addr, "refused a bus connection: unknown CURVE client key");
    }
    let (code, text): (&[u8], &[u8]) = if ok { (b"200", b"OK") } else { (b"400", b"unknown client key") };
    let reply: [&[u8]; 6] = [b"1.0", &request_id, code, text, b"", b""];
    if let Err(e) = z.send_multipart(reply, 0) {
        tracing::error!(target: "bus", "ZAP reply failed: {e}");
    }
}
