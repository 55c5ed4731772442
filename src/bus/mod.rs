//! The bus: ZeroMQ ROUTER/DEALER between services, behind a small [`Transport`] trait.
//!
//! * [`ServiceId`]: typed identities (`peerd`, `lcpd`, `payd`, `jobd/NAME`, `client/NAME`, ...).
//! * [`Envelope`]: one versioned frame with a request id and one sub-enum per service API.
//! * [`Endpoint`]: strict parsing of `inproc://`, `ipc://`, `tcp://`.
//! * [`Bus`]: requests, replies, events, the Hello/Welcome readiness handshake and heartbeats.
//! * [`ZmqBroker`] / [`ZmqTransport`]: ZeroMQ, with CURVE on every remote endpoint.
//! * [`mem::MemHub`]: the same semantics in memory, for tests without ZeroMQ.

pub mod api;
pub mod broker;
mod client;
mod endpoint;
pub mod envelope;
mod error;
pub mod keys;
pub mod mem;
mod service_id;
mod transport;
mod zmq_transport;

pub use client::{Bus, Incoming, HELLO_RETRY, INCOMING_QUEUE};
pub use endpoint::{Endpoint, EndpointError};
pub use envelope::{Corr, Envelope, BUS_VERSION};
pub use error::{BusError, ErrorCode, RemoteError, ToErrorCode};
pub use keys::{ClientKeys, ServerKeys};
pub use service_id::{ServiceId, ServiceIdError};
pub use transport::{Handler, Transport};
pub use zmq_transport::{global_context, BrokerConfig, ZmqBroker, ZmqTransport};
