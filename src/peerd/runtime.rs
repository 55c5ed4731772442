//! peerd's runtime: `run(config, bus, shutdown)`.
//!
//! One actor owns every peer. Each connection (BOLT #8 done by [`super::transport`]) first
//! exchanges `init` (ours: [`super::features::our_init`]; theirs must come first, within
//! [`INIT_TIMEOUT`], and pass [`super::features::check_their_init`]), then gets a session id and is
//! announced to lcpd and payd. Messages from the peer are routed by type ([`crate::wire::classify`]):
//! LCP types to lcpd, channel types (and `error`/`warning`, which concern channels) to payd, each
//! with a per-session sequence number; gossip and unknown odd types are ignored; an unknown even
//! type ends the connection. `Send` events from the services go out in arrival order through a
//! bounded per-peer queue; a peer that cannot keep up is disconnected. payd's `ChannelSend` events
//! carry a per-session sequence number: a gap ends the session. Persistent peers are
//! redialed with exponential backoff. Each connection keeps the last `lcp_manifest` it received
//! (`LcpManifests`, for an lcpd that restarts while the connection lives on); `Reconnect` (lcpd
//! lacks a peer's manifest that nothing else brings back) drops the connection and redials it
//! once if we dialed it (persistent peers are redialed anyway).

use super::features::{check_their_init, our_init};
use super::opts::parse_peer_uri;
use super::transport::{
    Bolt1Pings, Connection, Dialer, Listener, ListenerEvent, LocalIdentity, NodeId, PeerHandle, RawMessage,
    TransportConfig,
};
use super::{PeerdConfig, PeerdError};
use crate::bus::api::peerd::{LastManifest, PeerInfo, PeerdApi};
use crate::bus::api::Body;
use crate::bus::{Bus, BusError, Corr, ErrorCode, Incoming, RemoteError, ServiceId};
use crate::config::Network;
use crate::wire::bolt1::{Init, INIT};
use crate::wire::{classify, MessageClass};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Log target.
pub const TARGET: &str = "peerd";
/// How long a peer has to send its init after the BOLT #8 handshake.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages from the services queued for one peer; beyond it the peer is too slow.
pub const OUTBOUND_QUEUE: usize = 4096;
/// First and longest wait before redialing a persistent peer.
pub const RECONNECT_MIN: Duration = Duration::from_secs(1);
/// See [`RECONNECT_MIN`].
pub const RECONNECT_MAX: Duration = Duration::from_secs(60);
/// How long a graceful disconnect at shutdown may take per peer.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

/// Schema of `peerd.db` (forward-only migrations; see `crate::store`).
pub const MIGRATIONS: &[&str] = &["CREATE TABLE persistent_peers (
        node_id TEXT PRIMARY KEY,
        addr TEXT NOT NULL,
        added_at INTEGER NOT NULL
    );"];

type ReplyTo = Option<(ServiceId, u64)>;

struct Established {
    conn: Connection,
    their_init: Vec<u8>,
    init: Init,
    inbound: bool,
    addr: String,
    reply: ReplyTo,
}

enum Internal {
    Established(Box<Established>),
    SetupFailed { node: Option<NodeId>, addr: String, why: String, reply: ReplyTo },
    Inbound { node: NodeId, session: u64, msg: RawMessage },
    Closed { node: NodeId, session: u64, reason: String },
    Redial { node: NodeId },
}

struct Peer {
    info: PeerInfo,
    handle: PeerHandle,
    out: mpsc::Sender<RawMessage>,
    seq_lcpd: u64,
    seq_payd: u64,
    /// The last `lcp_manifest` received on this connection (for a restarted lcpd).
    lcp_manifest: Option<Vec<u8>>,
    /// The sequence number the next `ChannelSend` from payd must carry.
    seq_from_payd: u64,
}

