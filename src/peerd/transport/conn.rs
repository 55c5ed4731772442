//! The per-peer connection actor.
//!
//! Each connection runs three tasks: a reader (transport -> bounded inbound queue), a writer
//! (bounded outbound queue -> transport, plus the keepalive timer) and a supervisor that ends
//! both when either stops, then logs and publishes the typed [`DisconnectReason`].
//!
//! Back-pressure: when the inbound queue is full the reader stops reading the transport, so a
//! slow consumer makes the peer's TCP window fill up instead of our memory. Time spent stalled
//! this way does not count as peer silence for the keepalive.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::error::{DisconnectReason, TransportError};
use super::io::{MessageReader, MessageWriter};
use super::keepalive::{Intercept, PingHooks};
use super::limits::{KeepaliveAction, KeepaliveClock, KeepaliveConfig, RateLimit, TokenBucket};
use super::message::{NodeId, RawMessage};

/// Tracing target of the transport layer.
pub const LOG_TARGET: &str = "peerd";

/// Replies produced by the reader (pongs) wait here; if it is full, replies are dropped.
const CONTROL_QUEUE: usize = 16;
/// Outbound messages written back to back before a flush.
const MAX_WRITE_BATCH: usize = 64;

/// Per-connection settings of the actor.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Outbound messages queued before `send` waits.
    pub outbound_queue: usize,
    /// Inbound messages queued before the reader stops reading the socket.
    pub inbound_queue: usize,
    /// Inbound rate limit; exceeding it closes the connection. `None`: unlimited.
    pub rate_limit: Option<RateLimit>,
    /// Keepalive timer; `None`: no pings, no dead-peer detection.
    pub keepalive: Option<KeepaliveConfig>,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            outbound_queue: 256,
            inbound_queue: 256,
            rate_limit: Some(RateLimit::default()),
            keepalive: Some(KeepaliveConfig::default()),
        }
    }
}

enum Outbound {
    Message(RawMessage),
    Close,
}

/// Shared between the reader (writes) and the writer's keepalive clock (reads).
#[derive(Default)]
struct Activity {
    received: AtomicU64,
    stalled: AtomicBool,
    /// Set by the writer when the owner asked for a graceful close.
    closing: AtomicBool,
}

/// Why [`PeerHandle::try_send`] did not queue a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrySendError {
    /// The outbound queue is full; the message is given back.
    #[error("outbound queue is full")]
    Full(RawMessage),
    /// The connection has ended.
    #[error("connection is closed: {0}")]
    Closed(DisconnectReason),
}

/// A cloneable handle to a running connection: send messages, close it, learn why it closed.
#[derive(Clone)]
pub struct PeerHandle {
    remote: NodeId,
    addr: Option<SocketAddr>,
    outbound: mpsc::Sender<Outbound>,
    cancel: CancellationToken,
    closed: watch::Receiver<Option<DisconnectReason>>,
    activity: Arc<Activity>,
}

