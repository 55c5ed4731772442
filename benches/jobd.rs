//! jobd backend benchmarks.
//!
//! * `openai_sse`: time to first byte and throughput of an SSE job through the OpenAI backend,
//!   against reading the same local upstream directly with the same HTTP client (baseline).
//! * `exec_cpu`: jobs per second of a CPU-bound exec job at concurrency 1, 2 and 4 (N concurrent
//!   executions of one backend), against spawning the same command directly without limits.

#[path = "../tests/jobd_upstream.rs"]
mod upstream;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http_body_util::{BodyExt, Full};
use lcp::jobd::backend::exec::{ExecBackend, ExecCommandConfig, ExecConfig, ExecLimits};
use lcp::jobd::backend::openai::{build_http_client, OpenAiBackend, OpenAiConfig};
use lcp::jobd::backend::{ComputeBackend, JobSpec, CONTENT_TYPE_JSON, TASK_KIND_CHAT_COMPLETIONS};
use lcp::jobd::pricing::{ModelConfig, ModelPrice, Pricer, PricingConfig};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use upstream::{Script, Upstream};

const EVENTS: usize = 256;
const EVENT_BYTES: usize = 256;
const CHAT_STREAM: &str = r#"{"model":"gpt-5.2","messages":[{"role":"user","content":"bench"}],"stream":true}"#;
/// CPU-bound work of the exec job: hash 16 MB of zeros.
const CPU_SCRIPT: &str = "head -c 16000000 /dev/zero | sha256sum";

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
}

fn sse_events() -> Vec<Vec<u8>> {
    (0..EVENTS)
        .map(|i| {
            let mut ev = format!("data: {{\"i\":{i},\"t\":\"");
            while ev.len() < EVENT_BYTES - 5 {
                ev.push('x');
            }
            ev.push_str("\"}\n\n");
            ev.into_bytes()
        })
        .collect()
}

fn openai_sse(c: &mut Criterion) {
    let rt = runtime();
    let events = sse_events();
    let total: usize = events.iter().map(Vec::len).sum();
    let up = rt.block_on(Upstream::start(move |_| Script::Sse { events: events.clone(), gate: None }));
    let pricer = Arc::new(Pricer::new(&PricingConfig::default()).expect("pricer"));
    let backend = Arc::new(
        OpenAiBackend::new(
            &OpenAiConfig { base_url: up.base_url(), api_key: "bench".into(), ..OpenAiConfig::default() },
            pricer,
        )
        .expect("backend"),
    );
    let client = build_http_client(Duration::from_secs(5), Vec::new()).expect("client");
    let uri: http::Uri = format!("{}/v1/chat/completions", up.base_url()).parse().expect("uri");
    let job = JobSpec::new(
        TASK_KIND_CHAT_COMPLETIONS,
        "gpt-5.2",
        Bytes::from_static(CHAT_STREAM.as_bytes()),
        CONTENT_TYPE_JSON,
    );

    // Both measured paths run their consumer in a spawned task on the runtime's workers, so
    // they pay the same scheduling costs. Each returns (time to first byte, bytes).
    let direct = {
        let client = client.clone();
        let uri = uri.clone();
        move || {
            let client = client.clone();
            let uri = uri.clone();
            async move {
                tokio::spawn(async move {
                    let start = Instant::now();
                    let req = http::Request::post(uri)
                        .header("authorization", "Bearer bench")
                        .header("content-type", CONTENT_TYPE_JSON)
                        .body(Full::new(Bytes::from_static(CHAT_STREAM.as_bytes())))
                        .expect("request");
                    let mut body = client.request(req).await.expect("response").into_body();
                    let mut first = None;
                    let mut n = 0;
                    while let Some(frame) = body.frame().await {
                        if let Ok(data) = frame.expect("frame").into_data() {
                            first.get_or_insert_with(|| start.elapsed());
                            n += data.len();
                        }
                    }
                    (first.expect("some data"), n)
                })
                .await
                .expect("join")
            }
        }
    };
    let through_backend = {
        let backend = Arc::clone(&backend);
        move || {
            let backend = Arc::clone(&backend);
            let job = job.clone();
            async move {
                tokio::spawn(async move {
                    let start = Instant::now();
                    let (tx, mut rx) = mpsc::channel(64);
                    let exec = backend.execute(&job, tx, CancellationToken::new());
                    let consume = async {
                        let mut first = None;
                        let mut n = 0;
                        while let Some(chunk) = rx.recv().await {
                            first.get_or_insert_with(|| start.elapsed());
                            n += chunk.len();
                        }
                        (first.expect("some data"), n)
                    };
                    let (res, out) = tokio::join!(exec, consume);
                    res.expect("job");
                    out
                })
                .await
                .expect("join")
            }
        }
    };

    let mut g = c.benchmark_group("openai_sse_ttfb");
    g.sample_size(30);
    g.bench_function("direct_client", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut sum = Duration::ZERO;
                for _ in 0..iters {
                    sum += direct().await.0;
                }
                sum
            })
        })
    });
    g.bench_function("openai_backend", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut sum = Duration::ZERO;
                for _ in 0..iters {
                    sum += through_backend().await.0;
                }
                sum
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("openai_sse_stream");
    g.sample_size(30);
    g.throughput(Throughput::Bytes(total as u64));
    g.bench_function("direct_client", |b| {
        b.iter(|| {
            let (_, n) = rt.block_on(direct());
            assert_eq!(n, total);
        })
    });
    g.bench_function("openai_backend", |b| {
        b.iter(|| {
            let (_, n) = rt.block_on(through_backend());
            assert_eq!(n, total);
        })
    });
    g.finish();
    drop(up);
}

