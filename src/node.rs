//! Assembling services: the all-in-one node (every service a thread, bus over `inproc://`), the
//! single-service daemon wrapper used by the per-service binaries, and the request loop helper.

use crate::bus::{
    api::Body, Bus, BusError, ClientKeys, Endpoint, ErrorCode, Incoming, RemoteError, ServiceId, ZmqBroker,
};
use crate::bus::{BrokerConfig, Corr};
use crate::config::NodeConfig;
use crate::datadir::Datadir;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a service waits for each round of the bus readiness handshake before logging again.
pub const READY_LOG_INTERVAL: Duration = Duration::from_secs(5);
/// How long a service gets to return after shutdown fires.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A boxed service entry point: `run(bus, shutdown)` with its config captured.
pub type ServiceFn =
    Box<dyn FnOnce(Bus, CancellationToken) -> Pin<Box<dyn Future<Output = anyhow::Result<()>>>> + Send>;

/// Builds a [`ServiceFn`] from an async closure-like function.
pub fn service_fn<F, Fut>(f: F) -> ServiceFn
where
    F: FnOnce(Bus, CancellationToken) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + 'static,
{
    Box::new(move |bus, token| Box::pin(f(bus, token)))
}

/// Connects to the bus and completes the readiness handshake, retrying until `shutdown` fires.
pub async fn join_bus(
    endpoint: &Endpoint,
    id: ServiceId,
    keys: Option<&ClientKeys>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Bus>> {
    let bus = Bus::connect_zmq(endpoint, id.clone(), keys)?;
    loop {
        tokio::select! {
            r = bus.wait_ready(READY_LOG_INTERVAL) => match r {
                Ok(_) => return Ok(Some(bus)),
                Err(BusError::NotReady(_)) => {
                    tracing::warn!(target: "node", service = %id, %endpoint, "still waiting for the bus broker");
                }
                Err(e) => return Err(e.into()),
            },
            _ = shutdown.cancelled() => { bus.close(); return Ok(None) }
        }
    }
}

/// Runs one service to completion on the current runtime: join the bus, run, close the bus.
pub async fn run_service(
    endpoint: Endpoint,
    id: ServiceId,
    keys: Option<ClientKeys>,
    shutdown: CancellationToken,
    f: ServiceFn,
) -> anyhow::Result<()> {
    let Some(bus) = join_bus(&endpoint, id.clone(), keys.as_ref(), &shutdown).await? else { return Ok(()) };
    tracing::info!(target: "node", service = %id, "service started");
    let res = f(bus.clone(), shutdown).await;
    bus.close();
    match &res {
        Ok(()) => tracing::info!(target: "node", service = %id, "service stopped"),
        Err(e) => tracing::error!(target: "node", service = %id, "service failed: {e:#}"),
    }
    res
}

/// A service running in its own thread.
pub struct ServiceThread {
    /// The service's id.
    pub id: ServiceId,
    token: CancellationToken,
    join: Option<JoinHandle<anyhow::Result<()>>>,
}

impl ServiceThread {
    /// Starts `f` in a named thread with its own tokio runtime.
    pub fn spawn(
        endpoint: Endpoint,
        id: ServiceId,
        keys: Option<ClientKeys>,
        token: CancellationToken,
        f: ServiceFn,
    ) -> std::io::Result<Self> {
        let (id2, token2) = (id.clone(), token.clone());
        let join = std::thread::Builder::new().name(id.to_string()).spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            rt.block_on(run_service(endpoint, id2, keys, token2, f))
        })?;
        Ok(Self { id, token, join: Some(join) })
    }

    /// Fires shutdown and waits for the thread (bounded by [`SHUTDOWN_GRACE`]).
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> anyhow::Result<()> {
        self.token.cancel();
        let Some(join) = self.join.take() else { return Ok(()) };
        let deadline = std::time::Instant::now() + SHUTDOWN_GRACE;
        while !join.is_finished() {
            if std::time::Instant::now() > deadline {
                anyhow::bail!("{} did not stop within {:?}", self.id, SHUTDOWN_GRACE);
            }
            std::thread::park_timeout(Duration::from_millis(10));
        }
        join.join().map_err(|_| anyhow::anyhow!("{} panicked", self.id))?
    }
}

impl Drop for ServiceThread {
    fn drop(&mut self) {
        if let Err(e) = self.stop_inner() {
            tracing::error!(target: "node", "{e:#}");
        }
    }
}

static INPROC_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh in-process bus endpoint name.
pub fn unique_inproc() -> Endpoint {
    Endpoint::Inproc(format!("lcp-bus-{}-{}", std::process::id(), INPROC_COUNTER.fetch_add(1, Ordering::Relaxed)))
}

