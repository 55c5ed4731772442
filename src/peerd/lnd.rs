//! peerd's lnd transport: LCP over an existing lnd's peer connections.
//!
//! LCP messages are BOLT #1 custom messages (odd types 42081..42097, all >= 32768). lnd sends
//! them for us (`POST /v1/custommessage`) and hands us those it receives
//! (`GET /v1/custommessage/subscribe`, a stream). peerd opens no listener and makes no BOLT #8
//! connection; its node id is lnd's `identity_pubkey`.
//!
//! Sessions. A session is one lnd peer connection as peerd saw it: learnt from `GET /v1/peers`
//! after the streams were opened, from the peer event stream (`GET /v1/peers/subscribe`:
//! `PEER_ONLINE` begins a session, `PEER_OFFLINE` ends it), or from a custom message of a peer
//! whose `PEER_ONLINE` has not arrived yet. Each gets a new session id and the same bus events as
//! a BOLT #8 connection (`PeerConnected`, `Message` with a per-session `seq`, `PeerDisconnected`),
//! so lcpd sends its manifest on every new session. Inbound messages come from one stream and go
//! out in its order; outbound ones go through one sender task per session, one request after the
//! other.
//!
//! When either stream ends or breaks (lnd restarted, the network went away), messages may have
//! been lost in between, so every session ends; peerd reconnects with backoff and starts new
//! sessions from lnd's peer list. Lines of an old connection are dropped, so nothing is delivered
//! twice. Until lnd answers, requests get `unavailable` with the reason, and the reason is in
//! peerd's status details (`lcp-cli status`).
//!
//! Limit: lnd's REST gateway sends a stream's head with its first message, so peerd cannot tell
//! when lnd has registered the subscription. It opens the subscription before it lists the
//! peers; a manifest a peer sends in that instant is lost. A peer of ours still sends its manifest
//! again, because lcpd's manifests ask for it while lcpd lacks the peer's; a peer following the
//! reference's rules does not (it answers only the first manifest it receives on a connection),
//! and lcpd cycles the connection when such a peer shows it speaks LCP (`PeerdApi::Reconnect`).
//!
//! Each session keeps the last `lcp_manifest` it received (`PeerdApi::LcpManifests`), for an lcpd
//! that restarts while the session lives on.

use super::opts::{PeerTransport, PeerdConfig};
use super::runtime::{manifest_list, parse_node_id, peer_list, refuse_foreign, variant_name, TARGET};
use super::PeerdError;
use crate::bus::api::peerd::{PeerInfo, PeerdApi};
use crate::bus::api::Body;
use crate::bus::{Bus, BusError, Corr, ErrorCode, Incoming, RemoteError, ServiceId};
use crate::clock::now_secs;
use crate::lnd::{Identity, IdentityError, LndConnection};
use crate::payd::lnd::rest::{LndRest, RestError};
use crate::payd::lnd::wire::{b64_decode, b64_encode, url_escape};
use crate::wire::bolt1::{Init, INIT};
use crate::wire::{classify, LcpMessage, MessageClass};
use http::Method;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// First wait before reaching lnd again after a failure.
pub const RETRY_MIN: Duration = Duration::from_secs(1);
/// Longest wait before reaching lnd again.
pub const RETRY_MAX: Duration = Duration::from_secs(30);
/// Messages queued for one peer; beyond it the session ends.
pub const OUTBOUND_QUEUE: usize = 4096;
/// How long a `Connect` waits for lnd to list the new peer.
pub const CONNECT_WAIT: Duration = Duration::from_secs(30);
/// Interval of the peer-list poll while a `Connect` waits.
pub const CONNECT_POLL: Duration = Duration::from_millis(200);
/// After lnd failed to send a session's message, the wait before asking lnd whether the peer is
/// still connected (and beginning a new session if so); it doubles per failure up to
/// [`RETRY_MAX`] and starts again from here once a peer has gone that long without one.
pub const RESESSION_MIN: Duration = Duration::from_secs(1);

type ReplyTo = (ServiceId, u64);

/// A peer as `GET /v1/peers` lists it.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct LndPeer {
    /// Node id, hex.
    #[serde(default)]
    pub pub_key: String,
    /// `host:port`.
    #[serde(default)]
    pub address: String,
    /// Whether the peer dialed lnd.
    #[serde(default)]
    pub inbound: bool,
    /// Feature bits lnd reports, by bit number.
    #[serde(default)]
    pub features: HashMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct ListPeers {
    #[serde(default)]
    peers: Vec<LndPeer>,
}