impl std::fmt::Debug for PeerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerHandle").field("remote", &self.remote).field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl PeerHandle {
    /// The peer's node id (authenticated by the handshake).
    pub fn remote(&self) -> NodeId {
        self.remote
    }

    /// The peer's socket address, if the transport has one.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    fn closed_error(&self) -> TransportError {
        TransportError::ConnectionClosed(self.close_reason().unwrap_or(DisconnectReason::LocalRequest))
    }

    /// Queues a message; waits while the outbound queue is full. Messages are sent in the
    /// order they are queued.
    pub async fn send(&self, msg: RawMessage) -> Result<(), TransportError> {
        self.outbound.send(Outbound::Message(msg)).await.map_err(|_| self.closed_error())
    }

    /// Queues a message if there is room now; otherwise gives it back (queue full) or reports
    /// why the connection is closed.
    pub fn try_send(&self, msg: RawMessage) -> Result<(), TrySendError> {
        match self.outbound.try_send(Outbound::Message(msg)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(Outbound::Message(m))) => Err(TrySendError::Full(m)),
            Err(_) => Err(TrySendError::Closed(self.close_reason().unwrap_or(DisconnectReason::LocalRequest))),
        }
    }

    /// Closes gracefully: messages queued before this call are sent first. Returns the reason
    /// the connection ended (`LocalRequest` unless it had already ended otherwise).
    pub async fn disconnect(&self) -> DisconnectReason {
        // If the queue is closed the connection is already gone; `closed` reports why.
        let _ = self.outbound.send(Outbound::Close).await;
        self.closed().await
    }

    /// Closes now, dropping queued messages.
    pub fn abort(&self) {
        self.cancel.cancel();
    }

    /// Why the connection ended, if it has.
    pub fn close_reason(&self) -> Option<DisconnectReason> {
        self.closed.borrow().clone()
    }

    /// Waits until the connection has ended and returns why.
    pub async fn closed(&self) -> DisconnectReason {
        let mut rx = self.closed.clone();
        let reason = match rx.wait_for(|r| r.is_some()).await {
            Ok(r) => r.clone().unwrap_or(DisconnectReason::LocalRequest),
            Err(_) => DisconnectReason::Io("connection supervisor ended without a reason".into()),
        };
        reason
    }

    /// True while the reader has stopped reading because the inbound queue is full.
    pub fn inbound_paused(&self) -> bool {
        self.activity.stalled.load(Ordering::Relaxed)
    }

    /// True once the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.closed.borrow().is_some()
    }
}

/// A running connection: the handle and the inbound message queue.
///
/// The inbound receiver yields the peer's messages in order and `None` once the connection has
/// ended and every received message has been taken. Dropping it closes the connection
/// (`InboundClosed`) the next time a message arrives.
#[derive(Debug)]
pub struct Connection {
    /// Handle for sending and closing.
    pub handle: PeerHandle,
    /// Inbound messages (pings and pongs are filtered by the [`PingHooks`]).
    pub inbound: mpsc::Receiver<RawMessage>,
}

impl Connection {
    /// Starts the actor over an established transport.
    pub fn spawn<R: MessageReader, W: MessageWriter>(
        reader: R,
        writer: W,
        remote: NodeId,
        addr: Option<SocketAddr>,
        config: &ConnectionConfig,
        hooks: Arc<dyn PingHooks>,
    ) -> Connection {
        Self::spawn_with_permit(reader, writer, remote, addr, config, hooks, None)
    }

