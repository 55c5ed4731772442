//! Fixtures shared by the peerd transport integration tests.
#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lcp::peerd::transport::{
    Bolt1Pings, Connection, Dialer, DisconnectReason, Listener, ListenerEvent, LocalIdentity, RawMessage,
    TransportConfig,
};

/// Upper bound for anything a test waits for.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn server_identity() -> LocalIdentity {
    LocalIdentity::from_secret_bytes([0x21; 32]).expect("valid key")
}

pub fn client_identity(byte: u8) -> LocalIdentity {
    LocalIdentity::from_secret_bytes([byte; 32]).expect("valid key")
}

pub async fn listen(config: TransportConfig) -> Listener {
    Listener::bind("127.0.0.1:0".parse().expect("addr"), server_identity(), config, Arc::new(Bolt1Pings::default()))
        .await
        .expect("bind loopback")
}

pub async fn next_event(listener: &mut Listener) -> ListenerEvent {
    tokio::time::timeout(WAIT, listener.next_event()).await.expect("listener event in time").expect("listener running")
}

pub async fn next_connection(listener: &mut Listener) -> Connection {
    match next_event(listener).await {
        ListenerEvent::Connected(c) => c,
        ListenerEvent::Failed { addr, reason } => panic!("{addr} failed: {reason}"),
    }
}

pub async fn next_failure(listener: &mut Listener) -> DisconnectReason {
    match next_event(listener).await {
        ListenerEvent::Failed { reason, .. } => reason,
        ListenerEvent::Connected(c) => panic!("unexpected connection from {}", c.handle.remote()),
    }
}

pub async fn closed(conn: &Connection) -> DisconnectReason {
    tokio::time::timeout(WAIT, conn.handle.closed()).await.expect("connection closes in time")
}

/// A well-behaved peer connects, is accepted, and a message goes through both ways.
pub async fn assert_good_peer_served(listener: &mut Listener, byte: u8) {
    let addr: SocketAddr = listener.local_addr();
    let dialer = Dialer::new(client_identity(byte), TransportConfig::default(), Arc::new(Bolt1Pings::default()));
    let mut ours = dialer.dial(addr, server_identity().node_id()).await.expect("good peer completes the handshake");
    let mut theirs = next_connection(listener).await;
    assert_eq!(theirs.handle.remote(), client_identity(byte).node_id());
    let m = RawMessage::new(42081, b"still serving").expect("fits");
    ours.handle.send(m.clone()).await.expect("send");
    let got = tokio::time::timeout(WAIT, theirs.inbound.recv()).await.expect("in time");
    assert_eq!(got, Some(m.clone()));
    theirs.handle.send(m.clone()).await.expect("send back");
    let got = tokio::time::timeout(WAIT, ours.inbound.recv()).await.expect("in time");
    assert_eq!(got, Some(m));
}

/// Log lines written by the code under test, captured for assertions.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Installs a capturing subscriber for the current thread (tests run on a current-thread
    /// runtime, so spawned tasks log here too).
    pub fn install() -> (LogCapture, tracing::subscriber::DefaultGuard) {
        let capture = LogCapture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(capture.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        (capture, guard)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log lock")).into_owned()
    }

    /// True if some line contains every one of `parts`.
    pub fn has_line(&self, parts: &[&str]) -> bool {
        self.text().lines().any(|l| parts.iter().all(|p| l.contains(p)))
    }
}

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
