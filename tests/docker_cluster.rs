//! The provider cluster of `docker/cluster/compose.yml` on the Docker engine: lcpd, peerd, payd and
//! three jobd workers in their own containers on a CURVE-authenticated `tcp://` bus, plus a
//! requester node, started with `scripts/docker-cluster.sh` as an operator would.
//!
//! Every test skips (passes, printing why) when `docker info` fails or no compose tool is found.
//! With an engine they need the image: `bash scripts/docker-build.sh` (it makes the local base
//! images too). Each test runs its own compose project (own networks, volumes, random published
//! ports) and takes it down with its volumes when it ends, also when it fails.
//!
//! Crashes are real: the container's init process is killed with SIGKILL from the host, so the
//! restart policy brings the container back, as after an OOM kill (`docker kill` would count as a
//! manual stop and leave it down). Tests that need jobs to be running at a known moment use
//! `tests/docker/gate.yml`: the workers run an exec job that waits on a FIFO the test opens.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a cluster may take to become healthy, a job to finish, a container to come back.
const LONG: Duration = Duration::from_secs(180);
/// One docker command.
const CMD: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(250);
const GATE_TASK: &str = "test.gate.v1";
const GATE_MODEL: &str = "gate";
const CHAT_MODEL: &str = "gpt-5.2";
const PROVIDER_SERVICES: &[&str] = &["lcpd", "peerd", "payd", "jobd-1", "jobd-2", "jobd-3"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn image() -> String {
    std::env::var("LCP_IMAGE").unwrap_or_else(|_| "lcp-local/lcp:dev".into())
}

/// Runs a command to completion within `timeout` (killed after it), with optional stdin.
fn run(program: &str, args: &[&str], envs: &[(String, String)], stdin: Option<&[u8]>, timeout: Duration) -> Output {
    let mut child = spawn(program, args, envs, stdin);
    wait_output(&mut child, timeout).unwrap_or_else(|e| panic!("{program} {args:?}: {e}"))
}

fn spawn(program: &str, args: &[&str], envs: &[(String, String)], stdin: Option<&[u8]>) -> Child {
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    if let Some(input) = stdin {
        let mut w = child.stdin.take().expect("stdin");
        w.write_all(input).expect("write stdin");
    }
    child
}

/// Waits for a child with a deadline, reading its output as it comes (so a full pipe never blocks it).
fn wait_output(child: &mut Child, timeout: Duration) -> Result<Output, String> {
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let o = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let e = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Ok(Output { status, stdout: o.join().unwrap_or_default(), stderr: e.join().unwrap_or_default() })
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_string()
}

fn ok(o: &Output, what: &str) -> String {
    assert!(o.status.success(), "{what} failed ({}): {}\n{}", o.status, text(&o.stdout), text(&o.stderr));
    text(&o.stdout)
}

/// Polls `f` until it returns `Some` or `timeout` passes.
fn poll<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(POLL);
    }
}

/// Why the docker tests cannot run here, if they cannot.
fn skip_reason() -> Option<String> {
    let info = Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output();
    match info {
        Ok(o) if o.status.success() => {}
        Ok(o) => return Some(format!("`docker info` failed: {}", text(&o.stderr))),
        Err(e) => return Some(format!("no docker command: {e}")),
    }
    let compose_v2 = Command::new("docker").args(["compose", "version"]).output().is_ok_and(|o| o.status.success());
    let compose_v1 = Command::new("docker-compose").arg("version").output().is_ok_and(|o| o.status.success());
    if !compose_v1 && !compose_v2 {
        return Some("neither `docker compose` nor `docker-compose` works".into());
    }
    None
}

/// Checks the engine and the image; `None` means skip.
fn engine() -> Option<()> {
    if let Some(why) = skip_reason() {
        println!("SKIPPED: no Docker engine here ({why}); the cluster tests need one");
        return None;
    }
    let img = image();
    let have = Command::new("docker").args(["image", "inspect", &img]).output().is_ok_and(|o| o.status.success());
    assert!(have, "image {img} not found: run `bash scripts/docker-build.sh` first (it also makes the base images)");
    Some(())
}

/// The FIFO the gated workers wait on, in a directory mounted into them at /gate.
struct Gate {
    dir: PathBuf,
    open: Option<Arc<AtomicBool>>,
}