/// One line of the peer event stream.
#[derive(Deserialize)]
struct PeerEvent {
    #[serde(default)]
    pub_key: String,
    #[serde(default, rename = "type")]
    kind: String,
}

/// One line of the custom message stream: `peer` and `data` base64, `type` a number.
#[derive(Deserialize)]
struct CustomMessage {
    #[serde(default)]
    peer: String,
    #[serde(default, rename = "type", deserialize_with = "crate::payd::lnd::wire::de_u64")]
    msg_type: u64,
    #[serde(default)]
    data: String,
}

/// The init lnd's peer list lets us rebuild for `PeerConnected`: the peer's feature bits (lnd
/// does not hand out the raw init).
pub fn features_bitfield(features: &HashMap<String, serde_json::Value>) -> Vec<u8> {
    let bits: Vec<usize> = features.keys().filter_map(|k| k.parse::<usize>().ok()).filter(|b| *b < 4096).collect();
    let Some(max) = bits.iter().max() else { return Vec::new() };
    let mut out = vec![0u8; max / 8 + 1];
    let len = out.len();
    for b in bits {
        out[len - 1 - b / 8] |= 1 << (b % 8);
    }
    out
}

enum Internal {
    /// The connection attempt `gen` reached lnd and listed its peers.
    Up { gen: u64, rest: Arc<LndRest>, identity: Identity, peers: Vec<LndPeer> },
    /// The connection attempt `gen` failed.
    Failed { gen: u64, why: String },
    /// Time to try again.
    Retry,
    /// A line of the custom message stream of `gen`.
    Custom { gen: u64, line: CustomMessage },
    /// A line of the peer event stream of `gen`.
    PeerEvent { gen: u64, node: String, online: bool },
    /// A stream of `gen` ended.
    StreamDown { gen: u64, what: &'static str, why: String },
    /// A send of a session failed.
    SendFailed { node: String, session: u64, why: String },
    /// Time to ask lnd whether `node`, whose session ended on a failed send, is still its peer.
    Recheck { gen: u64, node: String },
    /// lnd's peer list after a [`Internal::Recheck`] of `node`.
    Rechecked { gen: u64, node: String, peers: Vec<LndPeer> },
    /// A `Connect` finished.
    Connected { reply: ReplyTo, node: String, result: Result<LndPeer, RemoteError> },
    /// lnd's peer list, for sessions begun from an event (which carries no address).
    Details { gen: u64, peers: Vec<LndPeer> },
    /// A `Disconnect` finished.
    Disconnected { reply: ReplyTo, node: String, result: Result<(), RemoteError> },
}

struct Session {
    info: PeerInfo,
    out: mpsc::Sender<Vec<u8>>,
    stop: CancellationToken,
    seq_lcpd: u64,
    /// The last `lcp_manifest` received in this session (for a restarted lcpd).
    lcp_manifest: Option<Vec<u8>>,
}

struct Up {
    rest: Arc<LndRest>,
    node_id: String,
    stop: CancellationToken,
}

struct State {
    bus: Bus,
    conn: LndConnection,
    network: crate::config::Network,
    connect: Vec<(String, String)>,
    internal: mpsc::Sender<Internal>,
    /// The connection attempt in progress (its stream lines are buffered until it is up).
    pending: Option<(u64, CancellationToken, Vec<Internal>)>,
    up: Option<Up>,
    gen: u64,
    down: String,
    retry: Duration,
    sessions: HashMap<String, Session>,
    next_session: u64,
    dropped: u64,
    /// Per peer: the wait before the next recheck after a failed send, and when the last one failed.
    resession: HashMap<String, (Duration, tokio::time::Instant)>,
    shutdown: CancellationToken,
}

/// Runs peerd with the lnd transport until `shutdown` fires.
pub async fn run(config: PeerdConfig, bus: Bus, shutdown: CancellationToken) -> Result<(), PeerdError> {
    let PeerTransport::Lnd(conn) = config.transport.clone() else {
        return Err(PeerdError::Lnd("the lnd transport was started without lnd settings".into()));
    };
    // A configuration that cannot work (unreadable files) is an error at once, not a retry.
    conn.client().map_err(|e| PeerdError::Lnd(e.to_string()))?;
    if config.listen.is_some() {
        tracing::debug!(target: TARGET, "lnd transport: no listener (lnd owns the peer connections)");
    }
    let mut rx = bus.take_incoming().ok_or(BusError::Taken)?;
    let (itx, mut irx) = mpsc::channel(4096);
    let mut st = State {
        bus,
        network: config.node.network,
        connect: config.connect.clone(),
        conn,
        internal: itx,
        pending: None,
        up: None,
        gen: 0,
        down: "connecting to lnd".into(),
        retry: RETRY_MIN,
        sessions: HashMap::new(),
        next_session: 1,
        dropped: 0,
        resession: HashMap::new(),
        shutdown: shutdown.clone(),
    };
    st.publish();
    st.attempt();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            m = rx.recv() => match m { Some(m) => st.on_bus(m), None => break },
            Some(i) = irx.recv() => st.on_internal(i),
        }
    }
    st.go_down("peerd is stopping");
    Ok(())
}

