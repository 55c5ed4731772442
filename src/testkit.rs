//! Test harness shared by the test suites and benchmarks: whole nodes in-process (every service a
//! thread) or as real processes started from the built binaries (random ports, temp dirs, one log
//! file per daemon, killed on drop), and poll-with-timeout helpers instead of sleeps.

use crate::bus::api::{Body, Ctl, ServiceStatus};
use crate::bus::{Bus, Endpoint, ServiceId};
use crate::datadir::Datadir;
use crate::node::{AllConfig, AllInOne};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Default patience of the helpers below.
pub const PATIENCE: Duration = Duration::from_secs(20);
/// Interval between two polls.
pub const POLL: Duration = Duration::from_millis(20);

/// Polls `cond` until it holds or `timeout` passes; the error names `what`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(POLL);
    }
}

/// Async version of [`wait_until`]: `cond` returns `Some(value)` when done.
pub async fn poll_until<T, F, Fut>(timeout: Duration, what: &str, mut cond: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The registered services of a node, as its broker lists them.
pub async fn services(bus: &Bus) -> anyhow::Result<Vec<ServiceStatus>> {
    match bus.request(&ServiceId::Broker, Body::Ctl(Ctl::ListServices), Duration::from_secs(5)).await? {
        Body::Ctl(Ctl::Services(s)) => Ok(s),
        other => anyhow::bail!("unexpected answer: {other:?}"),
    }
}

/// Waits until the services whose ids are in `ids` are all registered; returns the list.
pub async fn wait_services(bus: &Bus, ids: &[ServiceId]) -> anyhow::Result<Vec<ServiceStatus>> {
    poll_until(PATIENCE, &format!("services {ids:?} on the bus"), || async {
        let s = services(bus).await.ok()?;
        ids.iter().all(|id| s.iter().any(|x| &x.id == id)).then_some(s)
    })
    .await
}

/// peerd's node id and listen address (`host:port`), once peerd has registered on this bus.
pub async fn peerd_address(bus: &Bus) -> anyhow::Result<(String, String)> {
    poll_until(PATIENCE, "peerd registered with its listen address", || async {
        let p = services(bus).await.ok()?.into_iter().find(|s| s.id == ServiceId::Peerd)?;
        let listen = p.info.details.iter().find(|(k, _)| k == "listen")?.1.clone();
        Some((p.info.node_id?, listen))
    })
    .await
}

/// Waits until `bus`'s lcpd holds the LCP manifest of the peer `node_id` with an offer of `model`;
/// returns that peer's row.
pub async fn wait_offer(bus: &Bus, node_id: &str, model: &str) -> anyhow::Result<crate::bus::api::lcpd::LcpPeerRow> {
    use crate::bus::api::LcpdApi;
    poll_until(PATIENCE, &format!("{node_id}'s manifest offering {model}"), || async {
        match bus.request(&ServiceId::Lcpd, Body::Lcpd(LcpdApi::ListLcpPeers), Duration::from_secs(5)).await {
            Ok(Body::Lcpd(LcpdApi::LcpPeers(peers))) => peers
                .into_iter()
                .find(|p| p.node_id == node_id && p.manifest.tasks.iter().any(|t| t.model.as_deref() == Some(model))),
            _ => None,
        }
    })
    .await
}

/// Connects `bus`'s peerd to the peer `node_id` at `addr` and opens a devnet channel of `sats` to
/// it, asking again until the peer's connection is ready for channel messages.
pub async fn connect_with_channel(
    bus: &Bus,
    node_id: &str,
    addr: String,
    persistent: bool,
    sats: u64,
) -> anyhow::Result<crate::bus::api::payd::ChannelRow> {
    use crate::bus::api::payd::PaydApi;
    use crate::bus::api::PeerdApi;
    let wait = Duration::from_secs(30);
    let connect = PeerdApi::Connect { node_id: node_id.to_string(), addr, persistent };
    match bus.request(&ServiceId::Peerd, Body::Peerd(connect), wait).await? {
        Body::Peerd(PeerdApi::Connected(_)) => {}
        other => anyhow::bail!("connect to {node_id}: {other:?}"),
    }
    poll_until(PATIENCE, "channel open", || async {
        let open = PaydApi::OpenChannel { node_id: node_id.to_string(), sats };
        match bus.request(&ServiceId::Payd, Body::Payd(open), wait).await {
            Ok(Body::Payd(PaydApi::Channel(c))) => Some(c),
            _ => None,
        }
    })
    .await
}

/// Connects a test client to a node's remote bus endpoint with the node's client key.
pub async fn client(datadir: &Path, endpoint: &Endpoint) -> anyhow::Result<Bus> {
    let keys = crate::bus::keys::load_client(&datadir.join("bus").join("client.key"))?;
    let id = ServiceId::Client(format!("test-{:08x}", rand::random::<u32>()));
    let bus = Bus::connect_zmq(endpoint, id, Some(&keys))?;
    bus.wait_ready(PATIENCE).await?;
    Ok(bus)
}

/// A bare ZeroMQ DEALER (no bus client, no retry) named `client/NAME` that sends a `Hello` to the
/// broker at `endpoint`, with CURVE `keys` or none, and reports whether anything came back within
/// three seconds: how tests show that a broker refuses clients without its key.
pub fn raw_client_gets_answer(
    endpoint: &Endpoint,
    name: &str,
    keys: Option<&crate::bus::ClientKeys>,
) -> anyhow::Result<bool> {
    let ctx = zmq::Context::new();
    let s = ctx.socket(zmq::DEALER)?;
    s.set_identity(&ServiceId::Client(name.to_string()).to_identity())?;
    s.set_linger(0)?;
    if let Some(k) = keys {
        s.set_curve_serverkey(&k.server_public)?;
        s.set_curve_publickey(&k.public)?;
        s.set_curve_secretkey(&k.secret)?;
    }
    s.connect(&endpoint.to_string())?;
    let hello =
        crate::bus::Envelope { corr: crate::bus::Corr::Request(1), body: Body::Ctl(Ctl::Hello(Default::default())) }
            .encode()?;
    // DONTWAIT: an unauthenticated pipe never becomes writable; that also counts as refused.
    let _ = s.send_multipart([ServiceId::Broker.to_identity(), hello], zmq::DONTWAIT);
    let mut items = [s.as_poll_item(zmq::POLLIN)];
    zmq::poll(&mut items, 3000)?;
    Ok(items[0].is_readable())
}

/// A whole node in this process, in a temporary data directory.
pub struct InProcessNode {
    /// The running node.
    pub node: AllInOne,
    /// Its data directory.
    pub dir: tempfile::TempDir,
}

impl InProcessNode {
    /// Starts a node with default settings (devnet, bus over a unix socket in its data dir).
    pub fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let cfg = crate::demo::node_config(dir.path())?;
        Self::start_with(dir, cfg)
    }

    /// Starts a node with a given config (whose datadir should be inside `dir`).
    pub fn start_with(dir: tempfile::TempDir, cfg: AllConfig) -> anyhow::Result<Self> {
        Ok(Self { node: AllInOne::start(cfg)?, dir })
    }

    /// A client on the node's remote endpoint.
    pub async fn client(&self) -> anyhow::Result<Bus> {
        let ep = self.node.remote_endpoint().ok_or_else(|| anyhow::anyhow!("node has no remote bus endpoint"))?;
        client(self.dir.path(), ep).await
    }
}

