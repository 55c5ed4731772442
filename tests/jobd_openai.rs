//! The OpenAI-compatible backend against a local upstream on 127.0.0.1.

#[path = "jobd_upstream.rs"]
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lcp::jobd::backend::openai::{OpenAiBackend, OpenAiConfig};
use lcp::jobd::backend::{
    ComputeBackend, ComputeError, JobOutcome, JobSpec, CONTENT_TYPE_JSON, CONTENT_TYPE_SSE, MAX_ERROR_BODY_BYTES,
    TASK_KIND_CHAT_COMPLETIONS, TASK_KIND_RESPONSES,
};
use lcp::jobd::pricing::{Pricer, PricingConfig};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use upstream::{chat_sse_events, Event, Script, Upstream};

const LIMIT: Duration = Duration::from_secs(10);
const CHAT_STREAM: &str = r#"{"model":"gpt-5.2","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
const CHAT: &str = r#"{"model":"gpt-5.2","messages":[{"role":"user","content":"hi"}]}"#;

fn backend_with(up: &Upstream, tweak: impl FnOnce(&mut OpenAiConfig)) -> Arc<OpenAiBackend> {
    let pricer = Arc::new(Pricer::new(&PricingConfig::default()).expect("pricer"));
    let mut config = OpenAiConfig { base_url: up.base_url(), api_key: "test-key".into(), ..OpenAiConfig::default() };
    tweak(&mut config);
    Arc::new(OpenAiBackend::new(&config, pricer).expect("backend"))
}

fn job(kind: &str, body: &str) -> JobSpec {
    JobSpec::new(kind, "gpt-5.2", Bytes::from(body.to_owned()), CONTENT_TYPE_JSON)
}

type Running = tokio::task::JoinHandle<Result<JobOutcome, ComputeError>>;

fn spawn_job(
    backend: &Arc<OpenAiBackend>,
    spec: JobSpec,
    capacity: usize,
) -> (Running, mpsc::Receiver<Bytes>, CancellationToken) {
    let (tx, rx) = mpsc::channel(capacity);
    let cancel = CancellationToken::new();
    let b = Arc::clone(backend);
    let c = cancel.clone();
    let task = tokio::spawn(async move { b.execute(&spec, tx, c).await });
    (task, rx, cancel)
}

async fn finish(task: Running) -> Result<JobOutcome, ComputeError> {
    tokio::time::timeout(LIMIT, task).await.expect("job ends within the limit").expect("job task did not panic")
}

async fn drain(rx: &mut mpsc::Receiver<Bytes>) -> Vec<u8> {
    let mut all = Vec::new();
    while let Some(c) = tokio::time::timeout(LIMIT, rx.recv()).await.expect("chunk or close within the limit") {
        all.extend_from_slice(&c);
    }
    all
}

#[tokio::test]
async fn sse_first_token_reaches_receiver_before_second_is_sent() {
    let events = chat_sse_events(&["Hel", "lo", " world"]);
    let gate = Arc::new(Semaphore::new(0));
    let script_events = events.clone();
    let script_gate = Arc::clone(&gate);
    let mut up =
        Upstream::start(move |_| Script::Sse { events: script_events.clone(), gate: Some(Arc::clone(&script_gate)) })
            .await;
    let backend = backend_with(&up, |_| {});
    let (task, mut rx, _cancel) = spawn_job(&backend, job(TASK_KIND_CHAT_COMPLETIONS, CHAT_STREAM), 16);

    // The server holds every later event until the gate opens, which only happens after the
    // first token has arrived here.
    let first = tokio::time::timeout(LIMIT, rx.recv())
        .await
        .expect("first token without waiting for later ones")
        .expect("channel open");
    assert_eq!(&first[..], &events[0][..]);
    assert_eq!(gate.available_permits(), 0);
    gate.add_permits(events.len());

    let mut all = first.to_vec();
    all.extend(drain(&mut rx).await);
    let outcome = finish(task).await.expect("job succeeds");
    assert_eq!(all, events.concat());
    assert_eq!(outcome.len, all.len() as u64);
    assert_eq!(outcome.sha256, <[u8; 32]>::from(Sha256::digest(&all)));
    assert_eq!(outcome.content_type, CONTENT_TYPE_SSE);
    assert_eq!(outcome.content_encoding, "identity");

    let req = up.requests.recv().await.expect("request recorded");
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/v1/chat/completions");
    assert_eq!(req.body, CHAT_STREAM.as_bytes());
    assert_eq!(req.header("authorization"), Some("Bearer test-key"));
    assert_eq!(req.header("content-type"), Some(CONTENT_TYPE_JSON));
    assert_eq!(req.header("accept"), Some("*/*"));
}