impl Gate {
    fn new(dir: PathBuf) -> Self {
        std::fs::create_dir_all(&dir).expect("gate dir");
        // The workers run as the image's user: they must read the config and open the FIFO.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod gate dir");
        let config = format!(
            r#"
[jobd.backend]
kind = "exec"

[[jobd.backend.commands]]
task_kind = "{GATE_TASK}"
models = ["{GATE_MODEL}"]
argv = ["/bin/sh", "-c", "read -r p; read -r n; read -r x < \"$p\"; printf '%s:open' \"$n\""]
content_type = "text/plain"

[jobd.pricing.models.{GATE_MODEL}]
price = {{ input_msat_per_mtok = 1000000000, output_msat_per_mtok = 1000000000 }}
"#
        );
        let cfg = dir.join("jobd.toml");
        std::fs::write(&cfg, config).expect("gate config");
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).expect("chmod config");
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().expect("utf-8 path")).expect("no NUL");
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0, "mkfifo {}", fifo.display());
        std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o666)).expect("chmod fifo");
        Self { dir, open: None }
    }

    /// A job input for the gated command: the FIFO inside the container and this job's nonce.
    fn input(nonce: &str) -> Vec<u8> {
        format!("/gate/fifo\n{nonce}\n").into_bytes()
    }

    /// What a gated job returns once the gate is open.
    fn result(nonce: &str) -> String {
        format!("{nonce}:open")
    }

    /// Opens the gate: every job waiting on the FIFO, now or later, reads "open".
    fn open(&mut self) {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, path) = (stop.clone(), self.dir.join("fifo"));
        std::thread::spawn(move || {
            // A non-blocking open for writing fails (ENXIO) while no job has the FIFO open. Every
            // job waiting wakes up at this open; what each reads does not matter (several read the
            // FIFO at once, so one gets the line, or parts of it, and the others the end of file):
            // the result is made from the job's own input.
            while !s.load(Ordering::Relaxed) {
                if let Ok(mut f) = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&path) {
                    let _ = f.write_all(b"open\n");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        self.open = Some(stop);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Some(s) = &self.open {
            s.store(true, Ordering::Relaxed);
        }
    }
}

/// One compose project of the cluster; taken down with its volumes on drop.
struct Cluster {
    project: String,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    /// Containers started outside compose (removed on drop).
    extra: Vec<String>,
    gate: Option<Gate>,
}

/// Cluster options.
#[derive(Default)]
struct Opts {
    /// Workers wait on the gate (tests/docker/gate.yml).
    gate: bool,
    /// Publish the bus port on loopback (docker/cluster/bus-port.yml).
    bus_port: bool,
}

impl Cluster {
    /// Starts a cluster with `scripts/docker-cluster.sh up` (keys, compose up, healthy).
    fn up(name: &str, opts: Opts) -> Self {
        let project = format!("lcptest{}{:06x}", name.replace(['_', '-'], ""), rand::random::<u32>() & 0xff_ffff);
        let dir = tempfile::tempdir().expect("tempdir");
        let secrets = dir.path().join("secrets");
        let mut files = Vec::new();
        let gate = opts.gate.then(|| {
            files.push(repo().join("tests/docker/gate.yml"));
            Gate::new(dir.path().join("gate"))
        });
        if opts.bus_port {
            files.push(repo().join("docker/cluster/bus-port.yml"));
        }
        let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        let mut env = vec![
            ("LCP_IMAGE".to_string(), image()),
            ("LCP_CLUSTER_PROJECT".into(), project.clone()),
            ("LCP_CLUSTER_SECRETS".into(), secrets.display().to_string()),
            ("LCP_CLUSTER_FILES".into(), files.join(":")),
            ("LCP_CLUSTER_TIMEOUT".into(), LONG.as_secs().to_string()),
            // Random host ports on loopback: tests run side by side.
            ("LCP_LIGHTNING_PUBLISH".into(), "127.0.0.1:".into()),
            ("LCP_GATEWAY_PUBLISH".into(), "127.0.0.1:".into()),
            ("LCP_BUS_PUBLISH".into(), "127.0.0.1:".into()),
        ];
        if let Some(g) = &gate {
            env.push(("LCP_TEST_GATE_DIR".into(), g.dir.display().to_string()));
        }
        let c = Self { project, dir, env, extra: Vec::new(), gate };
        let o = c.script(&["up"], LONG + CMD);
        ok(&o, "docker-cluster.sh up");
        c
    }

    fn script(&self, args: &[&str], timeout: Duration) -> Output {
        let script = repo().join("scripts/docker-cluster.sh");
        let mut all = vec![script.to_str().expect("utf-8 path")];
        all.extend_from_slice(args);
        run("bash", &all, &self.env, None, timeout)
    }

    fn compose(&self, args: &[&str]) -> Output {
        let mut all = vec!["compose"];
        all.extend_from_slice(args);
        self.script(&all, CMD)
    }

    fn secrets(&self) -> PathBuf {
        self.dir.path().join("secrets")
    }

    /// The container of a compose service.
    fn container(&self, service: &str) -> String {
        let id = ok(&self.compose(&["ps", "-q", service]), "compose ps");
        assert!(!id.is_empty(), "no container for {service}");
        id
    }

    fn inspect(&self, container: &str, format: &str) -> String {
        ok(&run("docker", &["inspect", "-f", format, container], &[], None, CMD), "docker inspect")
    }

    fn health(&self, service: &str) -> String {
        self.inspect(&self.container(service), "{{if .State.Health}}{{.State.Health.Status}}{{end}}")
    }

    fn wait_health(&self, service: &str, want: &str, timeout: Duration) {
        poll(timeout, &format!("{service} {want}"), || (self.health(service) == want).then_some(()));
    }

    /// `lcp-cli ARGS` in a service's container.
    fn cli(&self, service: &str, args: &[&str]) -> Output {
        let c = self.container(service);
        let mut all = vec!["exec", c.as_str(), "lcp-cli"];
        all.extend_from_slice(args);
        run("docker", &all, &[], None, CMD)
    }

    /// `lcp-cli --json ARGS` in a service's container, parsed.
    fn cli_json(&self, service: &str, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = ok(&self.cli(service, &all), &format!("lcp-cli {args:?} in {service}"));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("lcp-cli {args:?}: {e}: {out}"))
    }

    fn node_id(&self, service: &str) -> String {
        let s = self.cli_json(service, &["status"]);
        s["node_id"].as_str().unwrap_or_else(|| panic!("no node id in {s}")).to_string()
    }

    /// The provider's workers and how many jobs each runs.
    fn workers(&self) -> BTreeMap<String, u64> {
        let v = self.cli_json("lcpd", &["worker", "list"]);
        v.as_array()
            .expect("worker list")
            .iter()
            .map(|w| (w["id"].as_str().unwrap_or("").to_string(), w["running"].as_u64().unwrap_or(0)))
            .collect()
    }

    /// Connects the requester to the provider and waits for the provider's manifest to offer
    /// `model`; returns the provider's node id.
    fn connect_requester(&self, model: &str) -> String {
        let provider = self.node_id("lcpd");
        let uri = format!("{provider}@peerd:9735");
        ok(&self.cli("requester", &["peer", "connect", &uri, "--persistent"]), "peer connect");
        poll(LONG, "the provider's manifest at the requester", || {
            let peers = self.cli_json("requester", &["job", "peers"]);
            let p = peers.as_array()?.iter().find(|p| p["node_id"] == provider.as_str())?.clone();
            p["manifest"]["tasks"].as_array()?.iter().any(|t| t["model"] == model).then_some(())
        });
        provider
    }

    /// Opens a devnet channel from the requester to the provider and waits until it is usable,
    /// so the tests know the channel before any payment (and can tell that no other was opened).
    fn open_channel(&self, provider: &str) -> String {
        ok(&self.cli("requester", &["channel", "open", provider, "2000000"]), "channel open");
        poll(LONG, "a usable channel", || {
            let ch = self.cli_json("requester", &["channel", "list"]);
            let c = ch.as_array()?.iter().find(|c| c["counterparty"] == provider && c["is_usable"] == true)?.clone();
            c["channel_id"].as_str().map(str::to_string)
        })
    }

    fn channels(&self) -> Vec<String> {
        let ch = self.cli_json("requester", &["channel", "list"]);
        ch.as_array().expect("channels").iter().filter_map(|c| c["channel_id"].as_str().map(str::to_string)).collect()
    }

    /// Starts a paid gated job at the requester (`lcp-cli job run`, input on stdin).
    fn start_gated_job(&self, provider: &str, nonce: &str) -> Job {
        let c = self.container("requester");
        let args = [
            "exec",
            "-i",
            c.as_str(),
            "lcp-cli",
            "--json",
            "job",
            "run",
            provider,
            "--task-kind",
            GATE_TASK,
            "-m",
            GATE_MODEL,
            "-i",
            "-",
            "--job-timeout",
            "240",
        ];
        Job { nonce: nonce.to_string(), child: spawn("docker", &args, &[], Some(&Gate::input(nonce))) }
    }

    fn gate(&mut self) -> &mut Gate {
        self.gate.as_mut().expect("a gated cluster")
    }

    /// Crashes a service's container: SIGKILL to its init process from the host. Returns the
    /// restart count before the crash.
    fn crash(&self, service: &str) -> u64 {
        let c = self.container(service);
        let restarts: u64 = self.inspect(&c, "{{.RestartCount}}").parse().expect("restart count");
        let pid: i32 = self.inspect(&c, "{{.State.Pid}}").parse().expect("pid");
        assert!(pid > 0, "{service} is not running");
        // SAFETY: kill(2) on a pid the engine reported for this test's own container.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill {service} (pid {pid})");
        restarts
    }

    /// Waits until the engine restarted a crashed service and it is healthy again.
    fn wait_restarted(&self, service: &str, restarts_before: u64) {
        let c = self.container(service);
        poll(LONG, &format!("{service} restarted"), || {
            let n: u64 = self.inspect(&c, "{{.RestartCount}}").parse().ok()?;
            (n > restarts_before).then_some(())
        });
        self.wait_health(service, "healthy", LONG);
    }

    fn logs(&self, service: &str) -> String {
        let o = run("docker", &["logs", &self.container(service)], &[], None, CMD);
        format!("{}{}", text(&o.stdout), text(&o.stderr))
    }

    /// Invoices the provider issued, by payment hash: (state, amount).
    fn invoices(&self) -> BTreeMap<String, (String, u64)> {
        let v = self.cli_json("payd", &["invoice", "list"]);
        v.as_array()
            .expect("invoices")
            .iter()
            .map(|i| {
                let h = i["payment_hash"].as_str().unwrap_or("").to_string();
                (h, (i["state"].as_str().unwrap_or("").to_string(), i["amount_msat"].as_u64().unwrap_or(0)))
            })
            .collect()
    }

    /// Payments the requester made: (payment hash, state) in order.
    fn payments(&self) -> Vec<(String, String)> {
        let v = self.cli_json("requester", &["payment", "list"]);
        v.as_array()
            .expect("payments")
            .iter()
            .map(|p| {
                (p["payment_hash"].as_str().unwrap_or("").to_string(), p["state"].as_str().unwrap_or("").to_string())
            })
            .collect()
    }

    /// Every job ended with its own result, paid once: one succeeded payment at the requester and
    /// one settled invoice at the provider per job, and nothing else paid.
    fn assert_paid_once(&self, done: &[Value]) {
        let hashes: BTreeSet<String> =
            done.iter().map(|d| d["payment_hash"].as_str().expect("payment hash").to_string()).collect();
        assert_eq!(hashes.len(), done.len(), "each job has its own payment: {done:?}");
        let payments = self.payments();
        let paid: Vec<&(String, String)> = payments.iter().filter(|(_, s)| s == "succeeded").collect();
        assert_eq!(paid.len(), done.len(), "requester payments: {payments:?}");
        assert!(paid.iter().all(|(h, _)| hashes.contains(h)), "requester payments: {payments:?}");
        assert!(payments.iter().all(|(_, s)| s != "pending"), "requester payments: {payments:?}");
        let invoices = self.invoices();
        let settled: BTreeSet<&String> = invoices.iter().filter(|(_, (s, _))| s == "settled").map(|(h, _)| h).collect();
        assert_eq!(settled.len(), done.len(), "provider invoices: {invoices:?}");
        assert!(settled.iter().all(|h| hashes.contains(*h)), "provider invoices: {invoices:?}");
    }

    /// Starts a container of the image outside compose (`docker run -d`, removed on drop) with
    /// docker options `opts` and the command `cmd`; returns its name.
    fn start_container(&mut self, suffix: &str, opts: &[&str], cmd: &[&str]) -> String {
        let (name, img) = (format!("{}-{suffix}", self.project), image());
        let mut args = vec!["run", "-d", "--name", name.as_str()];
        args.extend_from_slice(opts);
        args.push(&img);
        args.extend_from_slice(cmd);
        ok(&run("docker", &args, &[], None, CMD), &format!("start {name}"));
        self.extra.push(name.clone());
        name
    }

    fn published(&self, service: &str, port: u16) -> String {
        let out = ok(&run("docker", &["port", &self.container(service), &port.to_string()], &[], None, CMD), "port");
        out.lines().next().unwrap_or_default().to_string()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for s in PROVIDER_SERVICES.iter().chain(&["requester"]) {
                let o = self.compose(&["logs", "--no-color", "--tail", "40", s]);
                eprintln!("---- {s} ----\n{}", text(&o.stdout));
            }
        }
        for c in &self.extra {
            let _ = run("docker", &["rm", "-f", "-v", c], &[], None, CMD);
        }
        let o = self.compose(&["down", "-v", "--remove-orphans", "--timeout", "5"]);
        if !o.status.success() {
            eprintln!("compose down failed: {}", text(&o.stderr));
        }
    }
}

