//! Bus round trip (request -> reply through the broker) over inproc and tcp+CURVE, against bare
//! ZeroMQ in the same run: a direct DEALER->ROUTER echo, and the same broker topology (client
//! DEALER -> ROUTER broker -> service DEALER and back) without our envelope, tasks and channels.
//!
//! Run: `cargo bench --bench bus`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use lcp::bus::api::{Body, Ctl};
use lcp::bus::{BrokerConfig, Bus, ClientKeys, ServiceId, ZmqBroker};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const PAYLOAD: usize = 64;

struct BusSetup {
    _broker: ZmqBroker,
    _service: Bus,
    client: Bus,
    _dir: tempfile::TempDir,
}

fn bus_setup(rt: &tokio::runtime::Runtime, remote: bool) -> BusSetup {
    let dir = tempfile::tempdir().unwrap();
    let (server, ckeys) = lcp::bus::keys::load_or_create(&dir.path().join("bus")).unwrap();
    let inproc = lcp::node::unique_inproc();
    let cfg = if remote {
        BrokerConfig { inproc: None, remote: Some(("tcp://127.0.0.1:0".parse().unwrap(), server)) }
    } else {
        BrokerConfig { inproc: Some(inproc.clone()), remote: None }
    };
    let broker = ZmqBroker::start(cfg).unwrap();
    let ep = broker.remote_endpoint().cloned().unwrap_or(inproc);
    let keys: Option<ClientKeys> = remote.then_some(ckeys);
    let (service, client) = rt.block_on(async {
        let s = Bus::connect_zmq(&ep, ServiceId::Lcpd, keys.as_ref()).unwrap();
        let c = Bus::connect_zmq(&ep, ServiceId::Client("bench".into()), keys.as_ref()).unwrap();
        s.wait_ready(Duration::from_secs(10)).await.unwrap();
        c.wait_ready(Duration::from_secs(10)).await.unwrap();
        (s, c)
    });
    BusSetup { _broker: broker, _service: service, client, _dir: dir }
}

/// Bare ZeroMQ: an echo ROUTER (direct) or a forwarding ROUTER plus an echo DEALER (broker).
struct Bare {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    client: zmq::Socket,
    _ctx: zmq::Context,
}

fn curve_pair() -> (zmq::CurveKeyPair, zmq::CurveKeyPair) {
    (zmq::CurveKeyPair::new().unwrap(), zmq::CurveKeyPair::new().unwrap())
}

fn bare_setup(remote: bool, via_broker: bool) -> Bare {
    let ctx = zmq::Context::new();
    let (server_kp, client_kp) = curve_pair();
    let router = ctx.socket(zmq::ROUTER).unwrap();
    let ep = if remote {
        router.set_curve_server(true).unwrap();
        router.set_curve_secretkey(&server_kp.secret_key).unwrap();
        router.bind("tcp://127.0.0.1:*").unwrap();
        router.get_last_endpoint().unwrap().unwrap()
    } else {
        let e = format!("inproc://bare-{}", rand::random::<u64>());
        router.bind(&e).unwrap();
        e
    };
    let dealer = |id: &[u8]| {
        let s = ctx.socket(zmq::DEALER).unwrap();
        s.set_identity(id).unwrap();
        if remote {
            s.set_curve_serverkey(&server_kp.public_key).unwrap();
            s.set_curve_publickey(&client_kp.public_key).unwrap();
            s.set_curve_secretkey(&client_kp.secret_key).unwrap();
        }
        s.connect(&ep).unwrap();
        s
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    if via_broker {
        let svc = dealer(b"svc");
        let st = stop.clone();
        threads.push(std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                if svc.poll(zmq::POLLIN, 100).unwrap_or(0) > 0 {
                    let mut parts = svc.recv_multipart(0).unwrap(); // [from, frame]
                    let frame = parts.pop().unwrap();
                    svc.send_multipart([parts[0].clone(), frame], 0).unwrap(); // [to, frame]
                }
            }
        }));
        // Wait until the service's connection is routable (mandatory: unroutable sends fail).
        router.set_router_mandatory(true).unwrap();
        while router.send_multipart([b"svc".as_slice(), b"probe", b""], zmq::DONTWAIT).is_err() {
            std::thread::yield_now();
        }
    }
    let st = stop.clone();
    threads.push(std::thread::spawn(move || {
        while !st.load(Ordering::Relaxed) {
            if router.poll(zmq::POLLIN, 100).unwrap_or(0) > 0 {
                let parts = router.recv_multipart(0).unwrap();
                if via_broker {
                    // [sender, to, frame] -> [to, sender, frame]
                    if parts.len() == 3 {
                        let _ = router.send_multipart([&parts[1], &parts[0], &parts[2]], 0);
                    }
                } else {
                    router.send_multipart(parts, 0).unwrap(); // echo back to the sender
                }
            }
        }
    }));
    let client = dealer(b"client");
    Bare { stop, threads, client, _ctx: ctx }
}

impl Bare {
    fn round_trip(&self, via_broker: bool, payload: &[u8]) {
        if via_broker {
            self.client.send_multipart([b"svc".as_slice(), payload], 0).unwrap();
        } else {
            self.client.send(payload, 0).unwrap();
        }
        let parts = self.client.recv_multipart(0).unwrap();
        assert_eq!(parts.last().map(|p| p.len()), Some(payload.len()));
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let payload = vec![0x5au8; PAYLOAD];
    let mut g = c.benchmark_group("bus_round_trip_64B");
    g.measurement_time(Duration::from_secs(4));
    for (name, remote) in [("inproc", false), ("tcp_curve", true)] {
        let s = bus_setup(&rt, remote);
        g.bench_function(BenchmarkId::new("lcp_bus", name), |b| {
            b.iter(|| {
                let r = rt.block_on(s.client.request(
                    &ServiceId::Lcpd,
                    Body::Ctl(Ctl::Echo(payload.clone())),
                    Duration::from_secs(5),
                ));
                assert!(r.is_ok());
            })
        });
        s.client.close();
        for via_broker in [false, true] {
            let bare = bare_setup(remote, via_broker);
            let label = if via_broker { "zmq_bare_broker" } else { "zmq_bare_direct" };
            g.bench_function(BenchmarkId::new(label, name), |b| b.iter(|| bare.round_trip(via_broker, &payload)));
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
