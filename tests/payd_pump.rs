//! Test pump for the LDK engine: moves raw channel messages between two engines in one process,
//! exactly once and in order per direction, with a delivery budget (to stop inside a payment),
//! cuts, and restarts. Shared by the payd tests and the payd benchmark.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lcp::payd::ldk::{LdkConfig, LdkEngine, PeerOutput};
use lightning::bitcoin::secp256k1::PublicKey;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Generous bound for anything the tests wait for.
pub const WAIT: Duration = Duration::from_secs(30);

/// One engine with its output queue and its state directory.
pub struct Node {
    pub engine: Arc<LdkEngine>,
    pub rx: Option<mpsc::UnboundedReceiver<PeerOutput>>,
    pub dir: PathBuf,
    pub secret: [u8; 32],
}

impl Node {
    /// Start a devnet engine in `dir` with `secret`.
    pub fn start(dir: &Path, secret: [u8; 32]) -> Node {
        Self::start_with(LdkConfig::devnet(dir.to_path_buf(), secret))
    }

    /// Start an engine with a full configuration.
    pub fn start_with(config: LdkConfig) -> Node {
        let (tx, rx) = mpsc::unbounded_channel();
        let dir = config.state_dir.clone();
        let secret = config.node_secret;
        let engine = LdkEngine::start(config, tx).expect("engine starts");
        Node { engine, rx: Some(rx), dir, secret }
    }

    /// Simulate a crash and restart from disk: the old engine is dropped without a final write.
    pub fn crash_and_restart(self) -> Node {
        let Node { engine, dir, secret, .. } = self;
        assert_eq!(Arc::strong_count(&engine), 1, "someone still holds the engine that should crash");
        drop(engine);
        Node::start(&dir, secret)
    }

    pub fn id(&self) -> PublicKey {
        self.engine.node_id()
    }

    pub fn take_rx(&mut self) -> mpsc::UnboundedReceiver<PeerOutput> {
        self.rx.take().expect("receiver not in use by a link")
    }
}

/// What the pump saw that a correct run should not produce.
#[derive(Default, Debug)]
pub struct Incidents {
    pub errors: Vec<String>,
    pub disconnects: Vec<String>,
}

/// A running connection between two engines.
pub struct Link {
    pub a: Arc<LdkEngine>,
    pub b: Arc<LdkEngine>,
    pub session: u64,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<(mpsc::UnboundedReceiver<PeerOutput>, mpsc::UnboundedReceiver<PeerOutput>)>>,
    delivered: watch::Receiver<u64>,
    limit: watch::Sender<Option<u64>>,
    pub incidents: Arc<Mutex<Incidents>>,
}

fn deliver(o: PeerOutput, from: &LdkEngine, to: &LdkEngine, incidents: &Mutex<Incidents>) {
    match o {
        PeerOutput::Send { node_id, session_id, raw } => {
            assert_eq!(node_id, to.node_id(), "message addressed to a third node");
            if let Err(e) = to.handle_message(from.node_id(), session_id, &raw) {
                incidents.lock().expect("incidents").errors.push(e.to_string());
            }
        }
        PeerOutput::Disconnect { session_id, reason, .. } => {
            incidents.lock().expect("incidents").disconnects.push(reason);
            to.peer_disconnected(from.node_id(), session_id);
        }
    }
}

impl Link {
    /// Connect `a` (outbound) to `b` (inbound) on a new session and start moving messages.
    pub fn connect(
        a: &Arc<LdkEngine>,
        rx_a: mpsc::UnboundedReceiver<PeerOutput>,
        b: &Arc<LdkEngine>,
        rx_b: mpsc::UnboundedReceiver<PeerOutput>,
        session: u64,
    ) -> Link {
        a.peer_connected(b.node_id(), session, &b.init_message(), false).expect("a accepts b");
        b.peer_connected(a.node_id(), session, &a.init_message(), true).expect("b accepts a");
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let (delivered_tx, delivered) = watch::channel(0u64);
        let (limit, mut limit_rx) = watch::channel::<Option<u64>>(None);
        let incidents = Arc::new(Mutex::new(Incidents::default()));
        let (ea, eb, inc) = (a.clone(), b.clone(), incidents.clone());
        let task = tokio::spawn(async move {
            let (mut rx_a, mut rx_b) = (rx_a, rx_b);
            let mut count = 0u64;
            loop {
                let blocked = matches!(*limit_rx.borrow_and_update(), Some(l) if count >= l);
                if blocked {
                    tokio::select! {
                        biased;
                        _ = &mut stop_rx => break,
                        r = limit_rx.changed() => if r.is_err() { break },
                    }
                    continue;
                }
                tokio::select! {
                    biased;
                    _ = &mut stop_rx => break,
                    r = limit_rx.changed() => if r.is_err() { break },
                    Some(o) = rx_a.recv() => {
                        deliver(o, &ea, &eb, &inc);
                        count += 1;
                        delivered_tx.send_replace(count);
                    }
                    Some(o) = rx_b.recv() => {
                        deliver(o, &eb, &ea, &inc);
                        count += 1;
                        delivered_tx.send_replace(count);
                    }
                }
            }
            (rx_a, rx_b)
        });
        Link { a: a.clone(), b: b.clone(), session, stop: Some(stop_tx), task: Some(task), delivered, limit, incidents }
    }

