//! Raw Lightning messages and node identities.
//!
//! The transport layer does not interpret message contents: a [`RawMessage`] is the BOLT #8
//! plaintext, a big-endian `u16` type followed by the payload. Decoding BOLT #1 and LCP messages
//! is the job of the `wire` module.

use std::fmt;

use secp256k1_inet2 as secp;

use super::error::TransportError;

/// Largest BOLT #8 plaintext (type and payload together): the frame length prefix is a `u16`.
pub const MAX_MESSAGE_LEN: usize = u16::MAX as usize;

/// One plaintext Lightning message: `type (u16, big-endian) || payload`.
///
/// Invariant: at least 2 bytes (the type) and at most [`MAX_MESSAGE_LEN`] bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RawMessage {
    bytes: Vec<u8>,
}

impl RawMessage {
    /// Builds a message from its type and payload; fails if the result exceeds
    /// [`MAX_MESSAGE_LEN`].
    pub fn new(msg_type: u16, payload: &[u8]) -> Result<Self, TransportError> {
        let len = payload.len().saturating_add(2);
        if len > MAX_MESSAGE_LEN {
            return Err(TransportError::MessageTooLarge { len });
        }
        let mut bytes = Vec::with_capacity(len);
        bytes.extend_from_slice(&msg_type.to_be_bytes());
        bytes.extend_from_slice(payload);
        Ok(RawMessage { bytes })
    }

    /// Wraps a complete plaintext (type included), as received from a peer or produced by a
    /// codec; fails if it is shorter than the 2-byte type or longer than [`MAX_MESSAGE_LEN`].
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, TransportError> {
        if bytes.len() < 2 {
            return Err(TransportError::MessageTooShort { len: bytes.len() });
        }
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(TransportError::MessageTooLarge { len: bytes.len() });
        }
        Ok(RawMessage { bytes })
    }

    /// Wraps bytes whose length the caller has bounded to `2..=MAX_MESSAGE_LEN` by
    /// construction.
    pub(crate) fn from_checked(bytes: Vec<u8>) -> Self {
        debug_assert!((2..=MAX_MESSAGE_LEN).contains(&bytes.len()));
        RawMessage { bytes }
    }

    /// The message type (first two bytes, big-endian).
    pub fn msg_type(&self) -> u16 {
        // The constructor guarantees at least two bytes.
        match self.bytes.as_slice() {
            [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
            _ => 0,
        }
    }

    /// The payload after the type.
    pub fn payload(&self) -> &[u8] {
        self.bytes.get(2..).unwrap_or(&[])
    }

    /// The whole plaintext, type included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Length of the whole plaintext, type included.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a message holds at least its type. Present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Consumes the message and returns the whole plaintext.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

impl fmt::Debug for RawMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawMessage")
            .field("type", &self.msg_type())
            .field("payload_len", &self.payload().len())
            .finish()
    }
}

/// A Lightning node id: a compressed secp256k1 public key (33 bytes), validated on construction.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId([u8; 33]);

impl NodeId {
    /// Validates 33 bytes as a compressed secp256k1 point.
    pub fn from_bytes(bytes: [u8; 33]) -> Result<Self, TransportError> {
        secp::PublicKey::from_slice(&bytes)
            .map_err(|e| TransportError::InvalidNodeId(format!("not a compressed point: {e}")))?;
        Ok(NodeId(bytes))
    }

    /// Validates a slice (must be exactly 33 bytes) as a compressed secp256k1 point.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, TransportError> {
        let arr: [u8; 33] = bytes
            .try_into()
            .map_err(|_| TransportError::InvalidNodeId(format!("expected 33 bytes, got {}", bytes.len())))?;
        Self::from_bytes(arr)
    }

    /// The serialized compressed public key.
    pub fn to_bytes(&self) -> [u8; 33] {
        self.0
    }

    pub(crate) fn to_inet2(self) -> Result<secp::PublicKey, TransportError> {
        secp::PublicKey::from_slice(&self.0)
            .map_err(|e| TransportError::InvalidNodeId(format!("not a compressed point: {e}")))
    }

    pub(crate) fn from_inet2(pk: &secp::PublicKey) -> Self {
        NodeId(pk.serialize())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", hex::encode(self.0))
    }
}

/// This node's static key for BOLT #8 handshakes: the 32-byte secret and its node id.
#[derive(Clone)]
pub struct LocalIdentity {
    secret: secp::SecretKey,
    node_id: NodeId,
}

impl LocalIdentity {
    /// Validates a 32-byte secret key (non-zero, below the curve order) and derives its node id.
    pub fn from_secret_bytes(secret: [u8; 32]) -> Result<Self, TransportError> {
        let secret =
            secp::SecretKey::from_slice(&secret).map_err(|e| TransportError::InvalidSecretKey(e.to_string()))?;
        let ctx = secp::Secp256k1::signing_only();
        let node_id = NodeId::from_inet2(&secp::PublicKey::from_secret_key(&ctx, &secret));
        Ok(LocalIdentity { secret, node_id })
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    pub(crate) fn secret(&self) -> &secp::SecretKey {
        &self.secret
    }
}

impl fmt::Debug for LocalIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalIdentity").field("node_id", &self.node_id).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_message_type_and_payload() {
        let m = RawMessage::new(42081, b"abc").expect("small message");
        assert_eq!(m.msg_type(), 42081);
        assert_eq!(m.payload(), b"abc");
        assert_eq!(m.as_bytes(), &[0xa4, 0x61, b'a', b'b', b'c']);
        assert_eq!(m.len(), 5);
    }

    #[test]
    fn raw_message_limits() {
        assert!(RawMessage::new(1, &vec![0; MAX_MESSAGE_LEN - 2]).is_ok());
        assert!(matches!(
            RawMessage::new(1, &vec![0; MAX_MESSAGE_LEN - 1]),
            Err(TransportError::MessageTooLarge { len }) if len == MAX_MESSAGE_LEN + 1
        ));
        assert!(matches!(RawMessage::from_bytes(vec![7]), Err(TransportError::MessageTooShort { len: 1 })));
        assert!(matches!(
            RawMessage::from_bytes(vec![0; MAX_MESSAGE_LEN + 1]),
            Err(TransportError::MessageTooLarge { .. })
        ));
    }

    #[test]
    fn identity_matches_bolt8_vector_key() {
        let id = LocalIdentity::from_secret_bytes([0x11; 32]).expect("valid key");
        assert_eq!(id.node_id().to_string(), "034f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa");
        assert!(LocalIdentity::from_secret_bytes([0; 32]).is_err());
        assert!(LocalIdentity::from_secret_bytes([0xff; 32]).is_err());
    }

    #[test]
    fn node_id_validation() {
        let mut bad = [0u8; 33];
        bad[0] = 0x04;
        assert!(NodeId::from_bytes(bad).is_err());
        assert!(NodeId::from_slice(&[2u8; 5]).is_err());
        let good = LocalIdentity::from_secret_bytes([0x21; 32]).expect("valid key").node_id();
        assert_eq!(NodeId::from_slice(&good.to_bytes()).ok(), Some(good));
    }
}
