//! Manifest exchange per peer (the reference's behaviour, section 4.1 of the protocol notes):
//! send ours once per connection; on a peer's manifest keep the latest; answer the first one
//! of a connection even if ours went out already, and later ones only if ours never did.
//!
//! One addition: our manifests carry an odd TLV ([`v02::TLV_MANIFEST_WANT_REPLY`]) while we do
//! not hold the peer's manifest, and a manifest carrying it is always answered. That is how a
//! node whose LCP daemon restarted on a live connection gets the peer's manifest again (the
//! reference's rules would never resend it). It cannot ping-pong: an answer never carries the
//! TLV, because whoever answers has just received the manifest it answers. Other
//! implementations ignore the TLV.

use crate::wire::lcp::{v02, Manifest};
use std::collections::BTreeMap;

#[derive(Debug, Default)]
struct PeerState {
    connected: bool,
    sent: bool,
    remote: Option<Manifest>,
}

/// Manifest state of every peer.
#[derive(Debug, Default)]
pub struct Peers {
    map: BTreeMap<String, PeerState>,
}

impl Peers {
    /// A connection came up: a fresh state.
    pub fn connected(&mut self, peer: &str) {
        self.map.insert(peer.to_string(), PeerState { connected: true, ..Default::default() });
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

    /// A manifest arrived; returns whether to answer with ours.
    pub fn on_manifest(&mut self, peer: &str, m: Manifest) -> bool {
        let s = self.map.entry(peer.to_string()).or_default();
        let first = s.remote.is_none();
        let asked = m.extra.iter().any(|t| t.tlv_type == v02::TLV_MANIFEST_WANT_REPLY);
        s.remote = Some(m);
        let reply = first || !s.sent || asked;
        s.sent = true;
        reply
    }

    /// The peer's latest manifest on this connection.
    pub fn remote(&self, peer: &str) -> Option<&Manifest> {
        self.map.get(peer).and_then(|s| s.remote.as_ref())
    }

    /// Whether the peer is connected (as far as lcpd was told).
    pub fn is_connected(&self, peer: &str) -> bool {
        self.map.get(peer).is_some_and(|s| s.connected)
    }

    /// Peers with a manifest, sorted by node id.
    pub fn ready(&self) -> Vec<(String, Manifest)> {
        self.map.iter().filter_map(|(k, s)| s.remote.clone().map(|m| (k.clone(), m))).collect()
    }
}