fn exec_cpu(c: &mut Criterion) {
    let rt = runtime();
    let mut pricing = PricingConfig::default();
    pricing.models.insert("local".into(), ModelConfig { max_output_tokens: None, price: ModelPrice::BUILTIN_GPT_5_2 });
    let pricer = Arc::new(Pricer::new(&pricing).expect("pricer"));
    let backend = Arc::new(
        ExecBackend::new(
            &ExecConfig {
                commands: vec![ExecCommandConfig {
                    task_kind: "exec.bench.v1".into(),
                    models: vec!["local".into()],
                    argv: vec!["sh".into(), "-c".into(), CPU_SCRIPT.into()],
                    env: BTreeMap::new(),
                    working_dir: None,
                    content_type: None,
                    limits: None,
                }],
                limits: ExecLimits::default(),
                path: None,
            },
            pricer,
        )
        .expect("backend"),
    );
    let job = JobSpec::new("exec.bench.v1", "local", Bytes::from_static(b"x"), "text/plain");

    let mut g = c.benchmark_group("exec_cpu_jobs");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(1));
    g.bench_function("direct_spawn_no_limits", |b| {
        b.iter(|| {
            rt.block_on(async {
                let out = tokio::process::Command::new("sh").args(["-c", CPU_SCRIPT]).output().await.expect("spawn");
                assert!(out.status.success());
            })
        })
    });
    for n in [1u64, 2, 4] {
        g.throughput(Throughput::Elements(n));
        g.bench_with_input(BenchmarkId::new("exec_backend", n), &n, |b, &n| {
            b.iter(|| {
                rt.block_on(async {
                    let mut set = tokio::task::JoinSet::new();
                    for _ in 0..n {
                        let b = Arc::clone(&backend);
                        let j = job.clone();
                        set.spawn(async move {
                            let (tx, mut rx) = mpsc::channel(4);
                            let drain = async { while rx.recv().await.is_some() {} };
                            let (res, ()) = tokio::join!(b.execute(&j, tx, CancellationToken::new()), drain);
                            res.expect("job")
                        });
                    }
                    while let Some(r) = set.join_next().await {
                        assert!(r.expect("join").len > 0);
                    }
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, openai_sse, exec_cpu);
criterion_main!(benches);
