//! peerd's BOLT #8 transport and connection layer.
//!
//! - [`noise`]: the Noise_XK handshake and frame encryption (internet2's sans-IO state
//!   machines) driven over our own tokio sockets, with `TCP_NODELAY`, a handshake timeout and
//!   frame limits.
//! - [`io`]: the [`MessageReader`] / [`MessageWriter`] contract the connection logic is written
//!   against, and an in-memory implementation.
//! - [`conn`]: the per-peer actor (reader and writer tasks, bounded queues with back-pressure,
//!   inbound rate limit, keepalive, typed disconnect reasons).
//! - [`net`]: the TCP [`Listener`] (connection limit) and [`Dialer`].
//!
//! Messages are raw (`u16` type and payload); BOLT #1 and LCP codecs live in `wire`.

pub mod conn;
pub mod error;
pub mod io;
pub mod keepalive;
pub mod limits;
pub mod message;
pub mod net;
pub mod noise;

pub use conn::{Connection, ConnectionConfig, PeerHandle, TrySendError, LOG_TARGET};
pub use error::{DisconnectReason, TransportError};
pub use io::{memory_pair, MessageReader, MessageWriter};
pub use keepalive::{Bolt1Pings, Intercept, PassThrough, PingHooks};
pub use limits::{KeepaliveConfig, RateLimit};
pub use message::{LocalIdentity, NodeId, RawMessage, MAX_MESSAGE_LEN};
pub use net::{Dialer, Listener, ListenerEvent, TransportConfig};
pub use noise::NoiseConfig;
