//! peerd's bus API: peer management for clients, and the message routing between a peer
//! connection and the services that speak over it (lcpd for LCP, payd for channels).
//!
//! Every connection has a `session` id, new per connection. Messages from a peer reach their
//! service as [`PeerdApi::Message`] events carrying a per-session, per-service sequence number
//! starting at 0, so the receiver can tell a gap (a message lost on the bus) from silence; LDK
//! needs exactly-once, in-order delivery, so payd treats a gap as a disconnect. Messages to a peer
//! are [`PeerdApi::Send`] events, written to the connection in the order they arrive; a `Send`
//! for a session that has ended is dropped. payd's channel messages go as
//! [`PeerdApi::ChannelSend`], which carries a per-session sequence number of its own, so peerd
//! detects a gap in that direction too and ends the session.

use serde::{Deserialize, Serialize};

/// A connected peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The peer's node id (33-byte compressed key), hex.
    pub node_id: String,
    /// Remote address.
    pub addr: String,
    /// Whether the peer dialed us.
    pub inbound: bool,
    /// The connection's session id.
    pub session: u64,
    /// Unix seconds when the connection was established.
    pub since: u64,
    /// Whether peerd reconnects to it when the connection drops.
    pub persistent: bool,
    /// The features of the peer's init message, hex.
    pub features: String,
}

/// The last `lcp_manifest` a connection received (see [`PeerdApi::LcpManifests`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastManifest {
    /// Node id, hex.
    pub node_id: String,
    /// The connection's session.
    pub session: u64,
    /// The whole message: u16 type, then the payload.
    pub msg: Vec<u8>,
}

/// peerd's API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerdApi {
    /// client -> peerd: connect to `node_id@addr`. Answered with [`PeerdApi::Connected`].
    Connect {
        /// Node id, hex.
        node_id: String,
        /// `host:port`.
        addr: String,
        /// Reconnect with backoff when the connection drops.
        persistent: bool,
    },
    /// peerd -> client.
    Connected(PeerInfo),
    /// client -> peerd: disconnect (and forget as persistent). Answered with [`PeerdApi::Done`].
    Disconnect {
        /// Node id, hex.
        node_id: String,
    },
    /// client -> peerd. Answered with [`PeerdApi::Peers`].
    ListPeers,
    /// peerd -> client.
    Peers(Vec<PeerInfo>),
    /// peerd -> client: the request succeeded.
    Done,
    /// peerd -> lcpd/payd, event: a connection completed its init exchange.
    PeerConnected {
        /// The peer.
        peer: PeerInfo,
        /// The peer's whole init message (type 16 and payload), for payd's `peer_connected`.
        their_init: Vec<u8>,
    },
    /// peerd -> lcpd/payd, event: a connection ended.
    PeerDisconnected {
        /// Node id, hex.
        node_id: String,
        /// Its session.
        session: u64,
        /// Why, one line.
        reason: String,
    },
    /// peerd -> lcpd/payd, event: a message from a peer.
    Message {
        /// Node id, hex.
        node_id: String,
        /// The connection's session.
        session: u64,
        /// 0, 1, 2, ... per session and receiving service.
        seq: u64,
        /// The whole message: u16 type, then the payload.
        msg: Vec<u8>,
    },
    /// lcpd/payd -> peerd, event: send a message to a peer on a session.
    Send {
        /// Node id, hex.
        node_id: String,
        /// The session it is for; dropped if that session has ended.
        session: u64,
        /// The whole message: u16 type, then the payload.
        msg: Vec<u8>,
    },
    /// lcpd/payd -> peerd, event: end this session (e.g. payd saw a gap or a bad message).
    DropSession {
        /// Node id, hex.
        node_id: String,
        /// The session.
        session: u64,
        /// Why, one line (logged).
        reason: String,
    },
    /// lcpd -> peerd. Answered with [`PeerdApi::Manifests`]: the last `lcp_manifest` each current
    /// connection received, kept by peerd so that an lcpd restarted on a live connection still
    /// holds the manifest of a peer that will not send it again.
    LcpManifests,
    /// peerd -> lcpd.
    Manifests(Vec<LastManifest>),
    /// lcpd -> peerd, event: cycle this session's connection (disconnect, then connect again
    /// where peerd can; a peer following the reference's rules sends its manifest only on a new
    /// connection). BOLT #8: the connection is dropped and redialed if we dialed it or the peer
    /// is persistent; lnd: lnd disconnects the peer and connects again unless it dialed us.
    Reconnect {
        /// Node id, hex.
        node_id: String,
        /// The session.
        session: u64,
        /// Why, one line (logged).
        reason: String,
    },
    /// payd -> peerd, event: send a channel message to a peer on a session. Like
    /// [`PeerdApi::Send`], with `seq` counting 0, 1, 2... per session: a gap (a message lost on the
    /// bus) makes peerd end the session, since LDK needs every channel message exactly once.
    ChannelSend {
        /// Node id, hex.
        node_id: String,
        /// The session it is for; dropped if that session has ended.
        session: u64,
        /// 0, 1, 2, ... per session.
        seq: u64,
        /// The whole message: u16 type, then the payload.
        msg: Vec<u8>,
    },
}