impl State {
    fn url(&self) -> &str {
        &self.conn.rest_url
    }

    /// Status details (and node id) on the bus.
    fn publish(&self) {
        let state = match &self.up {
            Some(_) => "up".to_string(),
            None => format!("unavailable: {}", self.down),
        };
        self.bus.set_info(
            self.up.as_ref().map(|u| u.node_id.clone()),
            vec![
                ("network".into(), self.network.to_string()),
                ("transport".into(), "lnd".into()),
                ("lnd".into(), self.url().to_string()),
                ("lnd_state".into(), state),
                ("peers".into(), self.sessions.len().to_string()),
                ("dropped_messages".into(), self.dropped.to_string()),
            ],
        );
    }

    fn emit(&self, body: PeerdApi) {
        if let Err(e) = self.bus.send_event(&ServiceId::Lcpd, Body::Peerd(body)) {
            tracing::debug!(target: TARGET, "event not sent to lcpd: {e}");
        }
    }

    fn reply(&self, (to, id): ReplyTo, answer: Result<PeerdApi, RemoteError>) {
        let body = match answer {
            Ok(a) => Body::Peerd(a),
            Err(e) => Body::Error(e),
        };
        if let Err(e) = self.bus.reply(&to, id, body) {
            tracing::debug!(target: TARGET, "reply failed: {e}");
        }
    }

    fn unavailable(&self) -> RemoteError {
        RemoteError::new(ErrorCode::Unavailable, format!("lnd at {} is unavailable: {}", self.url(), self.down))
    }

    /// Starts connection attempt `gen + 1`: identity, both streams, then the peer list.
    fn attempt(&mut self) {
        self.gen += 1;
        let gen = self.gen;
        let stop = self.shutdown.child_token();
        self.pending = Some((gen, stop.clone(), Vec::new()));
        let (tx, conn, network) = (self.internal.clone(), self.conn.clone(), self.network);
        tokio::spawn(async move {
            let msg = match connect(gen, &conn, network, &stop, &tx).await {
                Ok((rest, identity, peers)) => Internal::Up { gen, rest, identity, peers },
                Err(why) => Internal::Failed { gen, why },
            };
            let _ = tx.send(msg).await;
        });
    }