#[tokio::test]
async fn json_response_passes_through_byte_for_byte() {
    // Odd spacing and key order must survive untouched.
    let body = br#"{ "id":"resp_1",  "output":[{"type":"message"}] , "z":1}"#.to_vec();
    let reply = body.clone();
    let mut up = Upstream::start(move |_| Script::Respond {
        status: 200,
        content_type: "application/json",
        body: reply.clone(),
    })
    .await;
    let backend = backend_with(&up, |c| c.base_url = format!("{}/v1/", c.base_url));
    let input = r#"{"model":"gpt-5.2","input":"hello"}"#;
    let (task, mut rx, _cancel) = spawn_job(&backend, job(TASK_KIND_RESPONSES, input), 4);
    let got = drain(&mut rx).await;
    let outcome = finish(task).await.expect("job succeeds");
    assert_eq!(got, body);
    assert_eq!(outcome.content_type, CONTENT_TYPE_JSON);
    assert_eq!(outcome.len, body.len() as u64);
    let req = up.requests.recv().await.expect("request recorded");
    assert_eq!(req.path, "/v1/responses");
    assert_eq!(req.body, input.as_bytes());
}

#[tokio::test]
async fn upstream_statuses_map_to_lcp_codes_with_capped_body() {
    let long_error = format!("{{\"error\":\"{}\"}}", "e".repeat(3000));
    for (status, code) in [(400u16, 8u16), (401, 5), (403, 5), (429, 7), (500, 7)] {
        let body = long_error.clone().into_bytes();
        let up =
            Upstream::start(move |_| Script::Respond { status, content_type: "application/json", body: body.clone() })
                .await;
        let backend = backend_with(&up, |_| {});
        let (task, mut rx, _cancel) = spawn_job(&backend, job(TASK_KIND_CHAT_COMPLETIONS, CHAT), 4);
        assert!(drain(&mut rx).await.is_empty(), "no result bytes on {status}");
        match finish(task).await {
            Err(e @ ComputeError::UpstreamStatus { .. }) => {
                assert_eq!(e.lcp_error_code(), code, "status {status}");
                let ComputeError::UpstreamStatus { status: s, body } = &e else { unreachable!("matched above") };
                assert_eq!(*s, status);
                assert!(body.starts_with("{\"error\":\"eee"));
                assert!(body.len() <= MAX_ERROR_BODY_BYTES + '…'.len_utf8());
                assert!(body.ends_with('…'));
            }
            other => panic!("status {status}: unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn oversized_response_is_cut_with_too_large() {
    let up = Upstream::start(|_| Script::Big { len: 3 * 1024 * 1024 }).await;
    let backend = backend_with(&up, |c| c.max_response_bytes = 1024 * 1024);
    let (task, mut rx, _cancel) = spawn_job(&backend, job(TASK_KIND_CHAT_COMPLETIONS, CHAT), 4);
    assert!(drain(&mut rx).await.is_empty(), "nothing of a too large body is sent");
    match finish(task).await {
        Err(e @ ComputeError::OutputTooLarge { limit: 1_048_576 }) => {
            assert_eq!(e.lcp_error_code(), 7)
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn streamed_response_stops_at_the_job_cap() {
    let mut up = Upstream::start(|_| Script::Endless).await;
    let backend = backend_with(&up, |_| {});
    let mut spec = job(TASK_KIND_CHAT_COMPLETIONS, CHAT_STREAM);
    spec.max_output_bytes = Some(10_000);
    let (task, mut rx, _cancel) = spawn_job(&backend, spec, 1024);
    let got = drain(&mut rx).await;
    assert!(!got.is_empty() && got.len() <= 10_000, "sent {}", got.len());
    assert!(matches!(finish(task).await, Err(ComputeError::OutputTooLarge { limit: 10_000 })));
    up.wait_for(Event::ClientClosed, LIMIT).await;
}

#[tokio::test]
async fn hung_upstream_hits_the_first_byte_bound() {
    let mut up = Upstream::start(|_| Script::Hang).await;
    let backend = backend_with(&up, |c| c.first_byte_timeout_secs = 1);
    let started = std::time::Instant::now();
    let (task, _rx, _cancel) = spawn_job(&backend, job(TASK_KIND_CHAT_COMPLETIONS, CHAT), 4);
    match finish(task).await {
        Err(e @ ComputeError::Timeout { .. }) => assert_eq!(e.lcp_error_code(), 7),
        other => panic!("unexpected {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_secs(1));
    // The abandoned request's connection is closed.
    up.wait_for(Event::ClientClosed, LIMIT).await;
}

#[tokio::test]
async fn cancel_mid_stream_closes_the_upstream_connection() {
    let mut up = Upstream::start(|_| Script::Endless).await;
    let backend = backend_with(&up, |_| {});
    let (task, mut rx, cancel) = spawn_job(&backend, job(TASK_KIND_CHAT_COMPLETIONS, CHAT_STREAM), 2);
    let first = tokio::time::timeout(LIMIT, rx.recv()).await.expect("first event").expect("channel open");
    assert!(first.starts_with(b"data: "));
    cancel.cancel();
    assert!(matches!(finish(task).await, Err(ComputeError::Cancelled)));
    up.wait_for(Event::ClientClosed, LIMIT).await;
}

#[tokio::test]
async fn cancel_before_headers_closes_the_upstream_connection() {
    let mut up = Upstream::start(|_| Script::Hang).await;
    let backend = backend_with(&up, |_| {});
    let (task, _rx, cancel) = spawn_job(&backend, job(TASK_KIND_CHAT_COMPLETIONS, CHAT), 2);
    up.wait_for(Event::Request("/v1/chat/completions".into()), LIMIT).await;
    cancel.cancel();
    assert!(matches!(finish(task).await, Err(ComputeError::Cancelled)));
    up.wait_for(Event::ClientClosed, LIMIT).await;
}

#[tokio::test]
async fn empty_body_is_unavailable() {
    let up =
        Upstream::start(|_| Script::Respond { status: 200, content_type: "application/json", body: Vec::new() }).await;
    let backend = backend_with(&up, |_| {});
    let (task, _rx, _cancel) = spawn_job(&backend, job(TASK_KIND_CHAT_COMPLETIONS, CHAT), 2);
    match finish(task).await {
        Err(e @ ComputeError::EmptyOutput) => assert_eq!(e.lcp_error_code(), 7),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn unreachable_upstream_is_unavailable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let pricer = Arc::new(Pricer::new(&PricingConfig::default()).expect("pricer"));
    let backend = OpenAiBackend::new(
        &OpenAiConfig { base_url: format!("http://{addr}"), api_key: "k".into(), ..OpenAiConfig::default() },
        pricer,
    )
    .expect("backend");
    let (tx, _rx) = mpsc::channel(1);
    let res = tokio::time::timeout(
        LIMIT,
        backend.execute(&job(TASK_KIND_CHAT_COMPLETIONS, CHAT), tx, CancellationToken::new()),
    )
    .await
    .expect("ends");
    match res {
        Err(e @ ComputeError::Unavailable(_)) => assert_eq!(e.lcp_error_code(), 7),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn unsupported_kind_and_model_are_code_2_without_a_request() {
    let mut up = Upstream::start(|_| Script::Hang).await;
    let backend = backend_with(&up, |_| {});
    let (tx, _rx) = mpsc::channel(1);
    let err = backend
        .execute(&job("llm.chat", CHAT), tx.clone(), CancellationToken::new())
        .await
        .expect_err("unsupported kind");
    assert_eq!(err.lcp_error_code(), 2);
    let mut other_model = job(TASK_KIND_CHAT_COMPLETIONS, CHAT);
    other_model.model = "other".into();
    let err = backend.execute(&other_model, tx, CancellationToken::new()).await.expect_err("unsupported model");
    assert_eq!(err.lcp_error_code(), 2);
    assert!(up.requests.try_recv().is_err(), "nothing reached the upstream");
}

/// A one-connection HTTPS server on 127.0.0.1 with a fresh self-signed certificate; answers
/// one request with `body`. Returns its address and the certificate's PEM.
async fn tls_upstream(body: &'static [u8]) -> (std::net::SocketAddr, String) {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                continue; // a client that rejects the certificate
            };
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = tls.write_all(reply.as_bytes()).await;
            let _ = tls.write_all(body).await;
            let _ = tls.shutdown().await;
        }
    });
    (addr, certified.cert.pem())
}

#[tokio::test]
async fn https_upstream_works_with_a_configured_root_and_fails_without() {
    let body: &'static [u8] = br#"{"id":"tls-ok"}"#;
    let (addr, pem) = tls_upstream(body).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pem).expect("write ca");
    let pricer = Arc::new(Pricer::new(&PricingConfig::default()).expect("pricer"));
    let config = OpenAiConfig {
        base_url: format!("https://{addr}"),
        api_key: "k".into(),
        ca_file: Some(ca),
        ..OpenAiConfig::default()
    };
    let trusted = Arc::new(OpenAiBackend::new(&config, pricer.clone()).expect("backend"));
    let (task, mut rx, _c) = spawn_job(&trusted, job(TASK_KIND_CHAT_COMPLETIONS, CHAT), 4);
    assert_eq!(drain(&mut rx).await, body);
    finish(task).await.expect("https job succeeds");

    // Only the Mozilla roots: the self-signed upstream is refused (code 7, like a network error).
    let untrusted = Arc::new(
        OpenAiBackend::new(&OpenAiConfig { ca_file: None, ..config.clone() }, pricer.clone()).expect("backend"),
    );
    let (task, _rx, _c) = spawn_job(&untrusted, job(TASK_KIND_CHAT_COMPLETIONS, CHAT), 4);
    match finish(task).await {
        Err(e @ ComputeError::Unavailable(_)) => {
            assert_eq!(e.lcp_error_code(), 7);
            assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
        }
        other => panic!("unexpected {other:?}"),
    }

    // A CA file without certificates is a config error.
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").expect("write");
    assert!(matches!(
        OpenAiBackend::new(&OpenAiConfig { ca_file: Some(empty), ..config }, pricer),
        Err(ComputeError::Config { .. })
    ));
}

/// Follows `backend`'s upstream in a task; returns the receiver of its offers and the stop token.
fn follow(
    backend: &Arc<OpenAiBackend>,
) -> (tokio::sync::watch::Receiver<Vec<lcp::jobd::backend::TaskOffer>>, tokio_util::sync::DropGuard) {
    let rx = backend.offer_updates().expect("the openai backend's offers follow its upstream");
    let stop = CancellationToken::new();
    let b = Arc::clone(backend);
    let s = stop.clone();
    tokio::spawn(async move { b.follow(s).await });
    (rx, stop.drop_guard())
}

/// The task kinds offered for gpt-5.2 once the offers change.
async fn next_offers(rx: &mut tokio::sync::watch::Receiver<Vec<lcp::jobd::backend::TaskOffer>>) -> Vec<String> {
    tokio::time::timeout(LIMIT, rx.changed()).await.expect("offers change within the limit").expect("backend alive");
    rx.borrow_and_update().iter().map(|o| format!("{} {}", o.task_kind, o.model)).collect()
}

#[tokio::test]
async fn an_upstream_without_responses_is_offered_for_chat_and_its_listed_models_only() {
    // llama-cpp-python: lists its one model, rejects the probe body with 422 on chat, has no
    // /v1/responses (404).
    let mut up = Upstream::start_with(upstream::probe_llama_cpp_python(&["gpt-5.2"]), |_| Script::Respond {
        status: 200,
        content_type: "application/json",
        body: br#"{"id":"x"}"#.to_vec(),
    })
    .await;
    let mut pricing = PricingConfig::default();
    pricing.set_prices(
        &lcp::jobd::pricing::parse_model_prices(&["gpt-5.2=1:1".to_owned(), "gpt-4o-mini=1:1".to_owned()])
            .expect("prices"),
    );
    let config = OpenAiConfig {
        base_url: up.base_url(),
        api_key: "test-key".into(),
        models: vec!["gpt-5.2".into(), "gpt-4o-mini".into()],
        ..OpenAiConfig::default()
    };
    let backend =
        Arc::new(OpenAiBackend::new(&config, Arc::new(Pricer::new(&pricing).expect("pricer"))).expect("backend"));
    assert_eq!(backend.offers().len(), 4, "before any probe: what is configured");
    let (mut rx, _stop) = follow(&backend);
    assert_eq!(next_offers(&mut rx).await, [format!("{TASK_KIND_CHAT_COMPLETIONS} gpt-5.2")]);
    // What is not offered is refused before any payment.
    assert!(matches!(
        backend.quote(&job(TASK_KIND_RESPONSES, r#"{"model":"gpt-5.2","input":"hi"}"#)),
        Err(ComputeError::UnsupportedTaskKind { .. })
    ));
    let mut other = job(TASK_KIND_CHAT_COMPLETIONS, CHAT);
    other.model = "gpt-4o-mini".into();
    assert!(matches!(backend.quote(&other), Err(ComputeError::UnsupportedModel { .. })));
    backend.quote(&job(TASK_KIND_CHAT_COMPLETIONS, CHAT)).expect("chat is quoted");
    // The probes: the model list, then each endpoint with an invalid body and the key; no job
    // request reached the upstream.
    let mut probes = Vec::new();
    while probes.len() < 3 {
        let p = tokio::time::timeout(LIMIT, up.probes.recv()).await.expect("probe").expect("running");
        assert_eq!(p.header("authorization"), Some("Bearer test-key"));
        probes.push((p.method, p.path, String::from_utf8_lossy(&p.body).into_owned()));
    }
    assert_eq!(
        probes,
        [
            ("GET".to_owned(), "/v1/models".to_owned(), String::new()),
            ("POST".to_owned(), "/v1/chat/completions".to_owned(), r#"{"model":0,"messages":0,"input":0}"#.to_owned()),
            ("POST".to_owned(), "/v1/responses".to_owned(), r#"{"model":0,"messages":0,"input":0}"#.to_owned()),
        ]
    );
    assert!(up.requests.try_recv().is_err());
}

#[tokio::test]
async fn an_unreachable_upstream_is_offered_again_when_it_comes_back() {
    let mut up = Upstream::start(|_| Script::Respond {
        status: 200,
        content_type: "application/json",
        body: br#"{"id":"x"}"#.to_vec(),
    })
    .await;
    up.stop();
    let backend = backend_with(&up, |c| c.models = vec!["gpt-5.2".into()]);
    let all = [format!("{TASK_KIND_CHAT_COMPLETIONS} gpt-5.2"), format!("{TASK_KIND_RESPONSES} gpt-5.2")];
    let (mut rx, _stop) = follow(&backend);
    // Connection refused at start: nothing offered, nothing quoted.
    assert!(next_offers(&mut rx).await.is_empty());
    assert!(matches!(
        backend.quote(&job(TASK_KIND_CHAT_COMPLETIONS, CHAT)),
        Err(ComputeError::UnsupportedTaskKind { .. })
    ));
    // Back: offered again (the prober retries with backoff).
    up.resume().await;
    assert_eq!(next_offers(&mut rx).await, all);
    // Gone again: the next job cannot connect, which withdraws the offers at once ...
    up.stop();
    let (task, _out, _c) = spawn_job(&backend, job(TASK_KIND_CHAT_COMPLETIONS, CHAT), 4);
    assert!(matches!(finish(task).await, Err(ComputeError::Unavailable(_))));
    assert!(next_offers(&mut rx).await.is_empty());
    // ... until the upstream answers again.
    up.resume().await;
    assert_eq!(next_offers(&mut rx).await, all);
    let (task, mut out, _c) = spawn_job(&backend, job(TASK_KIND_CHAT_COMPLETIONS, CHAT), 4);
    assert_eq!(drain(&mut out).await, br#"{"id":"x"}"#);
    finish(task).await.expect("the job runs");
}

#[tokio::test]
async fn an_upstream_that_refuses_the_key_is_not_offered() {
    let up = Upstream::start_with(
        |_| Script::Respond { status: 401, content_type: "application/json", body: b"{}".to_vec() },
        |_| Script::Respond { status: 401, content_type: "application/json", body: b"{}".to_vec() },
    )
    .await;
    let backend = backend_with(&up, |c| c.models = vec!["gpt-5.2".into()]);
    let (mut rx, _stop) = follow(&backend);
    assert!(next_offers(&mut rx).await.is_empty());
}

/// A generation that lasts longer than every bound in total but never falls silent longer than
/// one: it completes, whole (a bound on the whole request cut it).
#[tokio::test]
async fn a_long_stream_that_keeps_flowing_is_not_cut() {
    let tokens: Vec<String> = (0..8).map(|i| format!("t{i}")).collect();
    let events = chat_sse_events(&tokens.iter().map(String::as_str).collect::<Vec<_>>());
    let ev = events.clone();
    let mut up =
        Upstream::start(move |_| Script::Paced { events: ev.clone(), every: Duration::from_millis(300) }).await;
    let backend = backend_with(&up, |c| {
        c.first_byte_timeout_secs = 1;
        c.idle_timeout_secs = 1;
    });
    let started = std::time::Instant::now();
    let (task, mut rx, _cancel) = spawn_job(&backend, job(TASK_KIND_CHAT_COMPLETIONS, CHAT_STREAM), 4);
    let all = drain(&mut rx).await;
    let outcome = finish(task).await.expect("the whole stream");
    assert!(started.elapsed() > Duration::from_secs(2), "the stream outlasted both bounds");
    assert_eq!(all, events.concat());
    assert_eq!(outcome.len, all.len() as u64);
    up.wait_for(Event::Completed, LIMIT).await;
}

/// Headers and no body byte: the first-byte bound (not the idle one) ends the job; a stream that
/// stalls after its first event hits the idle bound. Both close the upstream connection.
#[tokio::test]
async fn silence_before_the_first_byte_and_mid_stream_is_bounded() {
    let events = chat_sse_events(&["Hel", "lo"]);
    let first = events[0].clone();
    let stall_after_first = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = Arc::clone(&stall_after_first);
    let mut up = Upstream::start(move |_| {
        let events = if s.load(std::sync::atomic::Ordering::SeqCst) { vec![first.clone()] } else { Vec::new() };
        Script::Stall { events }
    })
    .await;
    let backend = backend_with(&up, |c| {
        c.first_byte_timeout_secs = 1;
        c.idle_timeout_secs = 2;
    });
    let (task, mut rx, _cancel) = spawn_job(&backend, job(TASK_KIND_CHAT_COMPLETIONS, CHAT_STREAM), 4);
    match finish(task).await {
        Err(ComputeError::Timeout { what, limit }) => {
            assert_eq!((what, limit), ("upstream's first byte", Duration::from_secs(1)));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(drain(&mut rx).await.is_empty());
    up.wait_for(Event::ClientClosed, LIMIT).await;

    stall_after_first.store(true, std::sync::atomic::Ordering::SeqCst);
    let backend = backend_with(&up, |c| {
        c.first_byte_timeout_secs = 30;
        c.idle_timeout_secs = 1;
    });
    let (task, mut rx, _cancel) = spawn_job(&backend, job(TASK_KIND_CHAT_COMPLETIONS, CHAT_STREAM), 4);
    match finish(task).await {
        Err(e @ ComputeError::Timeout { what, limit }) => {
            assert_eq!((what, limit), ("upstream silence between chunks", Duration::from_secs(1)));
            assert_eq!(e.lcp_error_code(), 7);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(drain(&mut rx).await, events[0], "the event before the stall was forwarded");
    up.wait_for(Event::ClientClosed, LIMIT).await;
}

/// A local upstream that wants no key (llama.cpp, Ollama): a backend without one sends no
/// `Authorization` header, and its jobs run. OpenAI's own API still requires a key.
#[tokio::test]
async fn a_local_upstream_needs_no_api_key() {
    let events = chat_sse_events(&["ok"]);
    let ev = events.clone();
    let mut up = Upstream::start(move |_| Script::Sse { events: ev.clone(), gate: None }).await;
    let backend = backend_with(&up, |c| c.api_key = String::new());
    let (task, mut rx, _cancel) = spawn_job(&backend, job(TASK_KIND_CHAT_COMPLETIONS, CHAT_STREAM), 4);
    let all = drain(&mut rx).await;
    finish(task).await.expect("job succeeds");
    assert_eq!(all, events.concat());
    let req = up.requests.recv().await.expect("request recorded");
    assert_eq!(req.header("authorization"), None);
    let pricer = Arc::new(Pricer::new(&PricingConfig::default()).expect("pricer"));
    let openai = OpenAiConfig { api_key: "  ".into(), ..OpenAiConfig::default() };
    match OpenAiBackend::new(&openai, pricer) {
        Err(e) => assert!(e.to_string().contains("required for api.openai.com"), "{e}"),
        Ok(_) => panic!("OpenAI's API without a key"),
    }
}