/// Two whole nodes in this process: a requester with default settings, connected over peerd to
/// `provider`, with a devnet channel from the requester to it.
pub struct NodePair {
    /// The requester (payer).
    pub requester: InProcessNode,
    /// The provider (payee).
    pub provider: InProcessNode,
    /// A client on the requester's bus.
    pub rc: Bus,
    /// A client on the provider's bus.
    pub pc: Bus,
    /// The provider's node id (hex).
    pub provider_id: String,
    /// The channel as the requester's payd opened it.
    pub channel: crate::bus::api::payd::ChannelRow,
}

impl NodePair {
    /// Starts the requester, waits for payd and lcpd on both nodes, connects the requester to
    /// `provider` and opens a channel of `sats`.
    pub async fn start(provider: InProcessNode, sats: u64) -> anyhow::Result<Self> {
        let requester = InProcessNode::start()?;
        let (rc, pc) = (requester.client().await?, provider.client().await?);
        let (provider_id, listen) = peerd_address(&pc).await?;
        for bus in [&rc, &pc] {
            wait_services(bus, &[ServiceId::Payd, ServiceId::Lcpd]).await?;
        }
        let channel = connect_with_channel(&rc, &provider_id, listen, false, sats).await?;
        Ok(Self { requester, provider, rc, pc, provider_id, channel })
    }
}