/// A `lcp-cli job run` in flight.
struct Job {
    nonce: String,
    child: Child,
}

impl Job {
    /// Waits for the job's JSON; it must be the gated result for this job, paid with a matching
    /// preimage.
    fn done(mut self) -> Value {
        let o = wait_output(&mut self.child, LONG + CMD).expect("job run");
        let out = ok(&o, &format!("job {}", self.nonce));
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(v["result"], Gate::result(&self.nonce).as_str(), "{v}");
        assert_eq!(v["preimage_matches"], true, "{v}");
        v
    }
}

/// A cluster whose workers wait on the gate, the requester connected to the provider with a
/// usable channel: (cluster, provider node id, channel id).
fn gated_cluster(name: &str) -> (Cluster, String, String) {
    let c = Cluster::up(name, Opts { gate: true, ..Opts::default() });
    let provider = c.connect_requester(GATE_MODEL);
    let channel = c.open_channel(&provider);
    (c, provider, channel)
}

/// Waits until lcpd's workers run `n` jobs in all.
fn wait_running(c: &Cluster, n: u64) -> BTreeMap<String, u64> {
    poll(LONG, &format!("{n} jobs running"), || {
        let w = c.workers();
        (w.values().sum::<u64>() == n).then_some(w)
    })
}

#[test]
fn cluster_comes_up_healthy_and_runs_a_paid_job() {
    let Some(()) = engine() else { return };
    let c = Cluster::up("paid", Opts::default());
    for s in PROVIDER_SERVICES.iter().chain(&["requester"]) {
        assert_eq!(c.health(s), "healthy", "{s}");
        let container = c.container(s);
        assert_eq!(c.inspect(&container, "{{.Config.User}}"), "lcp", "{s} runs as the image's user");
        // Only peerd's Lightning port and the requester's gateway are published.
        let ports = c.inspect(&container, "{{range $p, $b := .NetworkSettings.Ports}}{{if $b}}{{$p}} {{end}}{{end}}");
        let want = match *s {
            "peerd" => "9735/tcp",
            "requester" => "8080/tcp",
            _ => "",
        };
        assert_eq!(ports.trim(), want, "published ports of {s}");
    }
    // One node id across lcpd, peerd and payd (the shared node key), three workers.
    let provider = c.node_id("lcpd");
    let st = c.cli_json("lcpd", &["status"]);
    let services: BTreeMap<String, Value> = st["services"]
        .as_array()
        .expect("services")
        .iter()
        .map(|s| (s["id"].as_str().unwrap_or("").to_string(), s["node_id"].clone()))
        .collect();
    for want in ["lcpd", "peerd", "payd", "jobd/w1", "jobd/w2", "jobd/w3"] {
        assert!(services.contains_key(want), "{want} not on the bus: {services:?}");
    }
    for holder in ["lcpd", "peerd", "payd"] {
        assert_eq!(services[holder], provider.as_str(), "{holder}'s node id: {services:?}");
    }
    assert_eq!(c.workers().len(), 3, "{:?}", c.workers());

    // The documented command: one paid job through the cluster.
    let out = ok(&c.script(&["job", "hello from the test"], LONG + CMD), "docker-cluster.sh job");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["result"], "deterministic-output", "{v}");
    assert_eq!(v["preimage_matches"], true, "{v}");
    assert_eq!(v["peer"], provider.as_str(), "{v}");
    assert!(v["price_msat"].as_u64().unwrap_or(0) > 0, "{v}");
    c.assert_paid_once(&[v]);

    // The requester's gateway, through its published loopback port: an OpenAI request is a paid job.
    let addr = c.published("requester", 8080);
    let body = format!(r#"{{"model":"{CHAT_MODEL}","messages":[{{"role":"user","content":"hi"}}]}}"#);
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = std::net::TcpStream::connect(&addr).unwrap_or_else(|e| panic!("gateway at {addr}: {e}"));
    s.set_read_timeout(Some(LONG)).expect("timeout");
    s.write_all(req.as_bytes()).expect("request");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("response");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.to_ascii_lowercase().contains(&format!("x-lcp-peer-id: {provider}")), "{resp}");
    assert!(resp.ends_with("deterministic-output"), "{resp}");
}

