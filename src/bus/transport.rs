//! The small transport trait the bus client runs over, so protocol logic is testable without
//! ZeroMQ (see [`super::mem`]) and ZeroMQ stays in one file (see [`super::zmq_transport`]).

use super::{BusError, ServiceId};

/// A frame received from the bus: who sent it (as routed by the broker) and the bytes.
pub type Inbound = (ServiceId, Vec<u8>);

/// Capacity of the inbound queue between a transport and its bus client.
pub const INBOUND_QUEUE: usize = 4096;

/// Sends frames to other participants through the broker. Received frames arrive on the
/// `tokio::sync::mpsc::Receiver<Inbound>` returned together with the transport.
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