/// Where the built binaries are (next to the test executable's `deps` directory).
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(name)
}

/// One daemon process of a [`ProcessNode`].
pub struct Daemon {
    /// The child process.
    pub child: Child,
    /// Its log file.
    pub log: PathBuf,
}

/// A node as real processes: `lcpd` hosting the bus on `tcp://127.0.0.1:<random>` with CURVE,
/// and `peerd`, `payd`, `jobd` joined to it. Every daemon logs to `DATADIR/logs/NAME.log`.
/// Everything still running is killed on drop.
pub struct ProcessNode {
    /// The data directory shared by the daemons.
    pub dir: tempfile::TempDir,
    /// The bus endpoint as bound by lcpd.
    pub endpoint: Endpoint,
    /// Running daemons by name (`lcpd`, `peerd`, `payd`, `jobd/NAME`).
    pub daemons: BTreeMap<String, Daemon>,
}

impl ProcessNode {
    /// Starts lcpd (the broker host), waits for its bus endpoint, then the other daemons.
    pub fn start(jobd_workers: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_config(None, jobd_workers)
    }

    /// Like [`ProcessNode::start`], with `DATADIR/lcp.toml` written first when `config` is given.
    pub fn start_with_config(config: Option<&str>, jobd_workers: &[&str]) -> anyhow::Result<Self> {
        let mut node = Self::empty()?;
        if let Some(c) = config {
            std::fs::write(node.dir.path().join(crate::config::DEFAULT_CONFIG_NAME), c)?;
        }
        node.spawn("lcpd", "lcpd", &["--bus", "tcp://127.0.0.1:0"])?;
        let dir = node.dir.path().to_path_buf();
        node.wait_endpoint("lcpd", &dir)?;
        for svc in ["peerd", "payd"] {
            node.start_daemon(svc)?;
        }
        for w in jobd_workers {
            node.start_worker(w)?;
        }
        Ok(node)
    }