#[test]
fn jobd_killed_under_load_is_replaced_and_no_paid_job_is_lost() {
    let Some(()) = engine() else { return };
    let (mut c, provider, _) = gated_cluster("load");
    const N: usize = 6;
    let jobs: Vec<Job> = (0..N).map(|i| c.start_gated_job(&provider, &format!("job-{i}"))).collect();
    // Every job paid and running on a worker (each takes 4), none finished: the gate is closed.
    let load = wait_running(&c, N as u64);
    let (victim, running) = load.iter().max_by_key(|(_, r)| **r).map(|(w, r)| (w.clone(), *r)).expect("a worker");
    assert!(running > 0, "{load:?}");
    let service = format!("jobd-{}", victim.trim_start_matches("jobd/w"));
    let before = c.crash(&service);
    c.wait_restarted(&service, before);
    // The replacement joined lcpd's pool again.
    poll(LONG, "the replaced worker back in the pool", || c.workers().contains_key(&victim).then_some(()));
    // lcpd saw the worker go and took its jobs back; they had produced no output, so they run again.
    let log = c.logs("lcpd");
    assert!(log.contains("worker restarted") || log.contains("worker gone"), "lcpd did not notice: {log}");
    c.gate().open();
    let done: Vec<Value> = jobs.into_iter().map(Job::done).collect();
    c.assert_paid_once(&done);
    assert_eq!(c.workers().values().sum::<u64>(), 0, "no job left running");
}

