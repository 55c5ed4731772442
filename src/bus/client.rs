//! The bus client every service and tool uses: requests with replies, events, the readiness
//! handshake and heartbeats, over any [`Transport`].

use super::api::{Body, Ctl, ServiceInfo};
use super::broker::HEARTBEAT_INTERVAL;
use super::envelope::{Corr, Envelope};
use super::transport::{Handler, Transport};
use super::{BusError, ClientKeys, Endpoint, ErrorCode, RemoteError, ServiceId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// Capacity of a service's queue of incoming requests and events.
pub const INCOMING_QUEUE: usize = 4096;
/// How often the handshake is retried until the broker answers.
pub const HELLO_RETRY: Duration = Duration::from_millis(250);

/// A request or event addressed to this service.
#[derive(Debug)]
pub struct Incoming {
    /// Sender, as routed by the broker.
    pub from: ServiceId,
    /// Request id or event.
    pub corr: Corr,
    /// The message.
    pub body: Body,
}

/// A handle on the bus; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

struct Inner {
    id: ServiceId,
    transport: OnceLock<Arc<dyn Transport>>,
    to_service: mpsc::Sender<Incoming>,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Body>>>,
    incoming: Mutex<Option<mpsc::Receiver<Incoming>>>,
    info: Mutex<ServiceInfo>,
    epoch: watch::Sender<u64>,
    stop: CancellationToken,
}

impl Bus {
    /// Connects over ZeroMQ. Must be called inside a tokio runtime.
    pub fn connect_zmq(endpoint: &Endpoint, id: ServiceId, keys: Option<&ClientKeys>) -> Result<Bus, BusError> {
        let id2 = id.clone();
        Self::over(id, |h| super::ZmqTransport::connect(endpoint, &id2, keys, h))
    }

    /// Runs the bus client over the transport `make` builds around the given inbound handler.
    /// Must be called inside a tokio runtime.
    pub fn over(
        id: ServiceId,
        make: impl FnOnce(Handler) -> Result<Arc<dyn Transport>, BusError>,
    ) -> Result<Bus, BusError> {
        let (in_tx, in_rx) = mpsc::channel(INCOMING_QUEUE);
        let info = ServiceInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            started_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            ..Default::default()
        };
        let inner = Arc::new(Inner {
            id,
            transport: OnceLock::new(),
            to_service: in_tx,
            next_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            incoming: Mutex::new(Some(in_rx)),
            info: Mutex::new(info),
            epoch: watch::channel(0).0,
            stop: CancellationToken::new(),
        });
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        let handler: Handler = Arc::new(move |from, frame| {
            if let Some(inner) = weak.upgrade() {
                on_frame(&Bus { inner }, from, frame);
            }
        });
        let transport = make(handler)?;
        let _ = inner.transport.set(transport);
        let bus = Bus { inner };
        tokio::spawn(heartbeat(bus.clone()));
        Ok(bus)
    }

    fn send(&self, to: &ServiceId, frame: Vec<u8>) -> Result<(), BusError> {
        match self.inner.transport.get() {
            Some(t) => t.send(to, frame),
            None => Err(BusError::Closed),
        }
    }

    /// This participant's id.
    pub fn id(&self) -> &ServiceId {
        &self.inner.id
    }

    /// Sets what this service reports in `GetInfo` and its heartbeats (version and pid are kept).
    pub fn set_info(&self, node_id: Option<String>, details: Vec<(String, String)>) {
        let info = {
            let mut i = self.inner.info.lock().unwrap_or_else(PoisonError::into_inner);
            i.node_id = node_id;
            i.details = details;
            i.clone()
        };
        // Tell the broker now rather than at the next heartbeat.
        if let Err(e) = self.send_event(&ServiceId::Broker, Body::Ctl(Ctl::Hello(info))) {
            tracing::debug!(target: "bus", "could not update the registration: {e}");
        }
    }

    fn info(&self) -> ServiceInfo {
        self.inner.info.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Waits until the broker has answered the Hello handshake (retried every
    /// [`HELLO_RETRY`] until then). Returns the broker's epoch.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<u64, BusError> {
        let mut rx = self.inner.epoch.subscribe();
        let res = tokio::time::timeout(timeout, rx.wait_for(|e| *e != 0)).await.map(|r| r.map(|e| *e));
        match res {
            Ok(Ok(e)) => Ok(e),
            Ok(Err(_)) => Err(BusError::Closed),
            Err(_) => Err(BusError::NotReady(timeout.as_millis())),
        }
    }

    /// The broker epoch last seen (0 before the first Welcome).
    pub fn broker_epoch(&self) -> u64 {
        *self.inner.epoch.borrow()
    }

    /// Watches the broker epoch: it changes from 0 at the first Welcome, and again whenever this
    /// client registers with a restarted broker. Messages that were on the bus while its host
    /// restarted may be lost, so a service whose peers need exactly-once delivery (payd's channel
    /// sessions) starts those over when it changes.
    pub fn watch_epoch(&self) -> watch::Receiver<u64> {
        self.inner.epoch.subscribe()
    }

    /// The queue of requests and events for this service. Can be taken once; requests arriving
    /// while nobody holds it are answered `unimplemented`.
    pub fn take_incoming(&self) -> Option<mpsc::Receiver<Incoming>> {
        self.inner.incoming.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// Gives back a queue taken with [`Bus::take_incoming`], so that it can be taken again.
    pub fn put_incoming(&self, rx: mpsc::Receiver<Incoming>) {
        *self.inner.incoming.lock().unwrap_or_else(PoisonError::into_inner) = Some(rx);
    }

    /// Sends a request and waits for its reply. An error reply becomes [`BusError::Remote`].
    pub async fn request(&self, to: &ServiceId, body: Body, timeout: Duration) -> Result<Body, BusError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.inner.pending.lock().unwrap_or_else(PoisonError::into_inner).insert(id, tx);
        let frame = Envelope { corr: Corr::Request(id), body }.encode();
        let sent = frame.and_then(|f| self.send(to, f));
        if let Err(e) = sent {
            self.forget(id);
            return Err(e);
        }
        let out = tokio::select! {
            r = tokio::time::timeout(timeout, rx) => r.map(|r| r.ok()),
            _ = self.inner.stop.cancelled() => Ok(None),
        };
        match out {
            Ok(Some(Body::Error(e))) => Err(BusError::Remote(e)),
            Ok(Some(b)) => Ok(b),
            Ok(None) => Err(BusError::Closed),
            Err(_) => {
                self.forget(id);
                Err(BusError::Timeout { to: to.to_string(), ms: timeout.as_millis() })
            }
        }
    }

    fn forget(&self, id: u64) {
        self.inner.pending.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
    }

    /// Sends a one-way message.
    pub fn send_event(&self, to: &ServiceId, body: Body) -> Result<(), BusError> {
        self.send_event_ref(to, &body)
    }

    /// Sends a one-way message from a borrowed body (for retries without copying).
    pub fn send_event_ref(&self, to: &ServiceId, body: &Body) -> Result<(), BusError> {
        let f = Envelope::encode_ref(Corr::Event, body)?;
        self.send(to, f)
    }

    /// Answers request `id` from `to`.
    pub fn reply(&self, to: &ServiceId, id: u64, body: Body) -> Result<(), BusError> {
        let f = Envelope { corr: Corr::Reply(id), body }.encode()?;
        self.send(to, f)
    }

    /// Answers a request with an error.
    pub fn reply_err(&self, to: &ServiceId, id: u64, err: RemoteError) -> Result<(), BusError> {
        self.reply(to, id, Body::Error(err))
    }

    /// Says goodbye to the broker and stops. Pending requests fail with [`BusError::Closed`].
    pub fn close(&self) {
        if self.inner.stop.is_cancelled() {
            return;
        }
        if let Ok(f) = (Envelope { corr: Corr::Event, body: Body::Ctl(Ctl::Goodbye) }).encode() {
            let _ = self.send(&ServiceId::Broker, f);
        }
        self.inner.stop.cancel();
        if let Some(t) = self.inner.transport.get() {
            t.close();
        }
        self.inner.pending.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

async fn heartbeat(bus: Bus) {
    let inner = &bus.inner;
    loop {
        let hello = Body::Ctl(Ctl::Hello(bus.info()));
        let waited = if *inner.epoch.borrow() == 0 { HELLO_RETRY } else { HEARTBEAT_INTERVAL };
        match bus.request(&ServiceId::Broker, hello, waited).await {
            Ok(Body::Ctl(Ctl::Welcome { epoch })) => {
                let old = inner.epoch.send_replace(epoch);
                if old == 0 {
                    tracing::debug!(target: "bus", id = %inner.id, "joined the bus");
                } else if old != epoch {
                    tracing::info!(target: "bus", id = %inner.id, "the bus broker restarted; registered again");
                }
                tokio::select! {
                    _ = tokio::time::sleep(HEARTBEAT_INTERVAL) => {}
                    _ = inner.stop.cancelled() => return,
                }
            }
            Ok(other) => tracing::warn!(target: "bus", "unexpected answer to Hello: {other:?}"),
            Err(BusError::Closed) => return,
            Err(BusError::Timeout { .. }) => {} // retry at once: the wait was the interval
            Err(e) => {
                tracing::debug!(target: "bus", "hello failed: {e}");
                tokio::select! {
                    _ = tokio::time::sleep(HELLO_RETRY) => {}
                    _ = inner.stop.cancelled() => return,
                }
            }
        }
        if inner.stop.is_cancelled() {
            return;
        }
    }
}

/// Handles one received frame, on the transport's thread: replies wake their waiters, `GetInfo`
/// and `Echo` are answered here, everything else goes to the service's queue.
fn on_frame(bus: &Bus, from: ServiceId, frame: Vec<u8>) {
    let inner = &bus.inner;
    let env = match Envelope::decode(&frame) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(target: "bus", %from, "undecodable bus frame: {e}");
            if let Some(r) = super::broker::error_reply(&frame, ErrorCode::InvalidArgument, &e.to_string()) {
                let _ = bus.send(&from, r);
            }
            return;
        }
    };
    match env.corr {
        Corr::Reply(id) => {
            let waiter = inner.pending.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
            match waiter {
                Some(w) => {
                    let _ = w.send(env.body);
                }
                None => tracing::debug!(target: "bus", %from, id, "late or unknown reply dropped"),
            }
        }
        Corr::Request(id) => match env.body {
            Body::Ctl(Ctl::GetInfo) => {
                let _ = bus.reply(&from, id, Body::Ctl(Ctl::Info(bus.info())));
            }
            Body::Ctl(Ctl::Echo(b)) => {
                let _ = bus.reply(&from, id, Body::Ctl(Ctl::Echo(b)));
            }
            body => {
                if let Err(why) = to_service(inner, Incoming { from: from.clone(), corr: env.corr, body }) {
                    let code = if why == "full" { ErrorCode::ResourceExhausted } else { ErrorCode::Unimplemented };
                    let e = RemoteError::new(code, format!("{}: request queue {why}", inner.id));
                    let _ = bus.reply_err(&from, id, e);
                }
            }
        },
        Corr::Event => {
            if let Err(why) = to_service(inner, Incoming { from, corr: env.corr, body: env.body }) {
                tracing::warn!(target: "bus", "event dropped: {} queue {why}", inner.id);
            }
        }
    }
}

/// Queues a message for the service. On the transport's own thread (outside any runtime) a full
/// queue blocks, which pushes back on the sender through ZeroMQ's high-water marks; inside a
/// runtime (the in-memory transport) a full queue is an error.
fn to_service(inner: &Inner, msg: Incoming) -> Result<(), &'static str> {
    match inner.to_service.try_send(msg) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Closed(_)) => Err("closed: the service takes no messages"),
        Err(mpsc::error::TrySendError::Full(msg)) => {
            if tokio::runtime::Handle::try_current().is_ok() {
                return Err("full");
            }
            inner.to_service.blocking_send(msg).map_err(|_| "closed: the service takes no messages")
        }
    }
}