    /// Asks lnd again about `node` after a backoff (see [`RESESSION_MIN`]).
    fn schedule_recheck(&mut self, node: String) {
        let now = tokio::time::Instant::now();
        let wait = match self.resession.get(&node) {
            Some((next, last)) if now.duration_since(*last) < RETRY_MAX => *next,
            _ => RESESSION_MIN,
        };
        self.resession.insert(node.clone(), ((wait * 2).min(RETRY_MAX), now));
        let (tx, gen) = (self.internal.clone(), self.gen);
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = tx.send(Internal::Recheck { gen, node }).await;
        });
    }

    fn schedule_retry(&mut self) {
        let (tx, wait) = (self.internal.clone(), self.retry);
        self.retry = (self.retry * 2).min(RETRY_MAX);
        tracing::info!(target: TARGET, url = %self.url(), "reaching lnd again in {wait:?}");
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = tx.send(Internal::Retry).await;
        });
    }

    /// Ends every session and the current connection (its streams stop).
    fn go_down(&mut self, why: &str) {
        if let Some(up) = self.up.take() {
            up.stop.cancel();
        }
        if let Some((_, stop, _)) = self.pending.take() {
            stop.cancel();
        }
        let nodes: Vec<String> = self.sessions.keys().cloned().collect();
        for n in nodes {
            self.end_session(&n, why);
        }
        self.down = why.to_string();
        self.publish();
    }

    fn on_internal(&mut self, i: Internal) {
        // Lines of the attempt in progress wait until its peer list is in.
        if let Some((gen, _, buf)) = self.pending.as_mut() {
            let of = match &i {
                Internal::Custom { gen, .. } | Internal::PeerEvent { gen, .. } => Some(*gen),
                _ => None,
            };
            if of == Some(*gen) {
                buf.push(i);
                return;
            }
        }
        match i {
            Internal::Up { gen, rest, identity, peers } => self.on_up(gen, rest, identity, peers),
            Internal::Failed { gen, why } => {
                if self.pending.as_ref().is_some_and(|p| p.0 == gen) {
                    tracing::warn!(target: TARGET, url = %self.url(), "lnd: {why}");
                    self.go_down(&why);
                    self.schedule_retry();
                }
            }
            Internal::Retry => {
                if self.up.is_none() && self.pending.is_none() {
                    self.attempt();
                }
            }
            Internal::StreamDown { gen, what, why } => {
                let current = self.up.is_some() && gen == self.gen;
                let pending = self.pending.as_ref().is_some_and(|p| p.0 == gen);
                if current || pending {
                    let why = format!("{what} ended: {why}");
                    tracing::warn!(target: TARGET, url = %self.url(), "lnd: {why}; every session ends");
                    self.go_down(&why);
                    self.schedule_retry();
                }
            }
            Internal::Custom { gen, line } if self.up.is_some() && gen == self.gen => self.on_custom(line),
            Internal::PeerEvent { gen, node, online } if self.up.is_some() && gen == self.gen => {
                if online {
                    if !self.sessions.contains_key(&node) {
                        self.open_session(&LndPeer { pub_key: node, ..Default::default() });
                    }
                } else {
                    self.end_session(&node, "lnd reports the peer offline");
                }
            }
            Internal::Custom { .. } | Internal::PeerEvent { .. } => {}
            Internal::SendFailed { node, session, why } => {
                if self.sessions.get(&node).is_some_and(|s| s.info.session == session) {
                    tracing::warn!(target: TARGET, peer = %node, session, "lnd did not send a message: {why}");
                    self.end_session(&node, &format!("sending through lnd failed: {why}"));
                    // lnd may still hold the connection (and send no event): ask it later, and
                    // begin a new session if the peer is still there.
                    self.schedule_recheck(node);
                }
            }
            Internal::Recheck { gen, node } if self.up.is_some() && gen == self.gen => {
                if self.sessions.contains_key(&node) {
                    return;
                }
                let Some(rest) = self.up.as_ref().map(|u| u.rest.clone()) else { return };
                let tx = self.internal.clone();
                tokio::spawn(async move {
                    match list_peers(&rest).await {
                        Ok(peers) => {
                            let _ = tx.send(Internal::Rechecked { gen, node, peers }).await;
                        }
                        // lnd unreachable: its streams end too, and every session starts over then.
                        Err(e) => tracing::debug!(target: TARGET, peer = %node, "lnd peer list: {e}"),
                    }
                });
            }
            Internal::Rechecked { gen, node, peers } if self.up.is_some() && gen == self.gen => {
                if self.sessions.contains_key(&node) {
                    return;
                }
                if let Some(p) = peers.iter().find(|p| p.pub_key.eq_ignore_ascii_case(&node)) {
                    tracing::info!(target: TARGET, peer = %node, "lnd still has the peer: a new session begins");
                    self.open_session(p);
                }
            }
            Internal::Recheck { .. } | Internal::Rechecked { .. } => {}
            Internal::Connected { reply, node, result } => match result {
                Ok(peer) if self.up.is_some() => {
                    if !self.sessions.contains_key(&node) {
                        self.open_session(&peer);
                    }
                    let info = self.sessions.get(&node).map(|s| s.info.clone());
                    self.reply(reply, info.map(PeerdApi::Connected).ok_or_else(|| self.unavailable()));
                }
                Ok(_) => self.reply(reply, Err(self.unavailable())),
                Err(e) => self.reply(reply, Err(e)),
            },
            Internal::Details { gen, peers } if gen == self.gen => {
                for p in peers {
                    let Some(s) = self.sessions.get_mut(&p.pub_key.to_lowercase()) else { continue };
                    if s.info.addr.is_empty() {
                        s.info.addr = p.address;
                        s.info.inbound = p.inbound;
                        s.info.features = hex::encode(features_bitfield(&p.features));
                    }
                }
            }
            Internal::Details { .. } => {}
            Internal::Disconnected { reply, node, result } => {
                if result.is_ok() {
                    self.end_session(&node, "disconnected on request");
                }
                self.reply(reply, result.map(|()| PeerdApi::Done));
            }
        }
    }

    fn on_up(&mut self, gen: u64, rest: Arc<LndRest>, identity: Identity, peers: Vec<LndPeer>) {
        let Some((pgen, stop, buffered)) = self.pending.take() else { return };
        if pgen != gen {
            self.pending = Some((pgen, stop, buffered));
            return;
        }
        let node_id = hex::encode(identity.node_id.serialize());
        self.up = Some(Up { rest, node_id: node_id.clone(), stop });
        self.retry = RETRY_MIN;
        self.down.clear();
        if !identity.synced_to_chain {
            tracing::warn!(target: TARGET, "lnd is not synced to the chain yet");
        }
        tracing::info!(target: TARGET, %node_id, url = %self.url(), peers = peers.len(), "peerd ready (lnd transport)");
        for p in &peers {
            self.open_session(p);
        }
        for i in buffered {
            self.on_internal(i);
        }
        // Configured peers: lnd keeps them connected (perm) from then on.
        for (node, addr) in std::mem::take(&mut self.connect) {
            self.spawn_connect(None, node, addr, true);
        }
        self.publish();
    }

    fn open_session(&mut self, peer: &LndPeer) {
        let Some((rest, parent)) = self.up.as_ref().map(|u| (u.rest.clone(), u.stop.clone())) else { return };
        let node = peer.pub_key.to_lowercase();
        let Ok(key) = hex::decode(&node) else { return };
        if parse_node_id(&node).is_err() {
            return;
        }
        let session = self.next_session;
        self.next_session += 1;
        let features = features_bitfield(&peer.features);
        let info = PeerInfo {
            node_id: node.clone(),
            addr: peer.address.clone(),
            inbound: peer.inbound,
            session,
            since: now_secs(),
            persistent: false,
            features: hex::encode(&features),
        };
        let init = Init { features, ..Default::default() };
        let their_init = init.encode().ok().map(|p| [&INIT.to_be_bytes()[..], &p].concat()).unwrap_or_default();
        let (out, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let stop = parent.child_token();
        let to = b64_encode(&key, false);
        tokio::spawn(sender(rest.clone(), to, rx, stop.clone(), self.internal.clone(), node.clone(), session));
        if peer.address.is_empty() {
            // Begun from an event: lnd's peer list has the address and direction.
            let (tx, gen) = (self.internal.clone(), self.gen);
            tokio::spawn(async move {
                if let Ok(peers) = list_peers(&rest).await {
                    let _ = tx.send(Internal::Details { gen, peers }).await;
                }
            });
        }
        tracing::info!(target: TARGET, peer = %node, session, "peer session begins (lnd)");
        self.emit(PeerdApi::PeerConnected { peer: info.clone(), their_init });
        self.sessions.insert(node, Session { info, out, stop, seq_lcpd: 0, lcp_manifest: None });
        self.publish();
    }

    fn end_session(&mut self, node: &str, reason: &str) {
        let Some(s) = self.sessions.remove(node) else { return };
        s.stop.cancel();
        tracing::info!(target: TARGET, peer = %node, session = s.info.session, "peer session ends: {reason}");
        self.emit(PeerdApi::PeerDisconnected {
            node_id: node.to_string(),
            session: s.info.session,
            reason: reason.into(),
        });
        self.publish();
    }

    fn on_custom(&mut self, line: CustomMessage) {
        let peer = b64_decode(&line.peer).filter(|k| k.len() == 33).map(hex::encode);
        let Some(node) = peer.filter(|n| parse_node_id(n).is_ok()) else {
            return self.drop_message(&line.peer, "the peer is not a node id");
        };
        let Ok(t) = u16::try_from(line.msg_type) else {
            return self.drop_message(&node, &format!("type {} is not a message type", line.msg_type));
        };
        if classify(t) != MessageClass::Lcp {
            tracing::trace!(target: TARGET, peer = %node, msg_type = t, "custom message for someone else ignored");
            return;
        }
        let Some(data) = b64_decode(&line.data) else {
            return self.drop_message(&node, "its data is not base64");
        };
        if let Err(e) = LcpMessage::decode(t, &data) {
            return self.drop_message(&node, &format!("malformed LCP message type {t}: {e}"));
        }
        if !self.sessions.contains_key(&node) {
            // lnd delivered it before its PEER_ONLINE event: the peer is connected.
            self.open_session(&LndPeer { pub_key: node.clone(), ..Default::default() });
        }
        let Some(s) = self.sessions.get_mut(&node) else { return };
        let (seq, session) = (s.seq_lcpd, s.info.session);
        s.seq_lcpd += 1;
        let msg = [&t.to_be_bytes()[..], &data].concat();
        if t == crate::wire::lcp::v02::MSG_MANIFEST {
            s.lcp_manifest = Some(msg.clone());
        }
        self.emit(PeerdApi::Message { node_id: node, session, seq, msg });
    }

    fn drop_message(&mut self, peer: &str, why: &str) {
        self.dropped += 1;
        tracing::warn!(target: TARGET, %peer, "custom message from lnd dropped: {why}");
        self.publish();
    }

    fn on_bus(&mut self, m: Incoming) {
        let from = m.from.clone();
        match (m.corr, m.body) {
            (Corr::Event, Body::Peerd(PeerdApi::Send { node_id, session, msg })) => self.send(&node_id, session, msg),
            // Channel messages never cross this transport (payd runs its lnd backend): `send`
            // refuses them with a warning.
            (Corr::Event, Body::Peerd(PeerdApi::ChannelSend { node_id, session, msg, .. })) => {
                self.send(&node_id, session, msg)
            }
            (Corr::Event, Body::Peerd(PeerdApi::DropSession { node_id, session, reason })) => {
                let node = node_id.to_lowercase();
                if self.sessions.get(&node).is_some_and(|s| s.info.session == session) {
                    // lnd keeps the connection: a new session on it starts LCP over.
                    tracing::info!(target: TARGET, peer = %node, session, by = %from, "dropping session: {reason}");
                    let (address, inbound) =
                        self.sessions.get(&node).map(|s| (s.info.addr.clone(), s.info.inbound)).unwrap_or_default();
                    self.end_session(&node, &reason);
                    self.open_session(&LndPeer { pub_key: node, address, inbound, ..Default::default() });
                }
            }
            (Corr::Event, Body::Peerd(PeerdApi::Reconnect { node_id, session, reason })) => {
                let node = node_id.to_lowercase();
                let Some(s) = self.sessions.get(&node).filter(|s| s.info.session == session) else { return };
                let Some(rest) = self.up.as_ref().map(|u| u.rest.clone()) else { return };
                // A new session on the same lnd connection is not enough: the peer's LCP daemon
                // sees no new connection. lnd disconnects and connects again (if lnd dialed the
                // peer; otherwise the peer, or lnd's own reconnection to channel peers, does).
                tracing::info!(target: TARGET, peer = %node, session, by = %from, "cycling the lnd connection: {reason}");
                let redial = (!s.info.inbound && !s.info.addr.is_empty()).then(|| s.info.addr.clone());
                tokio::spawn(async move {
                    let path = format!("/v1/peers/{}", url_escape(&node));
                    if let Err(e) = rest.call::<serde_json::Value>(Method::DELETE, &path, None).await {
                        return tracing::warn!(target: TARGET, peer = %node, "lnd did not disconnect the peer: {e}");
                    }
                    if let Some(addr) = redial {
                        if let Err(e) = connect_peer(&rest, &node, &addr, false).await {
                            tracing::warn!(target: TARGET, peer = %node, %addr, "lnd did not connect the peer again: {e}");
                        }
                    }
                });
            }
            (Corr::Request(id), Body::Peerd(req)) => self.request((from, id), req),
            (Corr::Request(id), other) => refuse_foreign(&self.bus, &from, id, &other),
            (_, _) => tracing::debug!(target: TARGET, %from, "event ignored"),
        }
    }

    fn send(&mut self, node_id: &str, session: u64, msg: Vec<u8>) {
        let node = node_id.to_lowercase();
        let Some(s) = self.sessions.get(&node).filter(|s| s.info.session == session) else {
            tracing::debug!(target: TARGET, peer = %node, session, "send for an ended session dropped");
            return;
        };
        let lcp = msg.len() >= 2 && classify(u16::from_be_bytes([msg[0], msg[1]])) == MessageClass::Lcp;
        if !lcp {
            tracing::warn!(target: TARGET, peer = %node, "only LCP messages go through lnd; message dropped");
            return;
        }
        if let Err(e) = s.out.try_send(msg) {
            self.end_session(&node, &format!("outbound queue full ({e})"));
        }
    }

    fn request(&mut self, reply: ReplyTo, req: PeerdApi) {
        if self.up.is_none()
            && matches!(
                req,
                PeerdApi::ListPeers | PeerdApi::LcpManifests | PeerdApi::Connect { .. } | PeerdApi::Disconnect { .. }
            )
        {
            return self.reply(reply, Err(self.unavailable()));
        }
        match req {
            PeerdApi::ListPeers => self.reply(reply, Ok(peer_list(self.sessions.values().map(|s| &s.info)))),
            PeerdApi::LcpManifests => {
                let kept = self.sessions.values().filter_map(|s| Some((&s.info, s.lcp_manifest.clone()?)));
                self.reply(reply, Ok(manifest_list(kept)))
            }
            PeerdApi::Connect { node_id, addr, persistent } => {
                match super::opts::parse_peer_uri(&format!("{node_id}@{addr}")) {
                    Ok((node, addr)) => self.spawn_connect(Some(reply), node, addr, persistent),
                    Err(e) => self.reply(reply, Err(RemoteError::new(ErrorCode::InvalidArgument, e))),
                }
            }
            PeerdApi::Disconnect { node_id } => {
                let node = match parse_node_id(&node_id) {
                    Ok(n) => n.to_string(),
                    Err(e) => return self.reply(reply, Err(RemoteError::new(ErrorCode::InvalidArgument, e))),
                };
                let Some(up) = self.up.as_ref() else { return };
                let (rest, tx) = (up.rest.clone(), self.internal.clone());
                tokio::spawn(async move {
                    let path = format!("/v1/peers/{}", url_escape(&node));
                    let result = rest
                        .call::<serde_json::Value>(Method::DELETE, &path, None)
                        .await
                        .map(|_| ())
                        .map_err(|e| remote(&e));
                    let _ = tx.send(Internal::Disconnected { reply, node, result }).await;
                });
            }
            other => self.reply(
                reply,
                Err(RemoteError::new(ErrorCode::InvalidArgument, format!("not a request: {}", variant_name(&other)))),
            ),
        }
    }

    /// `POST /v1/peers` (lnd's `perm` = `persistent`), then waits until lnd lists the peer.
    fn spawn_connect(&self, reply: Option<ReplyTo>, node: String, addr: String, persistent: bool) {
        let Some(up) = self.up.as_ref() else { return };
        let (rest, tx) = (up.rest.clone(), self.internal.clone());
        tokio::spawn(async move {
            let result = connect_peer(&rest, &node, &addr, persistent).await;
            match reply {
                Some(reply) => {
                    let _ = tx.send(Internal::Connected { reply, node, result }).await;
                }
                None => {
                    if let Err(e) = result {
                        tracing::warn!(target: TARGET, peer = %node, %addr, "lnd did not connect the configured peer: {e}");
                    }
                }
            }
        });
    }
}