/// Starts the broker for a node: inproc for this process, plus the configured remote endpoint
/// with CURVE keys (`--bus-server-key`, else from the data directory). Records the bound remote
/// endpoint in the datadir.
pub fn start_broker(cfg: &NodeConfig, dd: &Datadir) -> anyhow::Result<ZmqBroker> {
    let remote = match &cfg.bus {
        Endpoint::Inproc(_) => None,
        ep => Some((ep.clone(), dd.bus_server_keys(cfg.bus_server_key.as_deref())?)),
    };
    let inproc = match &cfg.bus {
        Endpoint::Inproc(_) => cfg.bus.clone(),
        _ => unique_inproc(),
    };
    let broker = ZmqBroker::start(BrokerConfig { inproc: Some(inproc), remote })?;
    if let Some(ep) = broker.remote_endpoint() {
        dd.write_bus_endpoint(ep)?;
        tracing::info!(target: "node", endpoint = %ep, "bus listening");
    }
    Ok(broker)
}

/// A service's request loop: every request goes to `handle` and its result is the reply; events
/// go to `on_event`. Returns when `shutdown` fires or the bus closes.
pub async fn serve<H, E>(
    bus: &Bus,
    shutdown: &CancellationToken,
    mut handle: H,
    mut on_event: E,
) -> Result<(), BusError>
where
    H: FnMut(&Incoming) -> Result<Body, RemoteError>,
    E: FnMut(Incoming),
{
    let mut rx = bus.take_incoming().ok_or(BusError::Taken)?;
    loop {
        let msg = tokio::select! {
            m = rx.recv() => match m { Some(m) => m, None => return Ok(()) },
            _ = shutdown.cancelled() => return Ok(()),
        };
        match msg.corr {
            Corr::Request(id) => {
                let body = handle(&msg).unwrap_or_else(Body::Error);
                if let Err(e) = bus.reply(&msg.from, id, body) {
                    tracing::warn!(target: "node", to = %msg.from, "reply failed: {e}");
                }
            }
            _ => on_event(msg),
        }
    }
}

/// The answer to a request a service does not implement.
pub fn unimplemented(service: &str, msg: &Incoming) -> RemoteError {
    RemoteError::new(
        ErrorCode::Unimplemented,
        format!("{service} does not implement {}", crate::bus::broker::body_name(&msg.body)),
    )
}

/// Runs one daemon process: logging, data directory, broker (when hosting it), signals, and the
/// service itself. Returns after SIGINT/SIGTERM once the service has stopped.
pub fn run_daemon(cfg: &NodeConfig, id: ServiceId, host_broker: bool, f: ServiceFn) -> anyhow::Result<()> {
    crate::logging::init(&cfg.log_level);
    let dd = cfg.open_datadir()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        spawn_signal_handler(shutdown.clone())?;
        let (_broker, endpoint, keys) = if host_broker {
            let broker = start_broker(cfg, &dd)?;
            let ep =
                broker.inproc_endpoint().cloned().ok_or_else(|| anyhow::anyhow!("broker has no inproc endpoint"))?;
            (Some(broker), ep, None)
        } else {
            let keys = if cfg.bus.is_remote() { Some(crate::bus::keys::load_client(&cfg.bus_key)?) } else { None };
            (None, cfg.bus.clone(), keys)
        };
        // The service future runs on this thread (it need not be Send).
        let mut task = std::pin::pin!(run_service(endpoint, id, keys, shutdown.clone(), f));
        tokio::select! {
            r = &mut task => return r,
            _ = shutdown.cancelled() => {}
        }
        match tokio::time::timeout(SHUTDOWN_GRACE, task).await {
            Ok(r) => r,
            Err(_) => anyhow::bail!("the service did not stop within {SHUTDOWN_GRACE:?} after the signal"),
        }
    })
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn spawn_signal_handler(token: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!(target: "node", "SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!(target: "node", "SIGINT: shutting down"),
        }
        token.cancel();
    });
    Ok(())
}

/// Every service's resolved config, for the all-in-one node.
#[derive(Debug, Clone)]
pub struct AllConfig {
    /// Shared settings.
    pub node: NodeConfig,
    /// peerd.
    pub peerd: crate::peerd::PeerdConfig,
    /// lcpd.
    pub lcpd: crate::lcpd::LcpdConfig,
    /// jobd (one worker in the all-in-one node).
    pub jobd: crate::jobd::JobdConfig,
    /// payd.
    pub payd: crate::payd::PaydConfig,
}

/// The services of a node, in start order.
pub const SERVICES: &[&str] = &["lcpd", "payd", "jobd", "peerd"];

