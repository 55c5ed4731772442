//! Manifest exchange per peer (section 4.1 of the protocol notes, with one change).
//!
//! The reference (go-lcpd) sends its manifest once per connection (at its start and when the
//! peer comes online, each time only if not sent yet); on a peer's manifest it answers if it held
//! none from that peer, and otherwise only if it never sent its own. It never answers a repeat.
//! That loses the exchange whenever one side's LCP daemon restarts on a live connection: a
//! restarted reference sends its manifest again, and a node following the same rules that already
//! holds one would not answer, so the reference refuses our jobs for want of our manifest.
//!
//! Our rule: answer every manifest the peer sends, once, unless it is itself an answer. Our
//! answers carry an odd TLV ([`v02::TLV_MANIFEST_NO_REPLY`], ignored by other implementations)
//! so that two nodes of ours never answer each other's answers: every unmarked manifest (sent at
//! a connection's start, at a daemon's start, or when offers change) costs exactly one marked
//! answer and nothing more. Against the reference it also ends: it answers our marked answer only
//! when it held no manifest of ours (once) or never sent its own (once).
//!
//! Our manifests also carry [`v02::TLV_MANIFEST_WANT_REPLY`] while we hold no manifest from the
//! peer, for nodes of ours of earlier versions, which answer a repeat only when asked that way.
//!
//! The other direction (our LCP daemon restarted and the reference will not send its manifest
//! again) is not solved here: peerd keeps the last manifest of each connection and lcpd restores
//! it at start ([`Peers::restore`]); when even that is missing, lcpd cycles the connection
//! ([`Peers::should_cycle`]).

use crate::wire::lcp::{v02, Manifest};
use std::collections::BTreeMap;

/// The least time between two connection cycles lcpd asks for one peer: a peer that does not
/// send its manifest even on a fresh connection is not cycled again and again.
pub const CYCLE_INTERVAL_SECS: u64 = 300;
/// How long a connection may go without the peer's manifest before lcpd would cycle it: the
/// manifest follows the connection by milliseconds, and a job message or a quote asked for in
/// that instant must not end the connection that is about to bring it.
pub const CYCLE_GRACE_SECS: u64 = 5;

#[derive(Debug, Default)]
struct PeerState {
    connected: bool,
    /// When lcpd learnt of the connection.
    since: u64,
    sent: bool,
    remote: Option<Manifest>,
}

/// Manifest state of every peer.
#[derive(Debug, Default)]
pub struct Peers {
    map: BTreeMap<String, PeerState>,
    /// When lcpd last asked for a peer's connection to be cycled (survives the reconnection).
    cycled: BTreeMap<String, u64>,
}

/// Whether a manifest is an answer (it must not be answered).
pub fn is_answer(m: &Manifest) -> bool {
    m.extra.iter().any(|t| t.tlv_type == v02::TLV_MANIFEST_NO_REPLY)
}

impl Peers {
    /// A connection came up (lcpd learnt of it at `now`): a fresh state.
    pub fn connected(&mut self, now: u64, peer: &str) {
        self.map.insert(peer.to_string(), PeerState { connected: true, since: now, ..Default::default() });
    }

    /// Marks our manifest as sent on this connection; returns whether it had not been.
    pub fn mark_sent(&mut self, peer: &str) -> bool {
        let s = self.map.entry(peer.to_string()).or_default();
        !std::mem::replace(&mut s.sent, true)
    }

    /// The connection ended: forget everything about it.
    pub fn disconnected(&mut self, peer: &str) {
        self.map.remove(peer);
    }

    /// A manifest arrived; returns whether to answer with ours: unless it is an answer itself.
    pub fn on_manifest(&mut self, peer: &str, m: Manifest) -> bool {
        let s = self.map.entry(peer.to_string()).or_default();
        let reply = !is_answer(&m);
        s.remote = Some(m);
        s.sent |= reply;
        reply
    }

    /// The peer's manifest as received on this connection before lcpd (re)started (kept by
    /// peerd): held as if just received, and not answered (the peer holds ours already, or its
    /// own rules make it send again).
    pub fn restore(&mut self, peer: &str, m: Manifest) {
        let s = self.map.entry(peer.to_string()).or_default();
        if s.remote.is_none() {
            s.remote = Some(m);
        }
    }

    /// The peer's latest manifest on this connection.
    pub fn remote(&self, peer: &str) -> Option<&Manifest> {
        self.map.get(peer).and_then(|s| s.remote.as_ref())
    }

    /// Whether the peer is connected (as far as lcpd was told).
    pub fn is_connected(&self, peer: &str) -> bool {
        self.map.get(peer).is_some_and(|s| s.connected)
    }

    /// Whether to cycle the connection of `peer`, which speaks LCP (it sent a job message, or a
    /// client asked for a job) but whose manifest we do not hold: nothing else makes a peer that
    /// follows the reference's rules send it again. Not before the connection is
    /// [`CYCLE_GRACE_SECS`] old, and at most once per [`CYCLE_INTERVAL_SECS`]; returns true when
    /// the caller should cycle now (and notes it).
    pub fn should_cycle(&mut self, now: u64, peer: &str) -> bool {
        match self.map.get(peer) {
            Some(s) if s.connected && s.remote.is_none() && now >= s.since.saturating_add(CYCLE_GRACE_SECS) => {}
            _ => return false,
        }
        match self.cycled.get(peer) {
            Some(at) if now < at.saturating_add(CYCLE_INTERVAL_SECS) => false,
            _ => {
                self.cycled.insert(peer.to_string(), now);
                true
            }
        }
    }

    /// Peers with a manifest, sorted by node id.
    pub fn ready(&self) -> Vec<(String, Manifest)> {
        self.map.iter().filter_map(|(k, s)| s.remote.clone().map(|m| (k.clone(), m))).collect()
    }
}
