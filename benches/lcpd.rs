//! lcpd end to end between two in-process nodes on loopback (deterministic backend, devnet
//! payments over a real channel), with baselines measured in the same run:
//!
//! - tiny paid jobs (quote, checks, payment, result): median latency and jobs per second, against
//!   the bare payment of the same backend over the same bus and channel (payd CreateInvoice on the
//!   provider, Pay on the requester);
//! - a 4 MiB result: MB/s from Execute to the verified result, against pushing the same bytes as
//!   LCP stream chunks from the provider's peerd to the requester's peerd (a bus client standing in
//!   for the requester's lcpd counts them).
//!
//! Run: `cargo bench --bench lcpd` (ITER=N for the number of tiny jobs, default 200).

use lcp::bus::api::lcpd::{JobEvent, LcpdApi, QuoteArgs};
use lcp::bus::api::payd::PaydApi;
use lcp::bus::api::{Body, PeerdApi};
use lcp::bus::{Bus, ServiceId};
use lcp::jobd::backend::deterministic::DeterministicConfig;
use lcp::jobd::backend::BackendConfig;
use lcp::testkit::{poll_until, InProcessNode, NodePair, PATIENCE};
use lcp::wire::lcp::{ChunkSplitter, LcpMessage};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);
const MODEL: &str = "gpt-5.2";
const BIG: usize = 4 << 20;

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn req(c: &Bus, to: ServiceId, body: Body) -> Body {
    c.request(&to, body, T).await.expect("request")
}

async fn pair(provider_output: Option<String>) -> (InProcessNode, InProcessNode, Bus, Bus, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = lcp::demo::node_config(dir.path()).expect("config");
    if let Some(output) = provider_output {
        cfg.jobd.backend = BackendConfig::Deterministic(DeterministicConfig {
            output,
            max_output_bytes: (BIG + 1) as u64,
            ..DeterministicConfig::default()
        });
    }
    let provider = InProcessNode::start_with(dir, cfg).expect("provider");
    let NodePair { requester, provider, rc, pc, provider_id: id, .. } =
        NodePair::start(provider, 10_000_000).await.expect("nodes with a channel");
    poll_until(PATIENCE, "manifest", || async {
        match rc.request(&ServiceId::Lcpd, Body::Lcpd(LcpdApi::ListLcpPeers), T).await.ok()? {
            Body::Lcpd(LcpdApi::LcpPeers(p)) => p.into_iter().find(|p| p.node_id == id && !p.manifest.tasks.is_empty()),
            _ => None,
        }
    })
    .await
    .expect("manifest");
    (requester, provider, rc, pc, id)
}