struct State {
    bus: Bus,
    network: Network,
    max_peers: usize,
    dialer: Arc<Dialer>,
    peers: HashMap<NodeId, Peer>,
    next_session: u64,
    persistent: HashMap<NodeId, String>,
    backoff: HashMap<NodeId, Duration>,
    dialing: HashSet<NodeId>,
    /// Peers we dialed whose connection lcpd asked to cycle: redialed once when it closes.
    redial_once: HashMap<NodeId, String>,
    db: rusqlite::Connection,
    internal: mpsc::Sender<Internal>,
}

use crate::clock::now_secs;

fn db_err(e: rusqlite::Error) -> PeerdError {
    PeerdError::Store(crate::store::StoreError::Sqlite { path: "peerd.db".into(), source: e })
}

/// Runs peerd until `shutdown` fires (with the lnd transport: [`super::lnd::run`]).
pub async fn run(config: PeerdConfig, bus: Bus, shutdown: CancellationToken) -> Result<(), PeerdError> {
    if let super::opts::PeerTransport::Lnd(_) = config.transport {
        return super::lnd::run(config, bus, shutdown).await;
    }
    let dd = config.node.open_datadir()?;
    let key = dd.node_secret()?;
    let db = crate::store::open(&dd.db_path("peerd"), MIGRATIONS)?;
    let identity = LocalIdentity::from_secret_bytes(key.secret_bytes()).map_err(PeerdError::Transport)?;
    let tcfg = TransportConfig { max_inbound_connections: config.max_peers, ..Default::default() };
    let hooks = Arc::new(Bolt1Pings::default());
    let listener = match config.listen {
        Some(addr) => Some(
            Listener::bind(addr, identity.clone(), tcfg.clone(), hooks.clone()).await.map_err(PeerdError::Transport)?,
        ),
        None => None,
    };
    let listen = listener.as_ref().map(|l| l.local_addr().to_string());
    bus.set_info(
        Some(key.node_id_hex()),
        vec![
            ("network".into(), config.node.network.to_string()),
            ("listen".into(), listen.clone().unwrap_or_else(|| "off".into())),
        ],
    );
    let (itx, mut irx) = mpsc::channel(4096);
    let mut st = State {
        bus: bus.clone(),
        network: config.node.network,
        max_peers: config.max_peers,
        dialer: Arc::new(Dialer::new(identity, tcfg, hooks)),
        peers: HashMap::new(),
        next_session: 1,
        persistent: HashMap::new(),
        backoff: HashMap::new(),
        dialing: HashSet::new(),
        redial_once: HashMap::new(),
        db,
        internal: itx,
    };
    st.load_persistent(&config.connect)?;
    let mut rx = bus.take_incoming().ok_or(BusError::Taken)?;
    tracing::info!(target: TARGET, node_id = %key.node_id_hex(), listen = %listen.unwrap_or_else(|| "off".into()), "peerd ready");
    let mut listener = listener;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            m = rx.recv() => match m { Some(m) => st.on_bus(m), None => break },
            Some(i) = irx.recv() => st.on_internal(i),
            ev = async { match listener.as_mut() { Some(l) => l.next_event().await, None => std::future::pending().await } } => {
                match ev {
                    Some(ListenerEvent::Connected(conn)) => {
                        let addr = conn.handle.addr().map(|a| a.to_string()).unwrap_or_default();
                        st.setup(conn, true, addr, None);
                    }
                    Some(ListenerEvent::Failed { addr, reason }) => {
                        tracing::info!(target: TARGET, %addr, "inbound connection failed: {reason}");
                    }
                    None => { listener = None; }
                }
            }
        }
    }
    let handles: Vec<PeerHandle> = st.peers.values().map(|p| p.handle.clone()).collect();
    for h in handles {
        let _ = tokio::time::timeout(SHUTDOWN_FLUSH, h.disconnect()).await;
    }
    Ok(())
}

