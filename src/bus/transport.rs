//! The small transport trait the bus client runs over, so protocol logic is testable without
//! ZeroMQ (see [`super::mem`]) and ZeroMQ stays in one file (see [`super::zmq_transport`]).

use super::{BusError, ServiceId};
use std::sync::Arc;

/// Called by a transport for every frame it receives: who sent it (as routed by the broker) and
/// the bytes. It runs on the transport's own thread (or the sender's, in memory), so it must be
/// quick: it may block only to apply back-pressure, never on the bus itself.
pub type Handler = Arc<dyn Fn(ServiceId, Vec<u8>) + Send + Sync>;

/// Sends frames to other participants through the broker; received frames go to the
/// [`Handler`] given when the transport was made.
///
/// Contract: frames from one sender to one receiver arrive in order and at most once; a frame
/// that cannot be routed is answered (if it was a request) with an error reply from the broker;
/// `send` never blocks: a full queue is [`BusError::Backpressure`].
pub trait Transport: Send + Sync + 'static {
    /// Queues one frame for `to`.
    fn send(&self, to: &ServiceId, frame: Vec<u8>) -> Result<(), BusError>;
    /// Stops the transport; later sends fail with [`BusError::Closed`].
    fn close(&self);
}