impl AllConfig {
    /// The bus id and entry point of one service by kind name.
    pub fn service(&self, kind: &str) -> Option<(ServiceId, ServiceFn)> {
        Some(match kind {
            "peerd" => {
                let c = self.peerd.clone();
                (ServiceId::Peerd, service_fn(move |b, s| async move { Ok(crate::peerd::run(c, b, s).await?) }))
            }
            "lcpd" => {
                let c = self.lcpd.clone();
                (ServiceId::Lcpd, service_fn(move |b, s| async move { Ok(crate::lcpd::run(c, b, s).await?) }))
            }
            "jobd" => {
                let c = self.jobd.clone();
                (c.service_id(), service_fn(move |b, s| async move { Ok(crate::jobd::run(c, b, s).await?) }))
            }
            "payd" => {
                let c = self.payd.clone();
                (ServiceId::Payd, service_fn(move |b, s| async move { Ok(crate::payd::run(c, b, s).await?) }))
            }
            _ => return None,
        })
    }
}

/// A whole node in one process: the broker plus every service as a thread on `inproc://`.
pub struct AllInOne {
    cfg: AllConfig,
    services: std::collections::BTreeMap<String, ServiceThread>,
    shutdown: CancellationToken,
    inproc: Endpoint,
    // Declared last: the broker outlives the services on drop.
    broker: ZmqBroker,
}

impl AllInOne {
    /// Starts the broker and every service.
    pub fn start(cfg: AllConfig) -> anyhow::Result<Self> {
        let dd = cfg.node.open_datadir()?;
        dd.node_secret()?; // create it once, before services race for it
        let broker = start_broker(&cfg.node, &dd)?;
        let inproc =
            broker.inproc_endpoint().cloned().ok_or_else(|| anyhow::anyhow!("broker has no inproc endpoint"))?;
        let mut node = Self { cfg, services: Default::default(), shutdown: CancellationToken::new(), inproc, broker };
        for kind in SERVICES {
            node.start_service(kind)?;
        }
        Ok(node)
    }

    /// The remote bus endpoint (for `lcp-cli` and workers on other hosts), if any.
    pub fn remote_endpoint(&self) -> Option<&Endpoint> {
        self.broker.remote_endpoint()
    }

    /// The in-process bus endpoint.
    pub fn inproc_endpoint(&self) -> &Endpoint {
        &self.inproc
    }

    /// Fires when the node shuts down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Starts one service (by kind name) if it is not running.
    pub fn start_service(&mut self, kind: &str) -> anyhow::Result<()> {
        if self.services.contains_key(kind) {
            return Ok(());
        }
        let (id, f) = self.cfg.service(kind).ok_or_else(|| anyhow::anyhow!("unknown service {kind:?}"))?;
        let t = ServiceThread::spawn(self.inproc.clone(), id, None, self.shutdown.child_token(), f)?;
        self.services.insert(kind.to_string(), t);
        Ok(())
    }

    /// Starts one more jobd worker thread named `name` (stop it with `stop_service("jobd/NAME")`).
    pub fn start_worker(&mut self, name: &str) -> anyhow::Result<()> {
        let key = format!("jobd/{name}");
        if self.services.contains_key(&key) {
            return Ok(());
        }
        ServiceId::validate_instance(name)?;
        let c = crate::jobd::JobdConfig { worker_name: name.to_string(), ..self.cfg.jobd.clone() };
        let id = c.service_id();
        let f = service_fn(move |b, s| async move { Ok(crate::jobd::run(c, b, s).await?) });
        let t = ServiceThread::spawn(self.inproc.clone(), id, None, self.shutdown.child_token(), f)?;
        self.services.insert(key, t);
        Ok(())
    }

    /// Starts the OpenAI-compatible gateway as a thread of this node (stop it with
    /// `stop_service("gateway")`). Its HTTP address is in its status (`listen`).
    pub fn start_gateway(&mut self, cfg: crate::gateway::GatewayConfig) -> anyhow::Result<()> {
        if self.services.contains_key("gateway") {
            return Ok(());
        }
        let f = service_fn(move |b, s| async move { Ok(crate::gateway::run(cfg, b, s).await?) });
        let t = ServiceThread::spawn(self.inproc.clone(), ServiceId::Gateway, None, self.shutdown.child_token(), f)?;
        self.services.insert("gateway".to_string(), t);
        Ok(())
    }

    /// Stops one service (by kind name, or `jobd/NAME` for an extra worker); the others carry on.
    pub fn stop_service(&mut self, kind: &str) -> anyhow::Result<()> {
        match self.services.remove(kind) {
            Some(t) => t.stop(),
            None => Ok(()),
        }
    }

    /// Stops every service, then the broker.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let mut first_err = None;
        let extra: Vec<String> = self.services.keys().filter(|k| !SERVICES.contains(&k.as_str())).cloned().collect();
        for kind in extra.iter().map(String::as_str).chain(SERVICES.iter().rev().copied()) {
            if let Err(e) = self.stop_service(kind) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// `main` of a daemon: runs `f` and turns an error into one line on stderr and exit code 1.
pub fn daemon_main(name: &str, f: impl FnOnce() -> anyhow::Result<()>) -> std::process::ExitCode {
    match f() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: error: {}", format!("{e:#}").replace('\n', " "));
            std::process::ExitCode::FAILURE
        }
    }
}