impl State {
    fn load_persistent(&mut self, from_config: &[(String, String)]) -> Result<(), PeerdError> {
        let mut rows: Vec<(String, String)> = {
            let mut q = self.db.prepare("SELECT node_id, addr FROM persistent_peers").map_err(db_err)?;
            let it = q.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db_err)?;
            it.collect::<Result<_, _>>().map_err(db_err)?
        };
        rows.extend(from_config.iter().cloned());
        for (id, addr) in rows {
            match parse_node_id(&id) {
                Ok(node) => {
                    self.persistent.insert(node, addr);
                    self.schedule_redial(node, Duration::ZERO);
                }
                Err(e) => tracing::warn!(target: TARGET, "skipping persistent peer {id}: {e}"),
            }
        }
        Ok(())
    }

    fn emit(&self, body: PeerdApi, to: &[ServiceId]) {
        for t in to {
            if let Err(e) = self.bus.send_event(t, Body::Peerd(body.clone())) {
                tracing::debug!(target: TARGET, to = %t, "event not sent: {e}");
            }
        }
    }

    /// Exchanges init on a fresh connection in a task of its own.
    fn setup(&self, conn: Connection, inbound: bool, addr: String, reply: ReplyTo) {
        let (tx, network) = (self.internal.clone(), self.network);
        tokio::spawn(async move {
            let node = conn.handle.remote();
            let msg = match setup_init(conn, network).await {
                Ok((conn, init, their_init)) => {
                    Internal::Established(Box::new(Established { conn, their_init, init, inbound, addr, reply }))
                }
                Err(why) => Internal::SetupFailed { node: Some(node), addr, why, reply },
            };
            let _ = tx.send(msg).await;
        });
    }

    fn dial(&mut self, node: NodeId, addr: String, reply: ReplyTo) {
        if self.peers.len() >= self.max_peers {
            self.reply(reply, Err(RemoteError::new(ErrorCode::ResourceExhausted, "peer limit reached (max-peers)")));
            return;
        }
        self.dialing.insert(node);
        let (tx, dialer, network) = (self.internal.clone(), self.dialer.clone(), self.network);
        tokio::spawn(async move {
            let resolved = tokio::net::lookup_host(addr.as_str()).await.ok().and_then(|mut a| a.next());
            let msg = match resolved {
                None => Internal::SetupFailed { node: Some(node), addr, why: "cannot resolve address".into(), reply },
                Some(sa) => match dialer.dial(sa, node).await {
                    Err(e) => Internal::SetupFailed { node: Some(node), addr, why: e.to_string(), reply },
                    Ok(conn) => match setup_init(conn, network).await {
                        Ok((conn, init, their_init)) => Internal::Established(Box::new(Established {
                            conn,
                            their_init,
                            init,
                            inbound: false,
                            addr,
                            reply,
                        })),
                        Err(why) => Internal::SetupFailed { node: Some(node), addr, why, reply },
                    },
                },
            };
            let _ = tx.send(msg).await;
        });
    }

    fn reply(&self, to: ReplyTo, answer: Result<PeerdApi, RemoteError>) {
        if let Some((who, id)) = to {
            let body = match answer {
                Ok(a) => Body::Peerd(a),
                Err(e) => Body::Error(e),
            };
            if let Err(e) = self.bus.reply(&who, id, body) {
                tracing::debug!(target: TARGET, "reply failed: {e}");
            }
        }
    }

    fn schedule_redial(&mut self, node: NodeId, after: Duration) {
        let tx = self.internal.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = tx.send(Internal::Redial { node }).await;
        });
    }

    fn on_internal(&mut self, i: Internal) {
        match i {
            Internal::Established(e) => self.established(*e),
            Internal::SetupFailed { node, addr, why, reply } => {
                tracing::info!(target: TARGET, %addr, "connection setup failed: {why}");
                if let Some(n) = node {
                    self.dialing.remove(&n);
                    if self.persistent.contains_key(&n) && !self.peers.contains_key(&n) && reply.is_none() {
                        let wait = self.next_backoff(n);
                        self.schedule_redial(n, wait);
                    }
                }
                self.reply(reply, Err(RemoteError::new(ErrorCode::Unavailable, format!("{addr}: {why}"))));
            }
            Internal::Inbound { node, session, msg } => self.route(node, session, msg),
            Internal::Closed { node, session, reason } => {
                if self.peers.get(&node).is_some_and(|p| p.info.session == session) {
                    self.peers.remove(&node);
                    tracing::info!(target: TARGET, peer = %node, session, "disconnected: {reason}");
                    let ev = PeerdApi::PeerDisconnected { node_id: node.to_string(), session, reason };
                    self.emit(ev, &[ServiceId::Lcpd, ServiceId::Payd]);
                    if self.persistent.contains_key(&node) {
                        let wait = self.next_backoff(node);
                        self.schedule_redial(node, wait);
                    } else if let Some(addr) = self.redial_once.get(&node).cloned() {
                        self.dial(node, addr, None);
                    }
                }
            }
            Internal::Redial { node } => {
                if self.peers.contains_key(&node) || self.dialing.contains(&node) {
                    return;
                }
                if let Some(addr) = self.persistent.get(&node).cloned() {
                    tracing::debug!(target: TARGET, peer = %node, %addr, "dialing persistent peer");
                    self.dial(node, addr, None);
                }
            }
        }
    }

    fn next_backoff(&mut self, node: NodeId) -> Duration {
        let b = self.backoff.entry(node).or_insert(RECONNECT_MIN);
        let now = *b;
        *b = (*b * 2).min(RECONNECT_MAX);
        now
    }

    fn established(&mut self, e: Established) {
        let Established { conn, their_init, init, inbound, addr, reply } = e;
        let Connection { handle, inbound: mut rx } = conn;
        let node = handle.remote();
        self.dialing.remove(&node);
        let cycled = self.redial_once.remove(&node).is_some();
        if !inbound && reply.is_none() && !self.persistent.contains_key(&node) && !cycled {
            // A redial that completed after the peer was disconnected (and so forgotten).
            tracing::info!(target: TARGET, peer = %node, "dropping a redial of a peer disconnected meanwhile");
            handle.abort();
            return;
        }
        self.backoff.remove(&node);
        if let Some(old) = self.peers.remove(&node) {
            tracing::info!(target: TARGET, peer = %node, "replacing the previous connection to this peer");
            old.handle.abort();
            let ev = PeerdApi::PeerDisconnected {
                node_id: node.to_string(),
                session: old.info.session,
                reason: "replaced by a new connection".into(),
            };
            self.emit(ev, &[ServiceId::Lcpd, ServiceId::Payd]);
        }
        let session = self.next_session;
        self.next_session += 1;
        let info = PeerInfo {
            node_id: node.to_string(),
            addr,
            inbound,
            session,
            since: now_secs(),
            persistent: self.persistent.contains_key(&node),
            features: hex::encode(&init.features),
        };
        let (out, mut out_rx) = mpsc::channel::<RawMessage>(OUTBOUND_QUEUE);
        let writer = handle.clone();
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if writer.send(m).await.is_err() {
                    break;
                }
            }
        });
        let (tx, reader) = (self.internal.clone(), handle.clone());
        tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                if tx.send(Internal::Inbound { node, session, msg }).await.is_err() {
                    return;
                }
            }
            let reason = reader.closed().await.to_string();
            let _ = tx.send(Internal::Closed { node, session, reason }).await;
        });
        tracing::info!(target: TARGET, peer = %node, session, inbound, "peer connected");
        self.reply(reply, Ok(PeerdApi::Connected(info.clone())));
        self.emit(PeerdApi::PeerConnected { peer: info.clone(), their_init }, &[ServiceId::Lcpd, ServiceId::Payd]);
        let peer = Peer { info, handle, out, seq_lcpd: 0, seq_payd: 0, lcp_manifest: None, seq_from_payd: 0 };
        self.peers.insert(node, peer);
    }

    fn route(&mut self, node: NodeId, session: u64, msg: RawMessage) {
        let Some(peer) = self.peers.get_mut(&node).filter(|p| p.info.session == session) else { return };
        let t = msg.msg_type();
        let to = match classify(t) {
            MessageClass::Lcp => {
                if t == crate::wire::lcp::v02::MSG_MANIFEST {
                    peer.lcp_manifest = Some(msg.as_bytes().to_vec());
                }
                let seq = peer.seq_lcpd;
                peer.seq_lcpd += 1;
                Some((ServiceId::Lcpd, seq))
            }
            MessageClass::Channel => {
                let seq = peer.seq_payd;
                peer.seq_payd += 1;
                Some((ServiceId::Payd, seq))
            }
            MessageClass::Control => match t {
                crate::wire::bolt1::ERROR | crate::wire::bolt1::WARNING => {
                    log_error_or_warning(&node, t, msg.payload());
                    let seq = peer.seq_payd;
                    peer.seq_payd += 1;
                    Some((ServiceId::Payd, seq))
                }
                _ => {
                    tracing::debug!(target: TARGET, peer = %node, msg_type = t, "control message ignored");
                    None
                }
            },
            MessageClass::Gossip | MessageClass::UnknownOdd => {
                tracing::trace!(target: TARGET, peer = %node, msg_type = t, "ignored");
                None
            }
            MessageClass::UnknownEven => {
                tracing::warn!(target: TARGET, peer = %node, msg_type = t, "unknown even message type: disconnecting");
                peer.handle.abort();
                None
            }
        };
        if let Some((svc, seq)) = to {
            let ev = PeerdApi::Message { node_id: node.to_string(), session, seq, msg: msg.into_bytes() };
            self.emit(ev, &[svc]);
        }
    }

    fn on_bus(&mut self, m: Incoming) {
        let from = m.from.clone();
        match (m.corr, m.body) {
            (Corr::Event, Body::Peerd(PeerdApi::Send { node_id, session, msg })) => self.send(&node_id, session, msg),
            (Corr::Event, Body::Peerd(PeerdApi::ChannelSend { node_id, session, seq, msg })) => {
                if self.channel_seq_ok(&node_id, session, seq) {
                    self.send(&node_id, session, msg)
                }
            }
            (Corr::Event, Body::Peerd(PeerdApi::DropSession { node_id, session, reason })) => {
                if let Some(p) = parse_node_id(&node_id).ok().and_then(|n| self.peers.get(&n)) {
                    if p.info.session == session {
                        tracing::info!(target: TARGET, peer = %node_id, session, by = %from, "dropping session: {reason}");
                        p.handle.abort();
                    }
                }
            }
            (Corr::Event, Body::Peerd(PeerdApi::Reconnect { node_id, session, reason })) => {
                let Some((node, p)) = parse_node_id(&node_id)
                    .ok()
                    .and_then(|n| self.peers.get(&n).map(|p| (n, p)))
                    .filter(|(_, p)| p.info.session == session)
                else {
                    return;
                };
                tracing::info!(target: TARGET, peer = %node_id, session, by = %from, "cycling the connection: {reason}");
                if !p.info.inbound && !p.info.persistent {
                    self.redial_once.insert(node, p.info.addr.clone());
                }
                p.handle.abort();
            }
            (Corr::Request(id), Body::Peerd(req)) => self.request(from, id, req),
            (Corr::Request(id), other) => refuse_foreign(&self.bus, &from, id, &other),
            (_, _) => tracing::debug!(target: TARGET, %from, "event ignored"),
        }
    }

    /// Checks the sequence number of a channel message from payd. A gap means a message was lost
    /// on the bus (its host restarted): LDK needs every channel message exactly once, so the
    /// session ends and the channel is reestablished on the next one. Messages of other sessions
    /// are left to [`State::send`], which drops them.
    fn channel_seq_ok(&mut self, node_id: &str, session: u64, seq: u64) -> bool {
        let Some(peer) = parse_node_id(node_id).ok().and_then(|n| self.peers.get_mut(&n)) else { return true };
        if peer.info.session != session {
            return true;
        }
        if seq != peer.seq_from_payd {
            tracing::warn!(target: TARGET, peer = %node_id, session, "channel message {} from payd lost on the bus (got {seq}): ending the session", peer.seq_from_payd);
            peer.handle.abort();
            return false;
        }
        peer.seq_from_payd += 1;
        true
    }

    fn send(&mut self, node_id: &str, session: u64, msg: Vec<u8>) {
        let Some(peer) = parse_node_id(node_id).ok().and_then(|n| self.peers.get(&n)) else {
            tracing::debug!(target: TARGET, peer = %node_id, "send for a peer that is not connected dropped");
            return;
        };
        if peer.info.session != session {
            tracing::debug!(target: TARGET, peer = %node_id, session, "send for an ended session dropped");
            return;
        }
        let raw = match RawMessage::from_bytes(msg) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(target: TARGET, peer = %node_id, "refusing to send an invalid message: {e}");
                return;
            }
        };
        if let Err(e) = peer.out.try_send(raw) {
            tracing::warn!(target: TARGET, peer = %node_id, "outbound queue full ({e}): disconnecting a peer that does not keep up");
            peer.handle.abort();
        }
    }

    fn request(&mut self, from: ServiceId, id: u64, req: PeerdApi) {
        let reply: ReplyTo = Some((from, id));
        match req {
            PeerdApi::ListPeers => self.reply(reply, Ok(peer_list(self.peers.values().map(|p| &p.info)))),
            PeerdApi::LcpManifests => {
                let kept = self.peers.values().filter_map(|p| Some((&p.info, p.lcp_manifest.clone()?)));
                self.reply(reply, Ok(manifest_list(kept)))
            }
            PeerdApi::Connect { node_id, addr, persistent } => {
                let parsed =
                    parse_peer_uri(&format!("{node_id}@{addr}")).and_then(|(id, a)| parse_node_id(&id).map(|n| (n, a)));
                let (node, addr) = match parsed {
                    Ok(p) => p,
                    Err(e) => return self.reply(reply, Err(RemoteError::new(ErrorCode::InvalidArgument, e))),
                };
                if persistent {
                    if let Err(e) = self.db.execute(
                        "INSERT INTO persistent_peers (node_id, addr, added_at) VALUES (?1, ?2, ?3)
                         ON CONFLICT(node_id) DO UPDATE SET addr = excluded.addr",
                        rusqlite::params![node.to_string(), addr, now_secs() as i64],
                    ) {
                        return self.reply(reply, Err(RemoteError::new(ErrorCode::Internal, e.to_string())));
                    }
                    self.persistent.insert(node, addr.clone());
                }
                if let Some(p) = self.peers.get_mut(&node) {
                    p.info.persistent = persistent || p.info.persistent;
                    let info = p.info.clone();
                    return self.reply(reply, Ok(PeerdApi::Connected(info)));
                }
                self.dial(node, addr, reply);
            }
            PeerdApi::Disconnect { node_id } => {
                let node = match parse_node_id(&node_id) {
                    Ok(n) => n,
                    Err(e) => return self.reply(reply, Err(RemoteError::new(ErrorCode::InvalidArgument, e))),
                };
                // Forgetting a persistent peer is done even while it is between connections: a
                // redial in flight is dropped when it completes (see `established`).
                let was_persistent = self.persistent.remove(&node).is_some();
                if let Err(e) = self.db.execute("DELETE FROM persistent_peers WHERE node_id = ?1", [node.to_string()]) {
                    tracing::warn!(target: TARGET, "forgetting persistent peer: {e}");
                }
                match self.peers.get(&node) {
                    Some(p) => {
                        p.handle.abort();
                        self.reply(reply, Ok(PeerdApi::Done));
                    }
                    None if was_persistent => self.reply(reply, Ok(PeerdApi::Done)),
                    None => self.reply(
                        reply,
                        Err(RemoteError::new(ErrorCode::NotFound, format!("not connected to {node_id}"))),
                    ),
                }
            }
            other => self.reply(
                reply,
                Err(RemoteError::new(ErrorCode::InvalidArgument, format!("not a request: {}", variant_name(&other)))),
            ),
        }
    }
}