    /// As [`Connection::spawn`], holding `permit` (a listener slot) until the connection ends.
    pub(crate) fn spawn_with_permit<R: MessageReader, W: MessageWriter>(
        reader: R,
        writer: W,
        remote: NodeId,
        addr: Option<SocketAddr>,
        config: &ConnectionConfig,
        hooks: Arc<dyn PingHooks>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Connection {
        let (out_tx, out_rx) = mpsc::channel(config.outbound_queue.max(1));
        let (in_tx, in_rx) = mpsc::channel(config.inbound_queue.max(1));
        let (ctl_tx, ctl_rx) = mpsc::channel(CONTROL_QUEUE);
        let (closed_tx, closed_rx) = watch::channel(None);
        let cancel = CancellationToken::new();
        let activity = Arc::new(Activity::default());

        let reader_task = tokio::spawn(read_loop(
            reader,
            in_tx,
            ctl_tx,
            Arc::clone(&activity),
            config.rate_limit,
            Arc::clone(&hooks),
        ));
        let writer_task =
            tokio::spawn(write_loop(writer, out_rx, ctl_rx, Arc::clone(&activity), config.keepalive, hooks));
        tokio::spawn(supervise(
            reader_task,
            writer_task,
            cancel.clone(),
            closed_tx,
            remote,
            addr,
            permit,
            Arc::clone(&activity),
        ));

        tracing::debug!(target: LOG_TARGET, peer = %remote, addr = ?addr, "peer connected");
        Connection {
            handle: PeerHandle { remote, addr, outbound: out_tx, cancel, closed: closed_rx, activity },
            inbound: in_rx,
        }
    }
}

/// Current time from tokio's clock (so tests can pause and advance it).
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

fn join_reason(r: Result<DisconnectReason, tokio::task::JoinError>, task: &str) -> DisconnectReason {
    r.unwrap_or_else(|e| DisconnectReason::Io(format!("{task} task failed: {e}")))
}

#[allow(clippy::too_many_arguments)]
async fn supervise(
    mut reader_task: JoinHandle<DisconnectReason>,
    mut writer_task: JoinHandle<DisconnectReason>,
    cancel: CancellationToken,
    closed_tx: watch::Sender<Option<DisconnectReason>>,
    remote: NodeId,
    addr: Option<SocketAddr>,
    permit: Option<OwnedSemaphorePermit>,
    activity: Arc<Activity>,
) {
    let closing = &activity.closing;
    // Whichever task ends first decides the reason; the other is stopped and awaited, so the
    // socket is closed by the time the reason is published.
    let reason = tokio::select! {
        r = &mut reader_task => {
            writer_task.abort();
            let _ = writer_task.await;
            join_reason(r, "reader")
        }
        w = &mut writer_task => {
            reader_task.abort();
            let _ = reader_task.await;
            join_reason(w, "writer")
        }
        _ = cancel.cancelled() => {
            reader_task.abort();
            writer_task.abort();
            let _ = reader_task.await;
            let _ = writer_task.await;
            DisconnectReason::LocalRequest
        }
    };
    // Once we have asked for the close, the peer's reaction to it is not the reason.
    let reason = if closing.load(Ordering::Relaxed) { DisconnectReason::LocalRequest } else { reason };
    match &reason {
        DisconnectReason::LocalRequest | DisconnectReason::RemoteClosed => {
            tracing::info!(target: LOG_TARGET, peer = %remote, addr = ?addr, reason = %reason, "peer disconnected")
        }
        _ => {
            tracing::warn!(target: LOG_TARGET, peer = %remote, addr = ?addr, reason = %reason, "peer disconnected")
        }
    }
    drop(permit);
    let _ = closed_tx.send(Some(reason));
}

async fn read_loop<R: MessageReader>(
    mut reader: R,
    inbound: mpsc::Sender<RawMessage>,
    control: mpsc::Sender<RawMessage>,
    activity: Arc<Activity>,
    rate_limit: Option<RateLimit>,
    hooks: Arc<dyn PingHooks>,
) -> DisconnectReason {
    let mut bucket = rate_limit.map(|l| TokenBucket::new(l, now()));
    loop {
        let msg = match reader.read_message().await {
            Ok(m) => m,
            Err(e) => return e.into(),
        };
        activity.received.fetch_add(1, Ordering::Relaxed);
        if let Some(b) = bucket.as_mut() {
            if !b.try_take(now()) {
                let l = b.limit();
                return DisconnectReason::RateLimited { burst: l.burst, per_second: l.per_second };
            }
        }
        match hooks.on_inbound(&msg) {
            Intercept::Deliver => match inbound.try_send(msg) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(msg)) => {
                    activity.stalled.store(true, Ordering::Relaxed);
                    let sent = inbound.send(msg).await;
                    activity.stalled.store(false, Ordering::Relaxed);
                    activity.received.fetch_add(1, Ordering::Relaxed);
                    if sent.is_err() {
                        return DisconnectReason::InboundClosed;
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    return DisconnectReason::InboundClosed;
                }
            },
            Intercept::Consume => {}
            Intercept::Reply(reply) => {
                if control.try_send(reply).is_err() {
                    tracing::debug!(target: LOG_TARGET, "reply dropped: control queue full");
                }
            }
        }
    }
}

async fn tick(timer: &mut Option<tokio::time::Interval>) {
    match timer.as_mut() {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending::<()>().await,
    }
}

