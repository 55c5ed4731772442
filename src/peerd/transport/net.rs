//! TCP listener (with a connection limit) and dialer producing running [`Connection`]s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::conn::{Connection, ConnectionConfig, LOG_TARGET};
use super::error::{DisconnectReason, TransportError};
use super::keepalive::PingHooks;
use super::message::{LocalIdentity, NodeId};
use super::noise::{self, NoiseConfig};

/// Settings shared by the listener and the dialer.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Handshake timeout, frame limits, buffer sizes.
    pub noise: NoiseConfig,
    /// Queues, rate limit, keepalive of each connection.
    pub connection: ConnectionConfig,
    /// Inbound connections (handshaking or established) held at once by a listener.
    pub max_inbound_connections: usize,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            noise: NoiseConfig::default(),
            connection: ConnectionConfig::default(),
            max_inbound_connections: 1024,
        }
    }
}

/// What a [`Listener`] reports.
#[derive(Debug)]
pub enum ListenerEvent {
    /// A peer completed the handshake; its connection is running.
    Connected(Connection),
    /// An inbound socket was closed before or during the handshake.
    Failed {
        /// The remote socket address.
        addr: SocketAddr,
        /// Why (`HandshakeTimeout`, `HandshakeFailed`, `TooManyConnections`, `Io`).
        reason: DisconnectReason,
    },
}

/// Accepts BOLT #8 connections on a TCP socket, at most `max_inbound_connections` at a time
/// (sockets over the limit are closed at once). Dropping the listener stops accepting and
/// abandons handshakes in progress; established connections live on.
#[derive(Debug)]
pub struct Listener {
    local_addr: SocketAddr,
    events: mpsc::Receiver<ListenerEvent>,
    slots: Arc<Semaphore>,
    max: usize,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

impl Listener {
    /// Binds `addr` and starts accepting.
    pub async fn bind(
        addr: SocketAddr,
        identity: LocalIdentity,
        config: TransportConfig,
        hooks: Arc<dyn PingHooks>,
    ) -> Result<Listener, TransportError> {
        let socket = TcpListener::bind(addr).await?;
        let local_addr = socket.local_addr()?;
        let max = config.max_inbound_connections.max(1);
        let slots = Arc::new(Semaphore::new(max));
        let (tx, events) = mpsc::channel(64);
        let cancel = CancellationToken::new();
        let task =
            tokio::spawn(accept_loop(socket, identity, config, hooks, Arc::clone(&slots), max, tx, cancel.clone()));
        tracing::info!(target: LOG_TARGET, addr = %local_addr, max_connections = max, "listening");
        Ok(Listener { local_addr, events, slots, max, cancel, task })
    }

    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The next event; `None` once the listener has stopped.
    pub async fn next_event(&mut self) -> Option<ListenerEvent> {
        self.events.recv().await
    }

    /// Inbound connections currently holding a slot (handshaking or established).
    pub fn active_connections(&self) -> usize {
        self.max.saturating_sub(self.slots.available_permits())
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.task.abort();
    }
}

#[allow(clippy::too_many_arguments)]
async fn accept_loop(
    socket: TcpListener,
    identity: LocalIdentity,
    config: TransportConfig,
    hooks: Arc<dyn PingHooks>,
    slots: Arc<Semaphore>,
    max: usize,
    events: mpsc::Sender<ListenerEvent>,
    cancel: CancellationToken,
) {
    let config = Arc::new(config);
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = socket.accept() => a,
        };
        let (stream, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(target: LOG_TARGET, error = %e, "accept failed");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => continue,
                }
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            drop(stream);
            let reason = DisconnectReason::TooManyConnections { max };
            tracing::warn!(target: LOG_TARGET, addr = %addr, reason = %reason, "inbound connection refused");
            let _ = events.try_send(ListenerEvent::Failed { addr, reason });
            continue;
        };
        tokio::spawn(handshake_inbound(
            stream,
            addr,
            identity.clone(),
            Arc::clone(&config),
            Arc::clone(&hooks),
            permit,
            events.clone(),
            cancel.clone(),
        ));
    }
}

#[allow(clippy::too_many_arguments)]
async fn handshake_inbound(
    stream: TcpStream,
    addr: SocketAddr,
    identity: LocalIdentity,
    config: Arc<TransportConfig>,
    hooks: Arc<dyn PingHooks>,
    permit: OwnedSemaphorePermit,
    events: mpsc::Sender<ListenerEvent>,
    cancel: CancellationToken,
) {
    let result = tokio::select! {
        _ = cancel.cancelled() => return,
        r = noise::accept(stream, &identity, &config.noise) => r,
    };
    let event = match result {
        Ok(est) => {
            tracing::info!(target: LOG_TARGET, peer = %est.remote, addr = %addr, "inbound handshake complete");
            ListenerEvent::Connected(spawn_established(est, &config.connection, hooks, Some(permit)))
        }
        Err(e) => {
            let reason = DisconnectReason::from(e);
            tracing::warn!(target: LOG_TARGET, addr = %addr, reason = %reason, "inbound connection closed during handshake");
            drop(permit);
            ListenerEvent::Failed { addr, reason }
        }
    };
    // If nobody listens for events any more, a new connection is dropped (and so closed).
    let _ = events.send(event).await;
}

fn spawn_established(
    est: noise::Established,
    config: &ConnectionConfig,
    hooks: Arc<dyn PingHooks>,
    permit: Option<OwnedSemaphorePermit>,
) -> Connection {
    Connection::spawn_with_permit(est.reader, est.writer, est.remote, Some(est.addr), config, hooks, permit)
}

/// Opens outbound BOLT #8 connections.
#[derive(Clone)]
pub struct Dialer {
    identity: LocalIdentity,
    config: Arc<TransportConfig>,
    hooks: Arc<dyn PingHooks>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer").field("identity", &self.identity).finish_non_exhaustive()
    }
}

impl Dialer {
    /// A dialer using this node's identity, settings and ping hooks.
    pub fn new(identity: LocalIdentity, config: TransportConfig, hooks: Arc<dyn PingHooks>) -> Self {
        Dialer { identity, config: Arc::new(config), hooks }
    }

    /// Connects to `remote` at `addr` (connect and handshake bounded by the handshake
    /// timeout) and starts the connection actor.
    pub async fn dial(&self, addr: SocketAddr, remote: NodeId) -> Result<Connection, TransportError> {
        match noise::connect(addr, &self.identity, &remote, &self.config.noise).await {
            Ok(est) => {
                tracing::info!(target: LOG_TARGET, peer = %remote, addr = %addr, "outbound handshake complete");
                Ok(spawn_established(est, &self.config.connection, Arc::clone(&self.hooks), None))
            }
            Err(e) => {
                tracing::warn!(target: LOG_TARGET, peer = %remote, addr = %addr, error = %e, "outbound connection failed");
                Err(e)
            }
        }
    }
}