pub(crate) fn variant_name(p: &PeerdApi) -> &'static str {
    match p {
        PeerdApi::Connected(_) => "Connected",
        PeerdApi::Peers(_) => "Peers",
        PeerdApi::Done => "Done",
        PeerdApi::PeerConnected { .. } => "PeerConnected",
        PeerdApi::PeerDisconnected { .. } => "PeerDisconnected",
        PeerdApi::Message { .. } => "Message",
        PeerdApi::Send { .. } => "Send",
        PeerdApi::DropSession { .. } => "DropSession",
        PeerdApi::Manifests(_) => "Manifests",
        PeerdApi::Reconnect { .. } => "Reconnect",
        PeerdApi::ChannelSend { .. } => "ChannelSend",
        PeerdApi::Connect { .. } | PeerdApi::Disconnect { .. } | PeerdApi::ListPeers | PeerdApi::LcpManifests => {
            "request"
        }
    }
}

/// The answer to `ListPeers`: the peers sorted by node id.
pub(crate) fn peer_list<'a>(infos: impl Iterator<Item = &'a PeerInfo>) -> PeerdApi {
    let mut peers: Vec<PeerInfo> = infos.cloned().collect();
    peers.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    PeerdApi::Peers(peers)
}

/// The answer to `LcpManifests`: the kept manifests, sorted by node id.
pub(crate) fn manifest_list<'a>(kept: impl Iterator<Item = (&'a PeerInfo, Vec<u8>)>) -> PeerdApi {
    let mut out: Vec<LastManifest> =
        kept.map(|(i, msg)| LastManifest { node_id: i.node_id.clone(), session: i.session, msg }).collect();
    out.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    PeerdApi::Manifests(out)
}