    /// A node with no daemon yet: a fresh data directory with its `logs/`.
    pub fn empty() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("logs"))?;
        Ok(Self { endpoint: Endpoint::Inproc("unset".into()), dir, daemons: BTreeMap::new() })
    }

    /// The whole node as one `lcpnode` process, started with `--datadir` and `args` and with `env`
    /// added to its environment; returns once its bus is up.
    pub fn lcpnode(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut node = Self::empty()?;
        let dir = node.dir.path().to_path_buf();
        let dd = dir.to_str().ok_or_else(|| anyhow::anyhow!("datadir is not UTF-8"))?;
        node.spawn_env("lcpnode", "lcpnode", &[&["--datadir", dd][..], args].concat(), env)?;
        node.wait_endpoint("lcpnode", &dir)?;
        Ok(node)
    }

    /// Waits until the daemon `name`, which hosts the bus, has written its endpoint into
    /// `datadir`; this node's clients use that endpoint from then on.
    pub fn wait_endpoint(&mut self, name: &str, datadir: &Path) -> anyhow::Result<()> {
        let dd = Datadir::open(datadir)?;
        let mut ep = None;
        wait_until(PATIENCE, &format!("{name} to write bus.endpoint"), || {
            ep = dd.read_bus_endpoint();
            ep.is_some()
        })
        .map_err(|e| self.with_log(name, e))?;
        self.endpoint = ep.ok_or_else(|| anyhow::anyhow!("no endpoint"))?;
        Ok(())
    }

    fn with_log(&self, name: &str, e: anyhow::Error) -> anyhow::Error {
        let log = self.daemons.get(name).map(|d| std::fs::read_to_string(&d.log).unwrap_or_default());
        anyhow::anyhow!("{e}; {name} log:\n{}", log.unwrap_or_default())
    }

    /// Starts (or restarts) `peerd`, `payd` or `lcpd` joined to this node's bus.
    pub fn start_daemon(&mut self, svc: &str) -> anyhow::Result<()> {
        let ep = self.endpoint.to_string();
        match svc {
            // lcpd re-binds the port it had.
            "lcpd" => self.spawn("lcpd", "lcpd", &["--bus", &ep]),
            "peerd" => self.spawn(svc, svc, &["--bus", &ep, "--listen", "127.0.0.1:0"]),
            _ => self.spawn(svc, svc, &["--bus", &ep]),
        }
    }

    /// Starts a jobd worker with this name.
    pub fn start_worker(&mut self, name: &str) -> anyhow::Result<()> {
        let ep = self.endpoint.to_string();
        self.spawn(&format!("jobd/{name}"), "jobd", &["--bus", &ep, "--worker-name", name])
    }

    /// Spawns a binary with this node's data directory and extra arguments.
    pub fn spawn(&mut self, name: &str, bin: &str, args: &[&str]) -> anyhow::Result<()> {
        let dd = self.dir.path().to_str().ok_or_else(|| anyhow::anyhow!("datadir is not UTF-8"))?.to_string();
        let mut all = vec!["--datadir", dd.as_str()];
        all.extend_from_slice(args);
        self.spawn_raw(name, bin, &all)
    }

    /// Spawns a binary with exactly these arguments (for a daemon with a data directory of its
    /// own, as on another host); its log still goes to this node's `logs/`.
    pub fn spawn_raw(&mut self, name: &str, bin: &str, args: &[&str]) -> anyhow::Result<()> {
        self.spawn_env(name, bin, args, &[])
    }

    /// [`ProcessNode::spawn_raw`] with `env` added to the environment.
    pub fn spawn_env(&mut self, name: &str, bin: &str, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<()> {
        let log = self.dir.path().join("logs").join(format!("{}.log", name.replace('/', "-")));
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
        let child = Command::new(bin_path(bin))
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "debug")
            .env_remove("LCP_CONFIG")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", bin_path(bin).display()))?;
        self.daemons.insert(name.to_string(), Daemon { child, log });
        Ok(())
    }

    /// Kills a daemon with SIGKILL (a crash) and reaps it.
    pub fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let mut d = self.daemons.remove(name).ok_or_else(|| anyhow::anyhow!("no daemon {name}"))?;
        d.child.kill()?;
        d.child.wait()?;
        Ok(())
    }

    /// Sends a signal to a running daemon (for example SIGSTOP and SIGCONT to freeze and thaw it).
    pub fn signal(&self, name: &str, sig: libc::c_int) -> anyhow::Result<()> {
        let d = self.daemons.get(name).ok_or_else(|| anyhow::anyhow!("no daemon {name}"))?;
        // SAFETY: plain kill(2) on our own child's pid.
        if unsafe { libc::kill(d.child.id() as libc::pid_t, sig) } != 0 {
            anyhow::bail!("kill({sig}) failed: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends SIGTERM and waits up to `timeout` for a clean exit; returns the exit status.
    pub fn terminate(&mut self, name: &str, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let mut d = self.daemons.remove(name).ok_or_else(|| anyhow::anyhow!("no daemon {name}"))?;
        let pid = d.child.id() as libc::pid_t;
        // SAFETY: plain kill(2) on our own child's pid.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            anyhow::bail!("kill(SIGTERM) failed: {}", std::io::Error::last_os_error());
        }
        let mut status = None;
        let waited = wait_until(timeout, &format!("{name} to exit after SIGTERM"), || {
            status = d.child.try_wait().ok().flatten();
            status.is_some()
        });
        if let Err(e) = waited {
            let _ = d.child.kill();
            let _ = d.child.wait();
            return Err(e);
        }
        status.ok_or_else(|| anyhow::anyhow!("no status"))
    }

    /// The log of a daemon (empty if none).
    pub fn log(&self, name: &str) -> String {
        let p = self.dir.path().join("logs").join(format!("{}.log", name.replace('/', "-")));
        std::fs::read_to_string(p).unwrap_or_default()
    }

    /// A test client on this node's bus.
    pub async fn client(&self) -> anyhow::Result<Bus> {
        client(self.dir.path(), &self.endpoint).await
    }
}

impl Drop for ProcessNode {
    fn drop(&mut self) {
        for d in self.daemons.values_mut() {
            let _ = d.child.kill();
            let _ = d.child.wait();
        }
    }
}

/// Collects the output of test jobs a client submitted to lcpd (`LcpdApi::RunTestJob`).
pub struct TestJobs {
    bus: Bus,
    rx: tokio::sync::mpsc::Receiver<crate::bus::Incoming>,
    /// Result bytes so far, by job id.
    pub bytes: std::collections::HashMap<[u8; 32], Vec<u8>>,
    /// Terminal item (`End` or `Failed`), by job id.
    pub done: std::collections::HashMap<[u8; 32], crate::bus::api::jobd::OutputItem>,
}

impl TestJobs {
    /// Takes the client's incoming queue.
    pub fn new(bus: &Bus) -> anyhow::Result<Self> {
        let rx = bus.take_incoming().ok_or_else(|| anyhow::anyhow!("incoming queue taken"))?;
        Ok(Self { bus: bus.clone(), rx, bytes: Default::default(), done: Default::default() })
    }

    /// Submits a test job; returns its id and whether it was queued.
    pub async fn submit(&self, task_kind: &str, model: &str, input: &[u8]) -> anyhow::Result<([u8; 32], bool)> {
        use crate::bus::api::{lcpd::TestJob, LcpdApi};
        let job = TestJob { task_kind: task_kind.into(), model: model.into(), input: input.to_vec() };
        match self.bus.request(&ServiceId::Lcpd, Body::Lcpd(LcpdApi::RunTestJob(job)), Duration::from_secs(10)).await? {
            Body::Lcpd(LcpdApi::JobAccepted { job_id, queued }) => Ok((job_id, queued)),
            other => anyhow::bail!("unexpected answer {other:?}"),
        }
    }

    /// Receives output until every job in `ids` has ended or `timeout` passes.
    pub async fn wait(&mut self, ids: &[[u8; 32]], timeout: Duration) -> anyhow::Result<()> {
        use crate::bus::api::{jobd::OutputItem, LcpdApi};
        let deadline = tokio::time::Instant::now() + timeout;
        while !ids.iter().all(|id| self.done.contains_key(id)) {
            let m = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .map_err(|_| anyhow::anyhow!("timed out; {} of {} jobs ended", self.done.len(), ids.len()))?
                .ok_or_else(|| anyhow::anyhow!("bus closed"))?;
            if let Body::Lcpd(LcpdApi::JobOutput { job_id, item }) = m.body {
                match item {
                    OutputItem::Chunk(b) => self.bytes.entry(job_id).or_default().extend_from_slice(&b),
                    OutputItem::Begin { .. } => {}
                    end => {
                        self.done.insert(job_id, end);
                    }
                }
            }
        }
        Ok(())
    }
}

/// peerd alone on a bus, with test clients registered as `lcpd` and `payd` that see everything
/// peerd routes to those services and can send as them: the fixture for peer-level tests.
pub struct PeerdNode {
    /// The node's broker (kept alive; dropped last).
    pub peerd: Option<crate::node::ServiceThread>,
    /// A client standing in for lcpd.
    pub lcpd: Bus,
    /// A client standing in for payd.
    pub payd: Bus,
    /// What peerd sent to "lcpd".
    pub lcpd_rx: tokio::sync::mpsc::Receiver<crate::bus::Incoming>,
    /// What peerd sent to "payd".
    pub payd_rx: tokio::sync::mpsc::Receiver<crate::bus::Incoming>,
    /// An operator client.
    pub client: Bus,
    /// peerd's node id, hex.
    pub node_id: String,
    /// Where peerd listens.
    pub listen: String,
    /// The bus endpoint.
    pub endpoint: Endpoint,
    /// peerd's config (to restart it).
    pub config: crate::peerd::PeerdConfig,
    _dir: tempfile::TempDir,
    _broker: crate::bus::ZmqBroker,
}

impl PeerdNode {
    /// Starts a broker, peerd listening on 127.0.0.1:0, and the stand-in clients.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let endpoint = crate::node::unique_inproc();
        let broker =
            crate::bus::ZmqBroker::start(crate::bus::BrokerConfig { inproc: Some(endpoint.clone()), remote: None })?;
        let node = crate::demo::node_config(dir.path())?.node;
        let args = crate::peerd::PeerdArgs { listen: Some("127.0.0.1:0".into()), ..Default::default() };
        let config = crate::peerd::PeerdConfig::resolve(&node, &args, &Default::default(), &Default::default())?;
        let peerd = Self::spawn_peerd(&endpoint, &config)?;
        let join = |id: ServiceId| async {
            let b = Bus::connect_zmq(&endpoint, id, None)?;
            b.wait_ready(PATIENCE).await?;
            Ok::<_, anyhow::Error>(b)
        };
        let (lcpd, payd, client) =
            (join(ServiceId::Lcpd).await?, join(ServiceId::Payd).await?, join(ServiceId::Client("test".into())).await?);
        let (node_id, listen) = peerd_address(&client).await?;
        let lcpd_rx = lcpd.take_incoming().ok_or_else(|| anyhow::anyhow!("queue taken"))?;
        let payd_rx = payd.take_incoming().ok_or_else(|| anyhow::anyhow!("queue taken"))?;
        Ok(Self {
            peerd: Some(peerd),
            lcpd,
            payd,
            lcpd_rx,
            payd_rx,
            client,
            node_id,
            listen,
            endpoint,
            config,
            _dir: dir,
            _broker: broker,
        })
    }

    /// Starts peerd with `config` on the bus at `endpoint`.
    pub fn spawn_peerd(
        endpoint: &Endpoint,
        config: &crate::peerd::PeerdConfig,
    ) -> anyhow::Result<crate::node::ServiceThread> {
        let c = config.clone();
        let f = crate::node::service_fn(move |b, s| async move { Ok(crate::peerd::run(c, b, s).await?) });
        Ok(crate::node::ServiceThread::spawn(
            endpoint.clone(),
            ServiceId::Peerd,
            None,
            tokio_util::sync::CancellationToken::new(),
            f,
        )?)
    }

    /// The next peerd event a stand-in received.
    pub async fn next_event(
        rx: &mut tokio::sync::mpsc::Receiver<crate::bus::Incoming>,
    ) -> anyhow::Result<crate::bus::api::PeerdApi> {
        loop {
            let m = tokio::time::timeout(PATIENCE, rx.recv())
                .await
                .map_err(|_| anyhow::anyhow!("no peerd event within {PATIENCE:?}"))?
                .ok_or_else(|| anyhow::anyhow!("bus closed"))?;
            if let Body::Peerd(p) = m.body {
                return Ok(p);
            }
        }
    }
}