async fn write_loop<W: MessageWriter>(
    mut writer: W,
    mut outbound: mpsc::Receiver<Outbound>,
    mut control: mpsc::Receiver<RawMessage>,
    activity: Arc<Activity>,
    keepalive: Option<KeepaliveConfig>,
    hooks: Arc<dyn PingHooks>,
) -> DisconnectReason {
    let mut clock = keepalive.map(|k| KeepaliveClock::new(k, now()));
    let mut timer = keepalive.map(|k| {
        let mut t = tokio::time::interval(k.tick());
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut seen = 0u64;
    let result: Result<DisconnectReason, TransportError> = async {
        loop {
            tokio::select! {
                biased;
                Some(reply) = control.recv() => {
                    writer.write_message(&reply).await?;
                    writer.flush().await?;
                }
                out = outbound.recv() => {
                    let mut next = out;
                    let mut written = 0;
                    loop {
                        match next {
                            Some(Outbound::Message(m)) => writer.write_message(&m).await?,
                            Some(Outbound::Close) | None => {
                                activity.closing.store(true, Ordering::Relaxed);
                                writer.close().await?;
                                return Ok(DisconnectReason::LocalRequest);
                            }
                        }
                        written += 1;
                        if written >= MAX_WRITE_BATCH {
                            break;
                        }
                        match outbound.try_recv() {
                            Ok(o) => next = Some(o),
                            Err(_) => break,
                        }
                    }
                    writer.flush().await?;
                }
                _ = tick(&mut timer) => {
                    let Some(c) = clock.as_mut() else { continue };
                    let now = now();
                    let received = activity.received.load(Ordering::Relaxed);
                    if received != seen {
                        seen = received;
                        c.on_receive(now);
                    }
                    match c.on_tick(now, activity.stalled.load(Ordering::Relaxed)) {
                        KeepaliveAction::Idle => {}
                        KeepaliveAction::SendPing => {
                            writer.write_message(&hooks.ping()).await?;
                            writer.flush().await?;
                        }
                        KeepaliveAction::Dead { idle } => {
                            return Ok(DisconnectReason::KeepaliveTimeout { idle });
                        }
                    }
                }
            }
        }
    }
    .await;
    result.unwrap_or_else(DisconnectReason::from)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::super::io::{memory_pair, MemoryFault, MemoryReader, MemoryWriter};
    use super::super::keepalive::{Bolt1Pings, PassThrough, PING_TYPE, PONG_TYPE};
    use super::super::message::LocalIdentity;
    use super::*;

    fn node(byte: u8) -> NodeId {
        LocalIdentity::from_secret_bytes([byte; 32]).expect("valid key").node_id()
    }

    fn msg(t: u16, i: u32) -> RawMessage {
        RawMessage::new(t, &i.to_be_bytes()).expect("small message")
    }

    fn quiet() -> ConnectionConfig {
        ConnectionConfig { outbound_queue: 8, inbound_queue: 8, rate_limit: None, keepalive: None }
    }

    /// One actor-driven connection and the raw other end of its in-memory link (the fault
    /// injector given back is the actor's: it breaks what the actor reads).
    fn actor_and_raw(
        config: &ConnectionConfig,
        hooks: Arc<dyn PingHooks>,
        link_capacity: usize,
    ) -> (Connection, (MemoryReader, MemoryWriter, MemoryFault)) {
        let ((r, w, actor_fault), (raw_r, raw_w, _)) = memory_pair(link_capacity);
        (Connection::spawn(r, w, node(2), None, config, hooks), (raw_r, raw_w, actor_fault))
    }

    #[tokio::test]
    async fn messages_flow_both_ways_in_order() {
        let ((ar, aw, _), (br, bw, _)) = memory_pair(4);
        let mut a = Connection::spawn(ar, aw, node(2), None, &quiet(), Arc::new(Bolt1Pings::default()));
        let mut b = Connection::spawn(br, bw, node(1), None, &quiet(), Arc::new(Bolt1Pings::default()));
        let sender = {
            let h = a.handle.clone();
            tokio::spawn(async move {
                for i in 0..200 {
                    h.send(msg(42081, i)).await.expect("send");
                }
            })
        };
        for i in 0..200 {
            assert_eq!(b.inbound.recv().await, Some(msg(42081, i)));
        }
        sender.await.expect("sender");
        b.handle.send(msg(42083, 7)).await.expect("send back");
        assert_eq!(a.inbound.recv().await, Some(msg(42083, 7)));
    }

    #[tokio::test]
    async fn graceful_disconnect_sends_queued_messages_first() {
        let ((ar, aw, _), (br, bw, _)) = memory_pair(64);
        let a = Connection::spawn(ar, aw, node(2), None, &quiet(), Arc::new(PassThrough));
        let mut b = Connection::spawn(br, bw, node(1), None, &quiet(), Arc::new(PassThrough));
        for i in 0..5 {
            a.handle.send(msg(42081, i)).await.expect("send");
        }
        assert_eq!(a.handle.disconnect().await, DisconnectReason::LocalRequest);
        for i in 0..5 {
            assert_eq!(b.inbound.recv().await, Some(msg(42081, i)));
        }
        assert_eq!(b.inbound.recv().await, None);
        assert_eq!(b.handle.closed().await, DisconnectReason::RemoteClosed);
        // Sending on a closed connection reports why it closed.
        match a.handle.send(msg(1, 0)).await {
            Err(TransportError::ConnectionClosed(DisconnectReason::LocalRequest)) => {}
            other => panic!("expected closed, got {other:?}"),
        }
        assert_eq!(a.handle.try_send(msg(1, 0)), Err(TrySendError::Closed(DisconnectReason::LocalRequest)));
    }

    #[tokio::test]
    async fn try_send_gives_the_message_back_when_the_queue_is_full() {
        let config = ConnectionConfig { outbound_queue: 1, ..quiet() };
        let (c, (mut raw_r, _raw_w, _)) = actor_and_raw(&config, Arc::new(PassThrough), 1);
        assert_eq!(c.handle.try_send(msg(42081, 0)), Ok(()));
        // The writer task has not run yet on this single-threaded runtime: the queue is full.
        assert_eq!(c.handle.try_send(msg(42081, 1)), Err(TrySendError::Full(msg(42081, 1))));
        assert_eq!(raw_r.read_message().await.ok(), Some(msg(42081, 0)));
    }

    #[tokio::test]
    async fn abort_closes_with_local_request() {
        let (c, (mut raw_r, _raw_w, _)) = actor_and_raw(&quiet(), Arc::new(PassThrough), 4);
        c.handle.abort();
        assert_eq!(c.handle.closed().await, DisconnectReason::LocalRequest);
        assert!(c.handle.is_closed());
        assert!(matches!(raw_r.read_message().await, Err(TransportError::RemoteClosed)));
    }

    #[tokio::test]
    async fn transport_errors_become_typed_reasons() {
        let (mut c, (_r, mut raw_w, fault)) = actor_and_raw(&quiet(), Arc::new(PassThrough), 4);
        raw_w.write_message(&msg(42081, 1)).await.expect("write");
        assert!(fault.inject(TransportError::MacFailure).await);
        assert_eq!(c.handle.closed().await, DisconnectReason::MacFailure);
        // What arrived before the failure is still delivered, then the queue ends.
        assert_eq!(c.inbound.recv().await, Some(msg(42081, 1)));
        assert_eq!(c.inbound.recv().await, None);
    }

    #[tokio::test]
    async fn slow_consumer_pauses_reading_with_bounded_buffering() {
        const TOTAL: u32 = 1000;
        const LINK: usize = 4;
        let config = ConnectionConfig { inbound_queue: 8, ..quiet() };
        let (mut c, (_r, mut raw_w, _)) = actor_and_raw(&config, Arc::new(PassThrough), LINK);
        let written = Arc::new(AtomicUsize::new(0));
        let producer = {
            let written = Arc::clone(&written);
            tokio::spawn(async move {
                for i in 0..TOTAL {
                    raw_w.write_message(&msg(42091, i)).await.expect("write");
                    written.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        // Wait (bounded) until the reader reports it has paused on the full inbound queue.
        tokio::time::timeout(Duration::from_secs(10), async {
            while !c.handle.inbound_paused() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("reader pauses when the inbound queue is full");
        // Give the producer every chance to run: it must stay blocked.
        for _ in 0..1000 {
            tokio::task::yield_now().await;
        }
        let buffered = written.load(Ordering::SeqCst);
        // inbound queue + message held by the reader + the link's buffer.
        assert!(
            buffered <= config.inbound_queue + 1 + LINK,
            "{buffered} messages accepted from a peer whose consumer is not reading"
        );
        for i in 0..TOTAL {
            assert_eq!(c.inbound.recv().await, Some(msg(42091, i)));
        }
        producer.await.expect("producer");
        assert!(!c.handle.inbound_paused());
    }

    #[tokio::test]
    async fn flood_beyond_rate_limit_disconnects() {
        let config =
            ConnectionConfig { rate_limit: Some(RateLimit { burst: 10, per_second: 1 }), inbound_queue: 64, ..quiet() };
        let (c, (_r, mut raw_w, _)) = actor_and_raw(&config, Arc::new(PassThrough), 64);
        for i in 0..50 {
            if raw_w.write_message(&msg(42081, i)).await.is_err() {
                break;
            }
        }
        assert_eq!(c.handle.closed().await, DisconnectReason::RateLimited { burst: 10, per_second: 1 });
    }

    #[tokio::test]
    async fn dropped_inbound_consumer_closes_connection() {
        let (c, (_r, mut raw_w, _)) = actor_and_raw(&quiet(), Arc::new(PassThrough), 4);
        let Connection { handle, inbound } = c;
        drop(inbound);
        raw_w.write_message(&msg(42081, 0)).await.expect("write");
        assert_eq!(handle.closed().await, DisconnectReason::InboundClosed);
    }

    #[tokio::test]
    async fn pings_are_answered_and_not_delivered() {
        let (mut c, (mut raw_r, mut raw_w, _)) = actor_and_raw(&quiet(), Arc::new(Bolt1Pings::default()), 4);
        raw_w.write_message(&Bolt1Pings::build_ping(5, 2)).await.expect("write ping");
        raw_w.write_message(&msg(42081, 9)).await.expect("write");
        let pong = raw_r.read_message().await.expect("pong");
        assert_eq!(pong.msg_type(), PONG_TYPE);
        assert_eq!(pong.payload().len(), 2 + 5);
        assert_eq!(c.inbound.recv().await, Some(msg(42081, 9)));
    }

    fn fast_keepalive() -> ConnectionConfig {
        ConnectionConfig {
            keepalive: Some(KeepaliveConfig {
                interval: Duration::from_millis(50),
                timeout: Duration::from_millis(200),
            }),
            ..quiet()
        }
    }

    #[tokio::test]
    async fn silent_peer_is_pinged_then_declared_dead() {
        let config = ConnectionConfig { keepalive: fast_keepalive().keepalive, ..quiet() };
        let (c, (mut raw_r, _raw_w, _)) = actor_and_raw(&config, Arc::new(Bolt1Pings::default()), 4);
        let ping = raw_r.read_message().await.expect("ping");
        assert_eq!(ping.msg_type(), PING_TYPE);
        match c.handle.closed().await {
            DisconnectReason::KeepaliveTimeout { idle } => {
                assert!(idle >= Duration::from_millis(200), "idle {idle:?}");
            }
            other => panic!("expected keepalive timeout, got {other}"),
        }
    }

    #[tokio::test]
    async fn peers_answering_pings_stay_connected() {
        let config = fast_keepalive();
        let ((ar, aw, _), (br, bw, _)) = memory_pair(4);
        let a = Connection::spawn(ar, aw, node(2), None, &config, Arc::new(Bolt1Pings::default()));
        let b = Connection::spawn(br, bw, node(1), None, &config, Arc::new(Bolt1Pings::default()));
        // Five keepalive timeouts of silence on the application level.
        let still_open = tokio::time::timeout(Duration::from_secs(1), a.handle.closed()).await;
        assert!(still_open.is_err(), "connection closed: {:?}", still_open.ok());
        assert!(!b.handle.is_closed());
    }
}
