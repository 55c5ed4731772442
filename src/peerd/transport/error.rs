//! Errors of the transport layer and the typed reasons a peer connection ends.

use std::fmt;
use std::time::Duration;

/// Everything that can go wrong while establishing or using a BOLT #8 connection.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The socket failed.
    #[error("socket i/o failed: {0}")]
    Io(#[from] std::io::Error),
    /// The Noise_XK handshake failed (bad version, bad key, bad MAC in an act).
    #[error("BOLT #8 handshake failed in act {act}: {detail}")]
    Handshake {
        /// Act (1, 2 or 3) whose processing failed.
        act: u8,
        /// What was wrong with it.
        detail: String,
    },
    /// The peer closed the socket before an act was complete.
    #[error("peer closed the connection during handshake act {act} after {received} of {expected} bytes")]
    HandshakeEof {
        /// Act (1, 2 or 3) being read.
        act: u8,
        /// Bytes of the act received before end of stream.
        received: usize,
        /// Length of that act.
        expected: usize,
    },
    /// The handshake (TCP connect included, for outbound) took longer than allowed.
    #[error("BOLT #8 handshake did not complete within {0:?}")]
    HandshakeTimeout(Duration),
    /// The authentication tag of an inbound frame did not verify.
    #[error("inbound frame failed authentication (bad MAC)")]
    MacFailure,
    /// The peer closed the socket in the middle of a frame.
    #[error("peer closed the connection in the middle of a frame ({pending} bytes of it received)")]
    TruncatedFrame {
        /// Bytes of the unfinished frame that were received.
        pending: usize,
    },
    /// An inbound frame announced a message longer than this connection accepts.
    #[error("inbound frame length prefix exceeds the limit of {limit} bytes")]
    OversizedFrame {
        /// The configured maximum plaintext length.
        limit: usize,
    },
    /// An outbound message is larger than BOLT #8 allows (65535 bytes).
    #[error("message of {len} bytes exceeds the BOLT #8 maximum of 65535 bytes")]
    MessageTooLarge {
        /// Length of the refused message.
        len: usize,
    },
    /// A message without its 2-byte type.
    #[error("message of {len} bytes is too short to hold its 2-byte type")]
    MessageTooShort {
        /// Length of the message.
        len: usize,
    },
    /// Encryption of an outbound frame failed.
    #[error("encrypting an outbound frame failed: {0}")]
    Encryption(String),
    /// The 32-byte node secret is not a valid secp256k1 secret key.
    #[error("invalid node secret key: {0}")]
    InvalidSecretKey(String),
    /// Bytes that should be a node id are not a compressed secp256k1 point.
    #[error("invalid node id: {0}")]
    InvalidNodeId(String),
    /// The peer closed the connection cleanly (between frames).
    #[error("peer closed the connection")]
    RemoteClosed,
    /// The connection is closed; the message was not queued.
    #[error("connection is closed: {0}")]
    ConnectionClosed(DisconnectReason),
}

/// Why a peer connection ended. Logged (target `peerd`) and reported to the owner of the
/// connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The owner asked for it (`disconnect`/`abort`), or dropped every handle.
    LocalRequest,
    /// The peer closed the socket between frames.
    RemoteClosed,
    /// The handshake did not complete in time.
    HandshakeTimeout,
    /// The handshake failed (garbage, bad version, bad key, bad MAC, early close).
    HandshakeFailed(String),
    /// A frame failed authentication.
    MacFailure,
    /// The peer closed the socket mid-frame.
    TruncatedFrame {
        /// Bytes of the unfinished frame that were received.
        pending: usize,
    },
    /// The peer announced a message longer than accepted.
    OversizedFrame {
        /// The configured maximum plaintext length.
        limit: usize,
    },
    /// The peer sent something that is not a message (shorter than its type).
    InvalidMessage(String),
    /// The peer sent more messages than the rate limit allows.
    RateLimited {
        /// Bucket size of the limit that was exceeded.
        burst: u32,
        /// Sustained messages per second of that limit.
        per_second: u32,
    },
    /// Nothing was received for longer than the keepalive timeout.
    KeepaliveTimeout {
        /// How long the peer had been silent.
        idle: Duration,
    },
    /// The consumer of inbound messages went away.
    InboundClosed,
    /// The listener is at its connection limit.
    TooManyConnections {
        /// The limit.
        max: usize,
    },
    /// A socket error.
    Io(String),
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::LocalRequest => f.write_str("closed locally"),
            DisconnectReason::RemoteClosed => f.write_str("peer closed the connection"),
            DisconnectReason::HandshakeTimeout => f.write_str("handshake timed out"),
            DisconnectReason::HandshakeFailed(d) => write!(f, "handshake failed: {d}"),
            DisconnectReason::MacFailure => f.write_str("frame failed authentication (bad MAC)"),
            DisconnectReason::TruncatedFrame { pending } => {
                write!(f, "peer closed mid-frame after {pending} bytes")
            }
            DisconnectReason::OversizedFrame { limit } => {
                write!(f, "frame length prefix over the {limit}-byte limit")
            }
            DisconnectReason::InvalidMessage(d) => write!(f, "invalid message: {d}"),
            DisconnectReason::RateLimited { burst, per_second } => {
                write!(f, "inbound rate limit exceeded (burst {burst}, {per_second} msg/s)")
            }
            DisconnectReason::KeepaliveTimeout { idle } => {
                write!(f, "no traffic for {idle:?}: peer presumed dead")
            }
            DisconnectReason::InboundClosed => f.write_str("inbound consumer went away"),
            DisconnectReason::TooManyConnections { max } => {
                write!(f, "listener at its limit of {max} connections")
            }
            DisconnectReason::Io(e) => write!(f, "socket error: {e}"),
        }
    }
}

impl From<TransportError> for DisconnectReason {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Io(e) => DisconnectReason::Io(e.to_string()),
            e @ (TransportError::Handshake { .. } | TransportError::HandshakeEof { .. }) => {
                DisconnectReason::HandshakeFailed(e.to_string())
            }
            TransportError::HandshakeTimeout(_) => DisconnectReason::HandshakeTimeout,
            TransportError::MacFailure => DisconnectReason::MacFailure,
            TransportError::TruncatedFrame { pending } => DisconnectReason::TruncatedFrame { pending },
            TransportError::OversizedFrame { limit } => DisconnectReason::OversizedFrame { limit },
            e @ (TransportError::MessageTooLarge { .. } | TransportError::MessageTooShort { .. }) => {
                DisconnectReason::InvalidMessage(e.to_string())
            }
            e @ (TransportError::Encryption(_)
            | TransportError::InvalidSecretKey(_)
            | TransportError::InvalidNodeId(_)) => DisconnectReason::Io(e.to_string()),
            TransportError::RemoteClosed => DisconnectReason::RemoteClosed,
            TransportError::ConnectionClosed(r) => r,
        }
    }
}
