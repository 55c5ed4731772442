//! peerd transport benchmarks.
//!
//! 1. One-way throughput of 16 KiB raw messages between two of our connections over loopback,
//!    against internet2's blocking `BrontideSession` moving the same bytes in the same run.
//! 2. Memory per idle connection: RSS growth (from /proc/self/statm) while 1,000 of our
//!    connection pairs are held open, against 1,000 bare tokio TCP socket pairs.

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use internet2::session::{BrontideSession, SendRecvMessage};
use lcp::peerd::transport::{
    Bolt1Pings, Connection, Dialer, Listener, ListenerEvent, LocalIdentity, RawMessage, TransportConfig,
};
use tokio::runtime::Runtime;

const MSG_LEN: usize = 16 * 1024;
const BATCH: usize = 256; // 4 MiB per iteration
const IDLE_CONNECTIONS: usize = 1000;

fn bench_config() -> TransportConfig {
    let mut c = TransportConfig::default();
    c.connection.rate_limit = None;
    c.connection.keepalive = None;
    c.max_inbound_connections = 4 * IDLE_CONNECTIONS;
    c
}

fn identity(byte: u8) -> LocalIdentity {
    LocalIdentity::from_secret_bytes([byte; 32]).expect("valid key")
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
}

async fn connected_pair(listener: &mut Listener, dialer: &Dialer) -> (Connection, Connection) {
    let server = identity(0x21).node_id();
    let ours = dialer.dial(listener.local_addr(), server).await.expect("dial");
    match listener.next_event().await {
        Some(ListenerEvent::Connected(theirs)) => (ours, theirs),
        other => panic!("expected a connection, got {other:?}"),
    }
}