#[test]
fn lcpd_restarted_mid_job_resumes_from_its_volume_and_pays_once() {
    let Some(()) = engine() else { return };
    let (mut c, provider, channel) = gated_cluster("lcpd");
    let jobs = vec![c.start_gated_job(&provider, "a"), c.start_gated_job(&provider, "b")];
    wait_running(&c, 2);
    let before = c.crash("lcpd");
    c.wait_restarted("lcpd", before);
    // The bus host came back: every service joined its new broker by itself.
    for s in PROVIDER_SERVICES {
        c.wait_health(s, "healthy", LONG);
    }
    assert_eq!(c.node_id("lcpd"), provider, "same node id from the shared key volume");
    // The paid jobs came back from lcpd.db (not from the requester asking again).
    let log = c.logs("lcpd");
    assert!(log.contains("jobs resumed from lcpd.db provider=2"), "{log}");
    c.gate().open();
    let done: Vec<Value> = jobs.into_iter().map(Job::done).collect();
    c.assert_paid_once(&done);
    assert_eq!(c.channels(), vec![channel], "the same channel, no new one");
}

#[test]
fn payd_restarted_mid_job_resumes_from_its_volume_and_pays_once() {
    let Some(()) = engine() else { return };
    let (mut c, provider, channel) = gated_cluster("payd");
    let first = c.start_gated_job(&provider, "before");
    wait_running(&c, 1);
    let before = c.crash("payd");
    c.wait_restarted("payd", before);
    // The channel is back (payd reloaded it from its volume; the peers reconnected and
    // re-established it) and carries a second payment.
    let second = c.start_gated_job(&provider, "after");
    wait_running(&c, 2);
    c.gate().open();
    let done = vec![first.done(), second.done()];
    c.assert_paid_once(&done);
    assert_eq!(c.channels(), vec![channel], "the same channel, no new one");
}