/// One paid job; returns (total time, time from the first result byte to the verified result).
async fn job(rc: &Bus, rx: &mut tokio::sync::mpsc::Receiver<lcp::bus::Incoming>, peer: &str) -> (Duration, Duration) {
    let t0 = Instant::now();
    let args = QuoteArgs {
        peer: peer.to_string(),
        task_kind: "openai.chat_completions.v1".into(),
        model: Some(MODEL.into()),
        input: format!(r#"{{"model":"{MODEL}","messages":[{{"role":"user","content":"hi"}}]}}"#).into_bytes(),
        input_content_type: None,
        max_price_msat: None,
        timeout_secs: Some(60),
    };
    let q = match req(rc, ServiceId::Lcpd, Body::Lcpd(LcpdApi::RequestQuote(args))).await {
        Body::Lcpd(LcpdApi::Quote(q)) => q,
        other => panic!("{other:?}"),
    };
    let exec = LcpdApi::Execute { job_id: q.job_id, max_price_msat: None, timeout_secs: Some(60) };
    req(rc, ServiceId::Lcpd, Body::Lcpd(exec)).await;
    let mut first = None;
    loop {
        let m = tokio::time::timeout(T, rx.recv()).await.expect("in time").expect("open");
        if let Body::Lcpd(LcpdApi::JobEvent { job_id, event }) = m.body {
            if job_id != q.job_id {
                continue;
            }
            match event {
                JobEvent::Begin { .. } => first = Some(Instant::now()),
                JobEvent::Result(r) => {
                    assert!(matches!(r, lcp::bus::api::lcpd::JobOutcomeRow::Ok { .. }), "{r:?}");
                    let end = Instant::now();
                    return (end - t0, end - first.unwrap_or(t0));
                }
                _ => {}
            }
        }
    }
}

async fn tiny(iters: usize) {
    let (_r, _p, rc, pc, peer) = pair(None).await;
    let mut rx = rc.take_incoming().expect("incoming");
    for _ in 0..5 {
        job(&rc, &mut rx, &peer).await;
    }
    // Baseline: the bare payment, same backend, bus and channel.
    let mut pay = Vec::new();
    for i in 0..iters {
        let t0 = Instant::now();
        let inv =
            PaydApi::CreateInvoice { amount_msat: 1_000 + i as u64, description_hash: [i as u8; 32], expiry_secs: 300 };
        let bolt11 = match req(&pc, ServiceId::Payd, Body::Payd(inv)).await {
            Body::Payd(PaydApi::Invoice { bolt11, .. }) => bolt11,
            other => panic!("{other:?}"),
        };
        // A payment right after the previous one may find the old HTLC still being removed.
        poll_until(PATIENCE, "pay", || async {
            let p = PaydApi::Pay { bolt11: bolt11.clone(), max_fee_msat: 0, timeout_secs: 30 };
            matches!(rc.request(&ServiceId::Payd, Body::Payd(p), T).await, Ok(Body::Payd(PaydApi::Paid { .. })))
                .then_some(())
        })
        .await
        .expect("paid");
        pay.push(t0.elapsed());
    }
    let mut jobs = Vec::new();
    let start = Instant::now();
    for _ in 0..iters {
        jobs.push(job(&rc, &mut rx, &peer).await.0);
    }
    let wall = start.elapsed();
    let (mp, mj) = (median(&mut pay), median(&mut jobs));
    println!("tiny paid job (quote+pay+result), {iters} sequential jobs:");
    println!("  bare payment (payd invoice + pay over the bus): median {:.2} ms", mp.as_secs_f64() * 1e3);
    println!("  lcpd job end to end:                          median {:.2} ms", mj.as_secs_f64() * 1e3);
    println!(
        "  ratio job/payment: {:.2}x; jobs per second (sequential): {:.1}",
        mj.as_secs_f64() / mp.as_secs_f64(),
        iters as f64 / wall.as_secs_f64()
    );
}

async fn big() {
    let (mut r, mut p, rc, pc, peer) = pair(Some("x".repeat(BIG))).await;
    let mut rx = rc.take_incoming().expect("incoming");
    let mut lcp_times = Vec::new();
    let mut stream_times = Vec::new();
    job(&rc, &mut rx, &peer).await;
    for _ in 0..5 {
        let (total, stream) = job(&rc, &mut rx, &peer).await;
        lcp_times.push(total);
        stream_times.push(stream);
    }
    drop(rx);
    // Baseline: the same bytes as stream chunks, provider peerd -> requester peerd, counted by a
    // bus client that takes the requester lcpd's place.
    let requester_id = match req(&rc, ServiceId::Broker, Body::Ctl(lcp::bus::api::Ctl::ListServices)).await {
        Body::Ctl(lcp::bus::api::Ctl::Services(s)) => {
            s.into_iter().find(|s| s.id == ServiceId::Peerd).and_then(|s| s.info.node_id).expect("node id")
        }
        other => panic!("{other:?}"),
    };
    r.node.stop_service("lcpd").expect("stop lcpd");
    let ep = r.node.remote_endpoint().expect("endpoint").clone();
    let keys = lcp::bus::keys::load_client(&r.dir.path().join("bus").join("client.key")).expect("keys");
    let sink = Bus::connect_zmq(&ep, ServiceId::Lcpd, Some(&keys)).expect("sink");
    sink.wait_ready(PATIENCE).await.expect("sink ready");
    let mut srx = sink.take_incoming().expect("incoming");
    let session = match req(&pc, ServiceId::Peerd, Body::Peerd(PeerdApi::ListPeers)).await {
        Body::Peerd(PeerdApi::Peers(ps)) => ps.into_iter().find(|x| x.node_id == requester_id).expect("peer").session,
        other => panic!("{other:?}"),
    };
    let data = vec![b'x'; BIG];
    let mut splitter = ChunkSplitter::new(2, [1; 32], u64::MAX >> 8, [2; 32], 16_384).expect("splitter");
    let msgs: Vec<Vec<u8>> = splitter
        .split(&data)
        .map(|c| {
            let (t, payload) = LcpMessage::StreamChunk(c.expect("chunk")).encode().expect("encode");
            let mut b = t.to_be_bytes().to_vec();
            b.extend_from_slice(&payload);
            b
        })
        .collect();
    let mut raw = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        for m in &msgs {
            let ev = PeerdApi::Send { node_id: requester_id.clone(), session, msg: m.clone() };
            pc.send_event(&ServiceId::Peerd, Body::Peerd(ev)).expect("send");
        }
        let mut got = 0;
        while got < msgs.len() {
            let m = tokio::time::timeout(T, srx.recv()).await.expect("in time").expect("open");
            if matches!(m.body, Body::Peerd(PeerdApi::Message { .. })) {
                got += 1;
            }
        }
        raw.push(t0.elapsed());
    }
    let mb = BIG as f64 / 1e6;
    let (l, s, r) = (median(&mut lcp_times), median(&mut stream_times), median(&mut raw));
    println!("4 MiB result:");
    println!(
        "  peerd -> peerd, same bytes as stream chunks: median {:.1} ms = {:.1} MB/s",
        r.as_secs_f64() * 1e3,
        mb / r.as_secs_f64()
    );
    println!(
        "  lcpd job, first result byte to verified result: median {:.1} ms = {:.1} MB/s",
        s.as_secs_f64() * 1e3,
        mb / s.as_secs_f64()
    );
    println!(
        "  lcpd job end to end (quote, pay, result): median {:.1} ms = {:.1} MB/s",
        l.as_secs_f64() * 1e3,
        mb / l.as_secs_f64()
    );
    println!("  ratio result streaming / raw peerd: {:.2}x the time", s.as_secs_f64() / r.as_secs_f64());
    sink.close();
    let _ = p.node.stop_service("jobd");
}

fn main() {
    lcp::logging::init("error");
    let iters = std::env::var("ITER").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        tiny(iters).await;
        big().await;
    });
}