/// A REST failure as a bus error: no answer is `unavailable`, an answer is lnd's refusal.
fn remote(e: &RestError) -> RemoteError {
    match e {
        RestError::Connect { .. } | RestError::Transport { .. } => {
            RemoteError::new(ErrorCode::Unavailable, e.to_string())
        }
        RestError::Status { .. } | RestError::Decode { .. } => {
            RemoteError::new(ErrorCode::FailedPrecondition, e.to_string())
        }
    }
}

async fn list_peers(rest: &LndRest) -> Result<Vec<LndPeer>, RestError> {
    Ok(rest.call::<ListPeers>(Method::GET, "/v1/peers", None).await?.peers)
}

async fn connect_peer(rest: &LndRest, node: &str, addr: &str, persistent: bool) -> Result<LndPeer, RemoteError> {
    let body = serde_json::json!({
        "addr": { "pubkey": node, "host": addr },
        "perm": persistent,
        "timeout": CONNECT_WAIT.as_secs().to_string(),
    });
    match rest.call::<serde_json::Value>(Method::POST, "/v1/peers", Some(&body)).await {
        Ok(_) => {}
        Err(RestError::Status { status, .. }) if status.message.contains("already connected") => {}
        Err(e) => return Err(remote(&e)),
    }
    // lnd answers a persistent connect before the connection is made: wait until it lists it.
    let deadline = tokio::time::Instant::now() + CONNECT_WAIT;
    let mut every = tokio::time::interval(CONNECT_POLL);
    while tokio::time::Instant::now() < deadline {
        every.tick().await;
        let peers = list_peers(rest).await.map_err(|e| remote(&e))?;
        if let Some(p) = peers.into_iter().find(|p| p.pub_key.eq_ignore_ascii_case(node)) {
            return Ok(p);
        }
    }
    Err(RemoteError::new(ErrorCode::DeadlineExceeded, format!("lnd did not list {node} within {CONNECT_WAIT:?}")))
}