fn throughput(c: &mut Criterion) {
    let payload = vec![0x5au8; MSG_LEN - 2];
    let mut group = c.benchmark_group("peerd_one_way_16KiB");
    group.throughput(Throughput::Bytes((BATCH * MSG_LEN) as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));

    // Ours: a listener and a dialer in one tokio runtime; default buffers, then 64 KiB ones.
    let rt = runtime();
    let msg = RawMessage::new(42091, &payload).expect("fits");
    for (name, buffers) in [("peerd_transport", None), ("peerd_transport_64KiB_buffers", Some(64 * 1024))] {
        let mut config = bench_config();
        if let Some(size) = buffers {
            config.noise.read_buffer = size;
            config.noise.write_buffer = size;
        }
        let (sender, mut receiver) = rt.block_on(async {
            let mut listener = Listener::bind(
                "127.0.0.1:0".parse().expect("addr"),
                identity(0x21),
                config.clone(),
                Arc::new(Bolt1Pings::default()),
            )
            .await
            .expect("bind");
            let dialer = Dialer::new(identity(0x22), config, Arc::new(Bolt1Pings::default()));
            let (a, b) = connected_pair(&mut listener, &dialer).await;
            (a.handle, b)
        });
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let h = sender.clone();
                        let m = msg.clone();
                        let send = tokio::spawn(async move {
                            for _ in 0..BATCH {
                                h.send(m.clone()).await.expect("send");
                            }
                        });
                        for _ in 0..BATCH {
                            let got = receiver.inbound.recv().await.expect("open");
                            assert_eq!(got.len(), MSG_LEN);
                        }
                        send.await.expect("sender task");
                    }
                    start.elapsed()
                })
            })
        });
    }

    // Baseline: internet2's blocking session, one thread per end.
    let listener = StdTcpListener::bind("127.0.0.1:0").expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let server_sk = secp256k1_inet2::SecretKey::from_slice(&[0x31; 32]).expect("key");
    let client_sk = secp256k1_inet2::SecretKey::from_slice(&[0x32; 32]).expect("key");
    let server_id = internet2::addr::NodeId::from_str(&identity(0x31).node_id().to_string()).expect("node id");
    let accept = std::thread::spawn(move || BrontideSession::accept(server_sk, &listener));
    let mut client =
        BrontideSession::connect(client_sk, internet2::addr::NodeAddr::new(server_id, addr)).expect("connect");
    let mut server = accept.join().expect("accept thread").expect("accept");
    let (go_tx, go_rx) = std::sync::mpsc::channel::<u64>();
    let plain = msg.as_bytes().to_vec();
    let send_thread = std::thread::spawn(move || {
        while let Ok(iters) = go_rx.recv() {
            for _ in 0..iters * BATCH as u64 {
                client.send_raw_message(&plain).expect("send");
            }
        }
    });
    group.bench_function("internet2_brontide_session", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            go_tx.send(iters).expect("sender thread alive");
            for _ in 0..iters * BATCH as u64 {
                let got = server.recv_raw_message().expect("recv");
                assert_eq!(got.len(), MSG_LEN);
            }
            start.elapsed()
        })
    });
    drop(go_tx);
    send_thread.join().expect("sender thread");
    group.finish();
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// Holds `IDLE_CONNECTIONS` pairs of our connections open and reports RSS growth, next to the
/// same number of bare TCP socket pairs. Both ends live in this process, so per-connection
/// numbers are per end (two ends per pair).
fn idle_memory() {
    let rt = runtime();
    let deadline = Duration::from_secs(120);
    rt.block_on(async {
        // Baseline: bare tokio TCP pairs.
        let base_before = rss_bytes();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = tcp.local_addr().expect("addr");
        let mut bare = Vec::with_capacity(IDLE_CONNECTIONS);
        let started = Instant::now();
        for _ in 0..IDLE_CONNECTIONS {
            let a = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let (b, _) = tcp.accept().await.expect("accept");
            bare.push((a, b));
            assert!(started.elapsed() < deadline, "bare setup too slow");
        }
        let base_after = rss_bytes();
        let bare_per_end = base_after.saturating_sub(base_before) as f64 / (2 * IDLE_CONNECTIONS) as f64;
        drop(bare);

        let before = rss_bytes();
        let mut listener = Listener::bind(
            "127.0.0.1:0".parse().expect("addr"),
            identity(0x21),
            bench_config(),
            Arc::new(Bolt1Pings::default()),
        )
        .await
        .expect("bind");
        let dialer = Dialer::new(identity(0x23), bench_config(), Arc::new(Bolt1Pings::default()));
        let mut held = Vec::with_capacity(IDLE_CONNECTIONS);
        let started = Instant::now();
        for _ in 0..IDLE_CONNECTIONS {
            held.push(connected_pair(&mut listener, &dialer).await);
            assert!(started.elapsed() < deadline, "connection setup too slow");
        }
        let setup = started.elapsed();
        let after = rss_bytes();
        let per_end = after.saturating_sub(before) as f64 / (2 * IDLE_CONNECTIONS) as f64;
        let gib = (1u64 << 30) as f64;
        println!(
            "idle memory: {IDLE_CONNECTIONS} pairs of peerd connections: RSS +{:.1} MiB, {:.1} KiB per connection end, {:.0} connections per GiB (set up in {:?})",
            after.saturating_sub(before) as f64 / (1 << 20) as f64,
            per_end / 1024.0,
            gib / per_end.max(1.0),
            setup,
        );
        // Bare sockets live mostly in kernel memory, which RSS does not count: the baseline is
        // the user-space cost of a tokio socket, often below RSS resolution.
        let ratio = if bare_per_end >= 64.0 {
            format!("{:.1}", per_end / bare_per_end)
        } else {
            "n/a (bare cost below RSS resolution)".to_string()
        };
        println!(
            "idle memory baseline: {IDLE_CONNECTIONS} bare TCP pairs: RSS +{:.1} KiB in total, {:.2} KiB per socket end; peerd/bare ratio {ratio}",
            base_after.saturating_sub(base_before) as f64 / 1024.0,
            bare_per_end / 1024.0,
        );
        // All still alive after the measurement.
        assert!(held.iter().all(|(a, b)| !a.handle.is_closed() && !b.handle.is_closed()));
    });
}

criterion_group!(benches, throughput);

fn main() {
    benches();
    idle_memory();
    Criterion::default().configure_from_args().final_summary();
}
