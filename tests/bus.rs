//! The bus and the node skeleton, in-process and as real processes.

use lcp::bus::api::{Body, Ctl};
use lcp::bus::{Bus, BusError, ClientKeys, Endpoint, ErrorCode, RemoteError, ServiceId};
use lcp::testkit::{self, poll_until, wait_services, InProcessNode, ProcessNode, PATIENCE};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(5);

async fn echo(bus: &Bus, to: &ServiceId, payload: &[u8]) -> Result<Vec<u8>, BusError> {
    match bus.request(to, Body::Ctl(Ctl::Echo(payload.to_vec())), T).await? {
        Body::Ctl(Ctl::Echo(b)) => Ok(b),
        other => panic!("unexpected {other:?}"),
    }
}

fn all_ids(workers: &[&str]) -> Vec<ServiceId> {
    let mut v = vec![ServiceId::Lcpd, ServiceId::Peerd, ServiceId::Payd];
    v.extend(workers.iter().map(|w| ServiceId::Jobd(w.to_string())));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_node_round_trips_over_inproc_and_ipc() {
    let n = InProcessNode::start().unwrap();
    // A client inside the process, on inproc://, without keys.
    let inproc = Bus::connect_zmq(n.node.inproc_endpoint(), ServiceId::Client("inproc".into()), None).unwrap();
    inproc.wait_ready(PATIENCE).await.unwrap();
    let listed = poll_until(PATIENCE, "all four services", || async {
        let s = testkit::services(&inproc).await.ok()?;
        (s.iter().filter(|s| !matches!(s.id, ServiceId::Client(_))).count() == 4).then_some(s)
    })
    .await
    .unwrap();
    let worker = listed.iter().find(|s| s.id.kind() == "jobd").unwrap().id.clone();
    for id in [ServiceId::Lcpd, ServiceId::Peerd, ServiceId::Payd, worker] {
        assert_eq!(echo(&inproc, &id, b"ping").await.unwrap(), b"ping", "{id}");
    }
    // A client over the remote endpoint (ipc://, CURVE), as lcp-cli would connect.
    let remote = n.client().await.unwrap();
    assert!(matches!(n.node.remote_endpoint(), Some(Endpoint::Ipc(_))));
    let big = vec![7u8; 256 * 1024];
    assert_eq!(echo(&remote, &ServiceId::Payd, &big).await.unwrap(), big);
    let node_ids: Vec<_> =
        testkit::services(&remote).await.unwrap().into_iter().filter_map(|s| s.info.node_id).collect();
    assert_eq!(node_ids.len(), 3, "peerd, payd and lcpd report the node key");
    assert!(node_ids.iter().all(|id| id == &node_ids[0]), "{node_ids:?}");
    inproc.close();
    remote.close();
    n.node.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_service_restarts_and_rejoins() {
    let mut n = InProcessNode::start().unwrap();
    let c = n.client().await.unwrap();
    wait_services(&c, &[ServiceId::Payd, ServiceId::Lcpd]).await.unwrap();
    n.node.stop_service("payd").unwrap();
    let e = echo(&c, &ServiceId::Payd, b"x").await.unwrap_err();
    assert!(matches!(e, BusError::Remote(RemoteError { code: ErrorCode::Unavailable, .. })), "{e}");
    // The others carry on.
    assert_eq!(echo(&c, &ServiceId::Lcpd, b"y").await.unwrap(), b"y");
    n.node.start_service("payd").unwrap();
    poll_until(PATIENCE, "payd back", || async { echo(&c, &ServiceId::Payd, b"z").await.ok() }).await.unwrap();
    c.close();
    n.node.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_round_trip_over_tcp_with_curve() {
    let node = ProcessNode::start(&["w1", "w2"]).unwrap();
    assert!(matches!(node.endpoint, Endpoint::Tcp { port, .. } if port != 0));
    let c = node.client().await.unwrap();
    let listed = wait_services(&c, &all_ids(&["w1", "w2"])).await.unwrap();
    for id in all_ids(&["w1", "w2"]) {
        assert_eq!(echo(&c, &id, id.to_string().as_bytes()).await.unwrap(), id.to_string().as_bytes());
    }
    let pids: std::collections::BTreeSet<u32> =
        listed.iter().filter(|s| !matches!(s.id, ServiceId::Client(_))).map(|s| s.info.pid).collect();
    assert_eq!(pids.len(), 5, "one process per service");
    c.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_processes_rejoin_and_broker_restart_is_survived() {
    let mut node = ProcessNode::start(&["w1"]).unwrap();
    let c = node.client().await.unwrap();
    wait_services(&c, &all_ids(&["w1"])).await.unwrap();
    let w1 = ServiceId::Jobd("w1".into());

    node.kill("jobd/w1").unwrap();
    poll_until(PATIENCE, "jobd/w1 unreachable", || async { echo(&c, &w1, b"x").await.is_err().then_some(()) })
        .await
        .unwrap();
    node.start_worker("w1").unwrap();
    poll_until(PATIENCE, "jobd/w1 back", || async { echo(&c, &w1, b"x").await.ok() }).await.unwrap();

    // Kill the broker host; everyone reconnects and registers again with the new broker.
    let epoch = c.broker_epoch();
    node.kill("lcpd").unwrap();
    node.start_daemon("lcpd").unwrap();
    poll_until(PATIENCE, "a new broker epoch", || async { (c.broker_epoch() != epoch).then_some(()) })
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", node.log("lcpd")))
        .unwrap();
    wait_services(&c, &all_ids(&["w1"])).await.unwrap();
    assert_eq!(echo(&c, &ServiceId::Payd, b"after").await.unwrap(), b"after");
    c.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_every_daemon_cleanly() {
    let mut node = ProcessNode::start(&["w1"]).unwrap();
    let c = node.client().await.unwrap();
    wait_services(&c, &all_ids(&["w1"])).await.unwrap();
    c.close();
    for name in ["jobd/w1", "peerd", "payd", "lcpd"] {
        let st = node.terminate(name, Duration::from_secs(5)).unwrap();
        assert!(st.success(), "{name} exited with {st}: {}", node.log(name));
        assert!(node.log(name).contains("SIGTERM"), "{name} did not log the signal");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_refuses_clients_without_the_curve_key() {
    let node = ProcessNode::start(&[]).unwrap();
    let keys = lcp::bus::keys::load_client(&node.dir.path().join("bus/client.key")).unwrap();
    let stranger = zmq::CurveKeyPair::new().unwrap();
    let stranger =
        ClientKeys { server_public: keys.server_public, public: stranger.public_key, secret: stranger.secret_key };
    let answered =
        |name: &str, keys: Option<&ClientKeys>| testkit::raw_client_gets_answer(&node.endpoint, name, keys).unwrap();
    assert!(!answered("plain", None), "plain client got an answer");
    assert!(!answered("stranger", Some(&stranger)), "client with an unknown key got an answer");
    // The control: the right key gets an answer, so the refusals above are the keys' doing.
    assert!(answered("keyholder", Some(&keys)));
    let c = node.client().await.unwrap();
    let listed = testkit::services(&c).await.unwrap();
    let has = |n: &str| listed.iter().any(|s| s.id == ServiceId::Client(n.into()));
    assert!(has("keyholder") && !has("plain") && !has("stranger"), "{listed:?}");
    assert!(node.log("lcpd").contains("unknown CURVE client key"));
    c.close();
}

#[test]
fn bad_endpoints_are_rejected_with_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    for bin in ["lcpd", "peerd", "payd", "jobd", "lcpnode", "lcp-cli"] {
        for (ep, want) in [
            ("udp://1.2.3.4:5", "unknown scheme"),
            ("tcp://host", "expected tcp://HOST:PORT"),
            ("inproc://", "inproc name"),
        ] {
            let mut cmd = Command::new(testkit::bin_path(bin));
            cmd.arg("--datadir").arg(d.path()).arg("--bus").arg(ep);
            if bin == "lcp-cli" {
                cmd.arg("status");
            }
            let out = cmd.output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{bin} {ep}: {err}");
            assert!(err.contains(want) && err.lines().count() == 1, "{bin} {ep}: {err}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lcp_cli_status_and_env_precedence() {
    let mut node = ProcessNode::start(&[]).unwrap();
    // Env sets the worker name; the flag beats the env.
    let ep = node.endpoint.to_string();
    let log = node.dir.path().join("logs/jobd-env.log");
    let f = std::fs::File::create(&log).unwrap();
    let child = Command::new(testkit::bin_path("jobd"))
        .args(["--datadir", node.dir.path().to_str().unwrap(), "--bus", &ep])
        .env("LCP_WORKER_NAME", "from-env")
        .stderr(f)
        .spawn()
        .unwrap();
    node.daemons.insert("jobd/from-env".into(), testkit::Daemon { child, log });
    node.spawn("jobd/from-flag", "jobd", &["--bus", &ep, "--worker-name", "from-flag"]).unwrap();
    let c = node.client().await.unwrap();
    wait_services(&c, &[ServiceId::Jobd("from-env".into()), ServiceId::Jobd("from-flag".into()), ServiceId::Peerd])
        .await
        .unwrap();
    // A service registers before it has read its node key (a slow disk can make that take a
    // while): wait for the node id, which status prints.
    testkit::peerd_address(&c).await.unwrap();
    c.close();

    let dir = node.dir.path().to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(testkit::bin_path("lcp-cli")).args(["--datadir", &dir, "status", "--json"]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = v["services"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    for want in ["lcpd", "peerd", "payd", "jobd/from-env", "jobd/from-flag"] {
        assert!(ids.contains(&want), "{want} missing from {ids:?}");
    }
    assert_eq!(v["node_id"].as_str().unwrap().len(), 66);

    let help = Command::new(testkit::bin_path("lcp-cli")).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for section in ["NAME:", "USAGE:", "COMMANDS:", "status"] {
        assert!(help.contains(section), "{help}");
    }
    // Nothing runs at this datadir: one clear line, exit 1.
    let empty = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(empty.path().join("bus")).unwrap();
    let out = Command::new(testkit::bin_path("lcp-cli"))
        .args(["--datadir", empty.path().to_str().unwrap(), "--timeout", "1", "status"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.starts_with("lcp-cli: error: ") && err.trim_end().lines().count() == 1, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_stops_promptly_when_its_broker_is_gone() {
    // The broker dies first (lcpd down); the service's last frames cannot be delivered, and
    // its shutdown must not wait for a broker that is not there.
    let d = tempfile::tempdir().unwrap();
    let cfg = lcp::demo::node_config(d.path()).unwrap();
    let ep = lcp::node::unique_inproc();
    let broker = lcp::bus::ZmqBroker::start(lcp::bus::BrokerConfig { inproc: Some(ep.clone()), remote: None }).unwrap();
    let (id, f) = cfg.service("payd").unwrap();
    let svc =
        lcp::node::ServiceThread::spawn(ep.clone(), id, None, tokio_util::sync::CancellationToken::new(), f).unwrap();
    let c = Bus::connect_zmq(&ep, ServiceId::Client("t".into()), None).unwrap();
    testkit::wait_services(&c, &[ServiceId::Payd]).await.unwrap();
    drop(broker);
    // Frames sent now wait in the I/O thread; nothing blocks.
    for _ in 0..100 {
        let _ = c.send_event(&ServiceId::Payd, Body::Ctl(Ctl::Goodbye));
    }
    let started = std::time::Instant::now();
    tokio::task::spawn_blocking(move || svc.stop()).await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "stop took {:?}", started.elapsed());
    c.close();
}

/// The container layout without containers: every daemon with a data directory of its own, the
/// bus keys from `lcp-cli bus keygen` (`--bus-server-key`, `--bus-key`) and one node key shared by
/// path (`--node-key`); `lcp-cli health` checks the services it names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemons_with_own_datadirs_share_generated_bus_keys_and_one_node_key() {
    let mut node = ProcessNode::empty().unwrap();
    let root = node.dir.path().to_path_buf();
    let path = |p: &str| root.join(p).to_str().unwrap().to_string();
    let (secrets, node_key) = (path("secrets"), path("identity/node.key"));
    std::fs::create_dir_all(root.join("identity")).unwrap();
    let cli = |args: &[&str]| Command::new(testkit::bin_path("lcp-cli")).args(args).output().unwrap();
    let out = cli(&["--datadir", &path("cli"), "bus", "keygen", &secrets]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (server_key, client_key) = (format!("{secrets}/server.key"), format!("{secrets}/client.key"));

    // A broker key that is not there is an error naming it, not a new key.
    let out = Command::new(testkit::bin_path("lcpd"))
        .args(["--datadir", &path("bad"), "--bus", "tcp://127.0.0.1:0", "--bus-server-key", &path("nope/server.key")])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("nope/server.key"), "{err}");

    let lcpd = ["--datadir", &path("lcpd"), "--bus", "tcp://127.0.0.1:0", "--bus-server-key", &server_key];
    node.spawn_raw("lcpd", "lcpd", &[&lcpd[..], &["--node-key", &node_key]].concat()).unwrap();
    node.wait_endpoint("lcpd", &root.join("lcpd")).unwrap();
    let bus = node.endpoint.to_string();
    let joined = |dir: &str| {
        vec!["--datadir".to_string(), path(dir), "--bus".into(), bus.clone(), "--bus-key".into(), client_key.clone()]
    };
    for (name, extra) in [
        ("peerd", vec!["--node-key", &node_key, "--listen", "127.0.0.1:0"]),
        ("payd", vec!["--node-key", &node_key]),
        ("jobd", vec!["--worker-name", "w1"]),
    ] {
        let mut args = joined(name);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        node.spawn_raw(name, name, &args).unwrap();
    }
    let keys = lcp::bus::keys::load_client(std::path::Path::new(&client_key)).unwrap();
    let c = Bus::connect_zmq(&node.endpoint, ServiceId::Client("t".into()), Some(&keys)).unwrap();
    c.wait_ready(PATIENCE).await.unwrap();
    wait_services(&c, &all_ids(&["w1"])).await.unwrap();
    // Each service registers before it reads the node key: wait until all three report one.
    let ids = poll_until(PATIENCE, "node ids of lcpd, peerd and payd", || async {
        let listed = testkit::services(&c).await.ok()?;
        let ids: Vec<String> = listed
            .iter()
            .filter(|s| matches!(s.id, ServiceId::Lcpd | ServiceId::Peerd | ServiceId::Payd))
            .filter_map(|s| s.info.node_id.clone())
            .collect();
        (ids.len() == 3).then_some(ids)
    })
    .await
    .unwrap();
    assert!(ids.iter().all(|i| *i == ids[0]), "one node id across lcpd, peerd and payd: {ids:?}");
    c.close();
    // Nothing was made in the data directories that the shared files replace.
    assert!(!root.join("lcpd/bus").exists() && !root.join("lcpd/node.key").exists());
    assert!(!root.join("peerd/node.key").exists() && !root.join("payd/node.key").exists());

    let health = |services: &[&str]| {
        let mut args = vec!["--datadir".to_string(), path("jobd"), "--bus".into(), bus.clone()];
        args.extend(["--bus-key".to_string(), client_key.clone(), "health".into()]);
        args.extend(services.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&args)
    };
    let ok = health(&["jobd/w1", "peerd", "payd", "lcpd"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let bad = health(&["jobd/w1", "jobd/w2"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{err}");
    assert!(err.contains("unhealthy: jobd/w2 (not registered)") && !err.contains("jobd/w1"), "{err}");
}
