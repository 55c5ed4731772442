//! Gateway benchmarks, end to end on this machine: an HTTP client -> the gateway in a requester
//! node -> LCP over a real peer connection with a devnet payment per job -> a provider node whose
//! openai worker calls a local stand-in upstream.
//!
//! * `gateway_sse_ttfb`: time to the first streamed byte of a chat completion with
//!   `"stream": true`, through the gateway, against calling the stand-in upstream directly with
//!   the same HTTP client in the same run (baseline), and against lcpd's client API on the bus
//!   (quote, execute, first chunk event) to separate the gateway's own share from LCP's.
//! * `gateway_small_json`: requests per second of small non-streaming jobs, 8 per iteration with
//!   4 in flight, through the gateway and directly at the upstream.
//!
//! Run: `cargo bench --bench gateway`

#[path = "../tests/gateway_common/mod.rs"]
mod gateway_common;
#[path = "../tests/jobd_upstream.rs"]
mod upstream;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gateway_common::{chat, net, send, Client, ProviderSpec};
use http_body_util::BodyExt;
use lcp::bus::api::lcpd::{JobEvent, LcpdApi, QuoteArgs};
use lcp::bus::api::Body;
use lcp::bus::{Bus, ServiceId};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use upstream::{chat_sse_events, Recorded, Script, Upstream};

const BATCH: usize = 8;
const IN_FLIGHT: usize = 4;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
}

fn script(req: &Recorded) -> Script {
    let stream = serde_json::from_slice::<serde_json::Value>(&req.body).is_ok_and(|v| v["stream"] == true);
    if stream {
        Script::Sse { events: chat_sse_events(&["Hello", " from", " the", " bench"]), gate: None }
    } else {
        let body = br#"{"id":"chatcmpl-b","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}"#;
        Script::Respond { status: 200, content_type: "application/json", body: body.to_vec() }
    }
}

/// One request: (time to the first body byte, bytes).
async fn ttfb(c: &Client, url: &str, body: &str) -> (Duration, usize) {
    let start = Instant::now();
    let r = send(c, "POST", url, &[], body).await;
    assert_eq!(r.status(), 200);
    let mut b = r.into_body();
    let (mut first, mut n) = (None, 0);
    while let Some(f) = b.frame().await {
        if let Ok(d) = f.expect("frame").into_data() {
            first.get_or_insert_with(|| start.elapsed());
            n += d.len();
        }
    }
    (first.expect("some data"), n)
}

/// `BATCH` requests, `IN_FLIGHT` at a time; returns the wall time.
async fn batch(c: &Client, url: &str, body: &str) -> Duration {
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let mut sent = 0;
    while sent < BATCH || !set.is_empty() {
        while sent < BATCH && set.len() < IN_FLIGHT {
            let (c, url, body) = (c.clone(), url.to_string(), body.to_string());
            set.spawn(async move {
                let r = send(&c, "POST", &url, &[], &body).await;
                assert_eq!(r.status(), 200);
                r.into_body().collect().await.expect("body").to_bytes().len()
            });
            sent += 1;
        }
        if let Some(r) = set.join_next().await {
            assert!(r.expect("join") > 0);
        }
    }
    start.elapsed()
}

/// The same job through lcpd's client API on the bus: quote, execute, first chunk event.
async fn lcpd_ttfb(
    bus: &Bus,
    rx: &mut tokio::sync::mpsc::Receiver<lcp::bus::Incoming>,
    peer: &str,
    body: &str,
) -> Duration {
    let t = Duration::from_secs(30);
    let start = Instant::now();
    let args = QuoteArgs {
        peer: peer.to_string(),
        task_kind: "openai.chat_completions.v1".into(),
        model: Some(gateway_common::MODEL.into()),
        input: body.as_bytes().to_vec(),
        input_content_type: None,
        max_price_msat: None,
        timeout_secs: Some(60),
    };
    let q = match bus.request(&ServiceId::Lcpd, Body::Lcpd(LcpdApi::RequestQuote(args)), t).await {
        Ok(Body::Lcpd(LcpdApi::Quote(q))) => q,
        other => panic!("quote: {other:?}"),
    };
    let exec = LcpdApi::Execute { job_id: q.job_id, max_price_msat: None, timeout_secs: Some(60) };
    bus.request(&ServiceId::Lcpd, Body::Lcpd(exec), t).await.expect("execute");
    let mut first = None;
    loop {
        let m = tokio::time::timeout(t, rx.recv()).await.expect("event in time").expect("bus open");
        if let Body::Lcpd(LcpdApi::JobEvent { job_id, event }) = m.body {
            if job_id != q.job_id {
                continue;
            }
            match event {
                JobEvent::Chunk(_) => {
                    first.get_or_insert_with(|| start.elapsed());
                }
                JobEvent::Result(r) => {
                    assert!(matches!(r, lcp::bus::api::lcpd::JobOutcomeRow::Ok { .. }), "{r:?}");
                    return first.expect("a chunk");
                }
                _ => {}
            }
        }
    }
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let up = rt.block_on(Upstream::start(script));
    let mut n = rt.block_on(net(vec![ProviderSpec::openai(&up.base_url())]));
    let cfg = n.gateway_config(|_| {});
    rt.block_on(n.start_gateway(cfg));
    let client = gateway_common::client();
    let (stream_body, json_body) = (chat("bench", true), chat("bench", false));
    let gw_url = format!("{}/v1/chat/completions", n.base());
    let up_url = format!("{}/v1/chat/completions", up.base_url());
    let peer = n.providers[0].id.clone();
    let bus = rt.block_on(n.requester.client()).expect("bus client");
    let mut rx = bus.take_incoming().expect("incoming");

    let mut g = c.benchmark_group("gateway_sse_ttfb");
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    g.bench_function("direct_upstream", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut sum = Duration::ZERO;
                for _ in 0..iters {
                    sum += ttfb(&client, &up_url, &stream_body).await.0;
                }
                sum
            })
        })
    });
    g.bench_function("lcpd_bus_api", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut sum = Duration::ZERO;
                for _ in 0..iters {
                    sum += lcpd_ttfb(&bus, &mut rx, &peer, &stream_body).await;
                }
                sum
            })
        })
    });
    g.bench_function("through_gateway", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut sum = Duration::ZERO;
                for _ in 0..iters {
                    sum += ttfb(&client, &gw_url, &stream_body).await.0;
                }
                sum
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("gateway_small_json");
    g.sample_size(10).measurement_time(Duration::from_secs(15));
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("direct_upstream", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut sum = Duration::ZERO;
                for _ in 0..iters {
                    sum += batch(&client, &up_url, &json_body).await;
                }
                sum
            })
        })
    });
    g.bench_function("through_gateway", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut sum = Duration::ZERO;
                for _ in 0..iters {
                    sum += batch(&client, &gw_url, &json_body).await;
                }
                sum
            })
        })
    });
    g.finish();
    bus.close();
    n.close();
    drop(up);
}

criterion_group!(benches, bench);
criterion_main!(benches);