#[test]
fn the_bus_refuses_containers_without_the_key() {
    let Some(()) = engine() else { return };
    let mut c = Cluster::up("keys", Opts { bus_port: true, ..Opts::default() });
    let network = format!("{}_bus", c.project);
    let img = image();
    // Control: a container on the bus network with the cluster's client key gets through.
    let client_key = format!("{}:/run/secrets/bus_client_key:ro", c.secrets().join("client.key").display());
    let status = |key_mount: &str| {
        let args = [
            "run",
            "--rm",
            "--network",
            &network,
            "-v",
            key_mount,
            &img,
            "lcp-cli",
            "--timeout",
            "5",
            "--bus",
            "tcp://lcpd:9736",
            "--bus-key",
            "/run/secrets/bus_client_key",
            "status",
        ];
        run("docker", &args, &[], None, CMD)
    };
    let o = status(&client_key);
    assert!(text(&o.stdout).contains("jobd/w1"), "{}\n{}", text(&o.stdout), text(&o.stderr));

    // A key pair of another bus (same format, not admitted by this broker): no handshake.
    let other = c.dir.path().join("other");
    let keygen = ["run", "--rm", "--user", "0:0", "--network", "none", "-v"];
    let mount = format!("{}:/keys", other.display());
    let mut args: Vec<&str> = keygen.to_vec();
    args.extend_from_slice(&[&mount, &img, "sh", "-c", "lcp-cli bus keygen /keys >/dev/null && chown -R 10001 /keys"]);
    ok(&run("docker", &args, &[], None, CMD), "keygen of another bus");
    let wrong_key = format!("{}:/run/secrets/bus_client_key:ro", other.join("client.key").display());
    let o = status(&wrong_key);
    assert!(!o.status.success(), "a wrong key got through: {}", text(&o.stdout));
    assert!(text(&o.stderr).contains("cannot reach the node's bus"), "{}", text(&o.stderr));

    // A worker container with the wrong key never joins: lcpd does not list it and its health
    // check (which asks the bus for jobd/intruder) fails while the broker itself is healthy.
    let env =
        ["LCP_BUS=tcp://lcpd:9736", "LCP_BUS_KEY=/run/secrets/bus_client_key", "LCP_HEALTH_SERVICES=jobd/intruder"];
    let opts = ["--network", &network, "-v", &wrong_key, "-e", env[0], "-e", env[1], "-e", env[2]];
    let health = ["--health-interval", "2s", "--health-start-period", "1s"];
    let name =
        c.start_container("intruder", &[&opts[..], &health[..]].concat(), &["jobd", "--worker-name", "intruder"]);
    poll(LONG, "the intruder unhealthy", || {
        (c.inspect(&name, "{{.State.Health.Status}}") == "unhealthy").then_some(())
    });
    assert!(!c.workers().contains_key("jobd/intruder"), "{:?}", c.workers());
    assert_eq!(c.health("lcpd"), "healthy");

    // Through the published bus port, with a bare ZeroMQ socket: without CURVE, or with the other
    // bus's key, the broker answers nothing; with the cluster's key it answers (the control).
    let port = c.published("lcpd", 9736);
    let endpoint: lcp::bus::Endpoint = format!("tcp://{port}").parse().expect("endpoint");
    let keys = lcp::bus::keys::load_client(&c.secrets().join("client.key")).expect("the cluster's client key");
    let other = lcp::bus::keys::load_client(&other.join("client.key")).expect("the other client key");
    let answered = |name: &str, keys: Option<&lcp::bus::ClientKeys>| {
        lcp::testkit::raw_client_gets_answer(&endpoint, name, keys).expect("raw client")
    };
    assert!(answered("keyholder", Some(&keys)), "the cluster's own key was refused");
    assert!(!answered("plain", None), "a client without CURVE got an answer");
    assert!(!answered("stranger", Some(&other)), "a client with another bus's key got an answer");
}

