//! The message-level transport contract, and an in-memory implementation for tests.
//!
//! The connection actor ([`super::conn`]) only sees these traits, so its logic (queues,
//! back-pressure, rate limits, keepalive) is tested without sockets or cryptography.

use std::future::Future;

use tokio::sync::mpsc;

use super::error::TransportError;
use super::message::RawMessage;

/// The receiving half of an authenticated, ordered message transport.
///
/// Contract:
/// - `read_message` returns messages in the order the peer sent them, each exactly once.
/// - A clean close by the peer between messages is `Err(TransportError::RemoteClosed)`; every
///   other error (bad MAC, truncated frame, oversized frame) is fatal: after any `Err` the
///   reader must not be used again.
/// - The future is cancel-safe: dropping it before completion loses no received bytes.
pub trait MessageReader: Send + 'static {
    /// Waits for the next complete message.
    fn read_message(&mut self) -> impl Future<Output = Result<RawMessage, TransportError>> + Send;
}

/// The sending half of an authenticated, ordered message transport.
///
/// Contract:
/// - Messages are delivered in the order of `write_message` calls.
/// - `write_message` may buffer; buffered messages reach the peer at the latest on `flush`.
/// - After any `Err` the writer must not be used again.
/// - `close` flushes, then signals end of stream to the peer.
pub trait MessageWriter: Send + 'static {
    /// Queues one message for sending (may buffer).
    fn write_message(&mut self, msg: &RawMessage) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Sends everything buffered so far.
    fn flush(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Flushes and closes the sending direction.
    fn close(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send;
}

/// In-memory reader: the receiving end of a [`memory_pair`].
#[derive(Debug)]
pub struct MemoryReader {
    rx: mpsc::Receiver<Result<RawMessage, TransportError>>,
}

/// In-memory writer: the sending end of a [`memory_pair`].
#[derive(Debug)]
pub struct MemoryWriter {
    tx: Option<mpsc::Sender<Result<RawMessage, TransportError>>>,
}

/// A test hook to inject transport failures into the reading side of a [`memory_pair`].
#[derive(Debug, Clone)]
pub struct MemoryFault {
    // Weak, so that closing the writer still ends the reader's stream.
    tx: mpsc::WeakSender<Result<RawMessage, TransportError>>,
}

impl MemoryFault {
    /// Makes the paired reader return `err` after the messages already queued. Returns false if
    /// the link is already gone.
    pub async fn inject(&self, err: TransportError) -> bool {
        match self.tx.upgrade() {
            Some(tx) => tx.send(Err(err)).await.is_ok(),
            None => false,
        }
    }
}

/// One end of an in-memory link: what it reads, what it writes, and a fault injector for the
/// messages it reads.
pub type MemoryEnd = (MemoryReader, MemoryWriter, MemoryFault);

/// Two connected in-memory ends; each direction buffers at most `capacity` messages (writers
/// wait when full, like a socket whose buffers are full).
pub fn memory_pair(capacity: usize) -> (MemoryEnd, MemoryEnd) {
    let cap = capacity.max(1);
    let (a_tx, a_rx) = mpsc::channel(cap);
    let (b_tx, b_rx) = mpsc::channel(cap);
    (
        (MemoryReader { rx: b_rx }, MemoryWriter { tx: Some(a_tx.clone()) }, MemoryFault { tx: b_tx.downgrade() }),
        (MemoryReader { rx: a_rx }, MemoryWriter { tx: Some(b_tx) }, MemoryFault { tx: a_tx.downgrade() }),
    )
}

impl MessageReader for MemoryReader {
    async fn read_message(&mut self) -> Result<RawMessage, TransportError> {
        match self.rx.recv().await {
            Some(r) => r,
            None => Err(TransportError::RemoteClosed),
        }
    }
}

impl MessageWriter for MemoryWriter {
    async fn write_message(&mut self, msg: &RawMessage) -> Result<(), TransportError> {
        let tx = self.tx.as_ref().ok_or_else(|| {
            TransportError::Io(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "writer already closed"))
        })?;
        tx.send(Ok(msg.clone()))
            .await
            .map_err(|_| TransportError::Io(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "peer reader dropped")))
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        Ok(())
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        self.tx = None;
        Ok(())
    }
}