/// Answers a request for another service's API with `unimplemented`.
pub(crate) fn refuse_foreign(bus: &Bus, from: &ServiceId, id: u64, other: &Body) {
    let e = RemoteError::new(
        ErrorCode::Unimplemented,
        format!("peerd does not implement {}", crate::bus::broker::body_name(other)),
    );
    let _ = bus.reply_err(from, id, e);
}

/// Parses a hex node id.
pub fn parse_node_id(s: &str) -> Result<NodeId, String> {
    let bytes = hex::decode(s).map_err(|_| format!("node id {s:?} is not hex"))?;
    NodeId::from_slice(&bytes).map_err(|e| format!("node id {s:?}: {e}"))
}

fn log_error_or_warning(node: &NodeId, t: u16, payload: &[u8]) {
    let what = if t == crate::wire::bolt1::ERROR { "error" } else { "warning" };
    let text = crate::wire::bolt1::ErrorMessage::decode(payload)
        .map(|e| String::from_utf8_lossy(&e.data).chars().filter(|c| !c.is_control()).take(200).collect::<String>())
        .unwrap_or_else(|e| format!("(undecodable: {e})"));
    tracing::warn!(target: TARGET, peer = %node, "peer sent {what}: {text}");
}

/// Sends our init and waits for theirs. Returns the connection, their init and its raw bytes.
async fn setup_init(conn: Connection, network: Network) -> Result<(Connection, Init, Vec<u8>), String> {
    let Connection { handle, inbound: mut rx } = conn;
    let fail = |h: &PeerHandle, why: String| {
        h.abort();
        why
    };
    let ours = our_init(network).encode().map_err(|e| fail(&handle, format!("encoding our init: {e}")))?;
    let ours = RawMessage::new(INIT, &ours).map_err(|e| fail(&handle, e.to_string()))?;
    handle.send(ours).await.map_err(|e| fail(&handle, format!("sending init: {e}")))?;
    let first = match tokio::time::timeout(INIT_TIMEOUT, rx.recv()).await {
        Err(_) => return Err(fail(&handle, format!("no init within {INIT_TIMEOUT:?}"))),
        Ok(None) => return Err(fail(&handle, format!("closed before init: {}", handle.closed().await))),
        Ok(Some(m)) => m,
    };
    if first.msg_type() != INIT {
        return Err(fail(&handle, format!("first message is type {}, not init", first.msg_type())));
    }
    let init = Init::decode(first.payload()).map_err(|e| fail(&handle, format!("bad init: {e}")))?;
    check_their_init(&init, network).map_err(|e| fail(&handle, e))?;
    Ok((Connection { handle, inbound: rx }, init, first.into_bytes()))
}