#[test]
fn a_worker_on_another_host_joins_through_the_published_bus_port() {
    let Some(()) = engine() else { return };
    let mut c = Cluster::up("remote", Opts { bus_port: true, ..Opts::default() });
    let port = c.published("lcpd", 9736);
    // "Another host": a container outside the cluster's networks, on the host's own network,
    // that reaches lcpd only through the published port, with a copy of client.key.
    let key = format!("{}:/run/secrets/bus_client_key:ro", c.secrets().join("client.key").display());
    let bus = format!("tcp://{port}");
    let cmd = ["jobd", "--bus", &bus, "--bus-key", "/run/secrets/bus_client_key", "--worker-name", "remote-1"];
    c.start_container("remote", &["--network", "host", "-v", &key], &cmd);
    poll(LONG, "the remote worker in lcpd's pool", || c.workers().contains_key("jobd/remote-1").then_some(()));
    // With the cluster's own workers stopped, a paid job can only run on the remote one.
    ok(&c.compose(&["stop", "jobd-1", "jobd-2", "jobd-3"]), "stop the local workers");
    poll(LONG, "only the remote worker left", || {
        let w = c.workers();
        (w.len() == 1 && w.contains_key("jobd/remote-1")).then_some(())
    });
    let out = ok(&c.script(&["job", "hello remote"], LONG + CMD), "docker-cluster.sh job");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["result"], "deterministic-output", "{v}");
    assert_eq!(v["preimage_matches"], true, "{v}");
}