    /// Messages delivered so far on this link.
    pub fn delivered(&self) -> u64 {
        *self.delivered.borrow()
    }

    /// Deliver at most `n` more messages, then hold the rest.
    pub fn hold_after(&self, n: u64) {
        let now = self.delivered();
        self.limit.send_replace(Some(now + n));
    }

    /// Deliver everything again.
    pub fn release(&self) {
        self.limit.send_replace(None);
    }

    /// Wait until the budget set by `hold_after` is used up.
    pub async fn wait_held(&mut self) {
        let Some(l) = *self.limit.borrow() else {
            return;
        };
        tokio::time::timeout(WAIT, self.delivered.wait_for(|d| *d >= l))
            .await
            .expect("pump reached its budget in time")
            .expect("pump alive");
    }

    async fn stop(&mut self) -> (mpsc::UnboundedReceiver<PeerOutput>, mpsc::UnboundedReceiver<PeerOutput>) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.take().expect("link running").await.expect("pump task did not panic")
    }

    /// Cut the connection: both engines see the session end; every message still queued is
    /// then delivered anyway, as a late message of the dead session (the engines must drop it).
    /// Returns the receivers and how many stale messages were pushed at the engines.
    pub async fn cut(mut self) -> (mpsc::UnboundedReceiver<PeerOutput>, mpsc::UnboundedReceiver<PeerOutput>, usize) {
        let (mut rx_a, mut rx_b) = self.stop().await;
        self.a.peer_disconnected(self.b.node_id(), self.session);
        self.b.peer_disconnected(self.a.node_id(), self.session);
        let mut stale = 0;
        while let Ok(o) = rx_a.try_recv() {
            if matches!(o, PeerOutput::Send { .. }) {
                stale += 1;
            }
            deliver(o, &self.a, &self.b, &self.incidents);
        }
        while let Ok(o) = rx_b.try_recv() {
            if matches!(o, PeerOutput::Send { .. }) {
                stale += 1;
            }
            deliver(o, &self.b, &self.a, &self.incidents);
        }
        (rx_a, rx_b, stale)
    }

    /// Stop the pump without telling the engines (one of them is about to crash). Queued
    /// messages are discarded.
    pub async fn abandon(mut self) -> (mpsc::UnboundedReceiver<PeerOutput>, mpsc::UnboundedReceiver<PeerOutput>) {
        let (mut rx_a, mut rx_b) = self.stop().await;
        while rx_a.try_recv().is_ok() {}
        while rx_b.try_recv().is_ok() {}
        (rx_a, rx_b)
    }

    /// Stop the pump and hand back the receivers untouched (queued messages stay queued), without
    /// telling the engines.
    pub async fn detach(mut self) -> (mpsc::UnboundedReceiver<PeerOutput>, mpsc::UnboundedReceiver<PeerOutput>) {
        self.stop().await
    }

    /// Errors and disconnects seen so far.
    pub fn incident_count(&self) -> (usize, usize) {
        let i = self.incidents.lock().expect("incidents");
        (i.errors.len(), i.disconnects.len())
    }
}

/// Connect two nodes whose receivers are free.
pub fn link(a: &mut Node, b: &mut Node, session: u64) -> Link {
    let (rx_a, rx_b) = (a.take_rx(), b.take_rx());
    Link::connect(&a.engine, rx_a, &b.engine, rx_b, session)
}

/// Connect two nodes that share channels and wait until every channel is usable on both sides
/// (the channel_reestablish round trip is done).
pub async fn link_ready(a: &mut Node, b: &mut Node, session: u64) -> Link {
    let l = link(a, b, session);
    let (ea, eb) = (a.engine.clone(), b.engine.clone());
    wait_until("channels usable after reconnect", || {
        let ca = ea.channels();
        let cb = eb.channels();
        !ca.is_empty() && ca.iter().chain(cb.iter()).all(|c| c.is_usable)
    })
    .await;
    l
}

/// Poll `cond` until it holds or `WAIT` passes (poll-with-timeout, no ordering by sleeps).
pub async fn wait_until<F: FnMut() -> bool>(what: &str, mut cond: F) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Start two engines, connect them and open a devnet channel of `sats` from the first to the
/// second. Returns the nodes (receivers in use by the link) and the link.
pub async fn pair_with_channel(dir_a: &Path, dir_b: &Path, sats: u64) -> (Node, Node, Link) {
    let mut a = Node::start(dir_a, [0x0a; 32]);
    let mut b = Node::start(dir_b, [0x0b; 32]);
    let (rx_a, rx_b) = (a.take_rx(), b.take_rx());
    let link = Link::connect(&a.engine, rx_a, &b.engine, rx_b, 1);
    a.engine.open_channel(b.id(), sats, WAIT).await.expect("channel opens");
    let eb = b.engine.clone();
    wait_until("payee sees the channel usable", || eb.channels().iter().any(|c| c.is_usable)).await;
    (a, b, link)
}