/// One connection attempt: lnd's identity, both streams opened (their lines go to the actor
/// tagged with `gen`), then the peer list.
async fn connect(
    gen: u64,
    conn: &LndConnection,
    network: crate::config::Network,
    stop: &CancellationToken,
    tx: &mpsc::Sender<Internal>,
) -> Result<(Arc<LndRest>, Identity, Vec<LndPeer>), String> {
    let rest = Arc::new(conn.client().map_err(|e| e.to_string())?);
    let identity = crate::lnd::identity(&rest, network).await.map_err(|e| match e {
        IdentityError::Rest(e) => e.to_string(),
        IdentityError::Refused(why) => why,
    })?;
    tokio::spawn(read_stream(
        gen,
        "custom message stream",
        "/v1/custommessage/subscribe",
        rest.clone(),
        stop.clone(),
        tx.clone(),
    ));
    tokio::spawn(read_stream(gen, "peer event stream", "/v1/peers/subscribe", rest.clone(), stop.clone(), tx.clone()));
    let peers = list_peers(&rest).await.map_err(|e| e.to_string())?;
    Ok((rest, identity, peers))
}

/// Reads one of lnd's streams until it ends, breaks or `stop` fires; each line goes to the actor.
async fn read_stream(
    gen: u64,
    what: &'static str,
    path: &'static str,
    rest: Arc<LndRest>,
    stop: CancellationToken,
    tx: mpsc::Sender<Internal>,
) {
    let custom = path.starts_with("/v1/custommessage");
    let why = tokio::select! {
        _ = stop.cancelled() => return,
        why = async {
            let mut s = match rest.stream(Method::GET, path, None, None).await {
                Ok(s) => s,
                Err(e) => return e.to_string(),
            };
            loop {
                let msg = if custom {
                    match s.next::<CustomMessage>().await {
                        Ok(Some(l)) => match (l.result, l.error) {
                            (Some(line), _) => Internal::Custom { gen, line },
                            (None, Some(e)) => return format!("lnd: {} (code {})", e.message, e.code),
                            (None, None) => continue,
                        },
                        Ok(None) => return "lnd ended it".into(),
                        Err(e) => return e.to_string(),
                    }
                } else {
                    match s.next::<PeerEvent>().await {
                        Ok(Some(l)) => match (l.result, l.error) {
                            (Some(ev), _) => match ev.kind.as_str() {
                                "PEER_ONLINE" => Internal::PeerEvent { gen, node: ev.pub_key.to_lowercase(), online: true },
                                "PEER_OFFLINE" => Internal::PeerEvent { gen, node: ev.pub_key.to_lowercase(), online: false },
                                _ => continue,
                            },
                            (None, Some(e)) => return format!("lnd: {} (code {})", e.message, e.code),
                            (None, None) => continue,
                        },
                        Ok(None) => return "lnd ended it".into(),
                        Err(e) => return e.to_string(),
                    }
                };
                if tx.send(msg).await.is_err() {
                    return String::new();
                }
            }
        } => why,
    };
    let _ = tx.send(Internal::StreamDown { gen, what, why }).await;
}