#[test]
fn health_goes_unhealthy_without_the_bus_host_and_recovers() {
    let Some(()) = engine() else { return };
    let c = Cluster::up("health", Opts::default());
    // A stopped bus host (a manual stop: no restart) leaves every provider service unable to
    // show it is registered.
    ok(&c.compose(&["stop", "lcpd"]), "stop lcpd");
    for s in ["peerd", "payd", "jobd-1"] {
        c.wait_health(s, "unhealthy", LONG);
    }
    ok(&c.compose(&["start", "lcpd"]), "start lcpd");
    for s in PROVIDER_SERVICES {
        c.wait_health(s, "healthy", LONG);
    }
    assert_eq!(c.workers().len(), 3, "{:?}", c.workers());
    // The requester is a node of its own: never affected.
    assert_eq!(c.health("requester"), "healthy");
}

/// The volumes a cluster keeps across `down` without `-v` hold the node: same node id, same
/// channel after the whole cluster is recreated.
#[test]
fn a_recreated_cluster_keeps_its_node_id_and_channel() {
    let Some(()) = engine() else { return };
    let c = Cluster::up("recreate", Opts::default());
    let out = ok(&c.script(&["job", "first"], LONG + CMD), "first job");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let provider = c.node_id("lcpd");
    let channels = c.channels();
    assert_eq!(channels.len(), 1, "{channels:?}");
    ok(&c.compose(&["down", "--timeout", "5"]), "down (volumes kept)");
    ok(&c.script(&["up"], LONG + CMD), "up again");
    assert_eq!(c.node_id("lcpd"), provider);
    let out = ok(&c.script(&["job", "second"], LONG + CMD), "second job");
    let w: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    // Paid to the same node id: peerd and payd (invoice payee == peer) still have the key.
    assert_eq!((&w["preimage_matches"], &w["peer"]), (&Value::Bool(true), &Value::from(provider.as_str())), "{w}");
    assert_eq!(c.channels(), channels, "the channel survived in payd's volume");
    c.assert_paid_once(&[v, w]);
}

/// `lcp-cli bus keygen` in the image (what docker-cluster.sh runs) writes private key files and
/// prints no secret.
#[test]
fn keygen_in_the_image_writes_private_keys_and_prints_no_secret() {
    let Some(()) = engine() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mount = format!("{}:/keys", dir.path().display());
    let args = [
        "run",
        "--rm",
        "--user",
        "0:0",
        "--network",
        "none",
        "-v",
        &mount,
        &image(),
        "lcp-cli",
        "bus",
        "keygen",
        "/keys",
    ];
    let out = ok(&run("docker", &args, &[], None, CMD), "keygen");
    let server = std::fs::read_to_string(dir.path().join("server.key")).expect("server.key");
    let secret = server.lines().find_map(|l| l.strip_prefix("secret = ")).expect("secret line").trim_matches('"');
    assert!(!out.contains(secret), "{out}");
    let mode = std::fs::metadata(dir.path().join("client.key")).expect("client.key").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}