/// Task kind of the FIFO gate worker of [`gate_worker_config`] (its model is `gate`).
pub const GATE_TASK: &str = "test.gate.v1";

/// Config of a jobd worker whose jobs wait at a FIFO gate: an exec command that reads a FIFO path
/// (the first line of its input), waits for a line on that FIFO, and prints it, so the test decides
/// when each job may finish. `capacity` jobs at once; both token prices `msat_per_mtok`.
pub fn gate_worker_config(capacity: u32, msat_per_mtok: u64) -> String {
    format!(
        r#"
[jobd]
capacity = {capacity}

[jobd.backend]
kind = "exec"

[[jobd.backend.commands]]
task_kind = "{GATE_TASK}"
models = ["gate"]
argv = ["/bin/sh", "-c", "read -r p; read -r x < \"$p\"; printf '%s' \"$x\""]
content_type = "text/plain"

[jobd.pricing.models.gate]
price = {{ input_msat_per_mtok = {msat_per_mtok}, output_msat_per_mtok = {msat_per_mtok} }}
"#
    )
}

/// Makes a FIFO at `path` (tests gate a job on it: the job blocks reading it until the test
/// writes a line).
pub fn make_fifo(path: &Path) -> anyhow::Result<()> {
    let c = std::ffi::CString::new(path.to_str().ok_or_else(|| anyhow::anyhow!("path is not UTF-8"))?)?;
    // SAFETY: mkfifo with a valid C string.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        anyhow::bail!("mkfifo {}: {}", path.display(), std::io::Error::last_os_error());
    }
    Ok(())
}

/// Opens a FIFO gate: writes `line` to the FIFO whenever a reader has it open, until dropped.
pub struct FifoRelease {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FifoRelease {
    /// Starts writing `line` (a newline is added) to the FIFO at `path`.
    pub fn open(path: PathBuf, line: &str) -> Self {
        use std::os::unix::fs::OpenOptionsExt;
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, line) = (stop.clone(), format!("{line}\n"));
        let thread = std::thread::spawn(move || {
            use std::io::Write;
            // A writer that waits for readers: a non-blocking open fails (ENXIO) while no job reads.
            while !s.load(Ordering::Relaxed) {
                if let Ok(mut f) = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&path) {
                    let _ = f.write_all(line.as_bytes());
                }
                std::thread::sleep(POLL);
            }
        });
        Self { stop, thread: Some(thread) }
    }
}

impl Drop for FifoRelease {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