/// Sends one session's messages through lnd, one after the other, until the session ends.
async fn sender(
    rest: Arc<LndRest>,
    peer: String,
    mut rx: mpsc::Receiver<Vec<u8>>,
    stop: CancellationToken,
    tx: mpsc::Sender<Internal>,
    node: String,
    session: u64,
) {
    loop {
        let msg = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            m = rx.recv() => match m { Some(m) => m, None => return },
        };
        let t = u16::from_be_bytes([msg[0], msg[1]]);
        let body = serde_json::json!({ "peer": peer, "type": t, "data": b64_encode(&msg[2..], false) });
        let sent = tokio::select! {
            _ = stop.cancelled() => return,
            r = rest.call::<serde_json::Value>(Method::POST, "/v1/custommessage", Some(&body)) => r,
        };
        if let Err(e) = sent {
            let _ = tx.send(Internal::SendFailed { node, session, why: e.to_string() }).await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lnd_shapes_decode_and_feature_bits_are_rebuilt() {
        let l: crate::payd::lnd::wire::StreamLine<CustomMessage> =
            serde_json::from_str(r#"{"result":{"peer":"AgM=","type":42081,"data":"AQI="}}"#).expect("line");
        let m = l.result.expect("result");
        assert_eq!((m.msg_type, b64_decode(&m.data)), (42081, Some(vec![1, 2])));
        let s: CustomMessage = serde_json::from_str(r#"{"peer":"","type":"42083","data":""}"#).expect("string type");
        assert_eq!(s.msg_type, 42083);
        let p: ListPeers = serde_json::from_str(
            r#"{"peers":[{"pub_key":"02ab","address":"1.2.3.4:9735","inbound":true,"bytes_sent":"5",
               "features":{"0":{"name":"data-loss-protect","is_required":true},"9":{"name":"x"},"bad":{}}}]}"#,
        )
        .expect("peers");
        assert_eq!(p.peers[0].address, "1.2.3.4:9735");
        assert_eq!(features_bitfield(&p.peers[0].features), vec![0x02, 0x01]);
        assert!(features_bitfield(&HashMap::new()).is_empty());
        let e: PeerEvent = serde_json::from_str(r#"{"pub_key":"02ab","type":"PEER_OFFLINE"}"#).expect("event");
        assert_eq!((e.pub_key.as_str(), e.kind.as_str()), ("02ab", "PEER_OFFLINE"));
    }
}
