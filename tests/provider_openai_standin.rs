//! The README's one-command provider against a real upstream, with the upstream replaced by a
//! local stand-in of an OpenAI-compatible server (`jobd_upstream.rs`, on 127.0.0.1): the real
//! `lcpnode` binary started with `--compute-backend openai --openai-base-url URL --model-price
//! MODEL=IN:OUT` and `OPENAI_API_KEY` in its environment, no config file. A requester node buys a
//! job from it with `lcp-cli job run`; the result is the stand-in's answer, byte for byte.

#[path = "jobd_upstream.rs"]
mod jobd_upstream;
mod standin_provider;

use jobd_upstream::{Script, Upstream};
use lcp::bus::api::lcpd::{JobRole, LcpdApi};
use lcp::bus::api::Body;
use lcp::bus::ServiceId;
use lcp::testkit::wait_offer;
use standin_provider::Nodes;
use std::collections::BTreeSet;
use std::time::Duration;

const MODEL: &str = "gpt-4o-mini";
const PRICE: &str = "gpt-4o-mini=150000:600000";
const KEY: &str = "sk-standin-0123456789";
const PROMPT: &str = "Say hello over Lightning.";
const ANSWER: &[u8] = br#"{"id":"chatcmpl-standin","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello over Lightning."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":4,"total_tokens":16}}"#;

/// The provider against `up` and a requester with a channel to it.
async fn provider_and_requester(up: &Upstream) -> Nodes {
    standin_provider::provider_and_requester(&format!("{}/v1", up.base_url()), PRICE, KEY, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_command_lcpnode_provider_sells_a_job_answered_by_a_local_openai_compatible_standin() {
    let mut up =
        Upstream::start(|_| Script::Respond { status: 200, content_type: "application/json", body: ANSWER.to_vec() })
            .await;
    let n = provider_and_requester(&up).await;
    let (mut provider, pc, provider_id, requester, rc) = (n.provider, n.pc, n.provider_id, n.requester, n.rc);

    // The provider offers the priced model, and only that one.
    let peer = wait_offer(&rc, &provider_id, MODEL).await.expect("manifest");
    let models: BTreeSet<_> = peer.manifest.tasks.iter().filter_map(|t| t.model.as_deref()).collect();
    assert_eq!(models, BTreeSet::from([MODEL]));

    // `lcp-cli job run`: the result bytes on stdout, the summary on stderr.
    let dir = requester.dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(lcp::testkit::bin_path("lcp-cli"))
            .arg("--datadir")
            .arg(&dir)
            .args(["job", "run", &provider_id, "-m", MODEL, "-p", PROMPT])
            .env_remove("LCP_CONFIG")
            .output()
            .expect("lcp-cli runs")
    })
    .await
    .expect("join");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}\n{}", provider.log("lcpnode"));
    assert_eq!(out.stdout, ANSWER, "{err}");
    assert!(err.contains("sha256(preimage) matches: true"), "{err}");

    // The stand-in saw one chat request, with the key from the environment and the exact body.
    let req = tokio::time::timeout(Duration::from_secs(5), up.requests.recv())
        .await
        .expect("a request reached the stand-in")
        .expect("stand-in running");
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/v1/chat/completions"));
    assert_eq!(req.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    let body: serde_json::Value = serde_json::from_slice(&req.body).expect("JSON body");
    assert_eq!((body["model"].as_str(), body["messages"][0]["content"].as_str()), (Some(MODEL), Some(PROMPT)));
    // `-p` asks for at most 1024 output tokens unless told otherwise.
    assert_eq!(body["max_tokens"].as_u64(), Some(1024));
    assert!(up.requests.try_recv().is_err(), "one upstream request per paid job");

    // The price is the flag's: ceil((input tokens * 150000 + 1024 output tokens * 600000) / 1e6).
    let rows =
        match rc.request(&ServiceId::Lcpd, Body::Lcpd(LcpdApi::ListJobs { limit: 10 }), Duration::from_secs(5)).await {
            Ok(Body::Lcpd(LcpdApi::Jobs(rows))) => rows,
            other => panic!("{other:?}"),
        };
    let job = rows.iter().find(|r| r.role == JobRole::Requester).expect("the requester's job");
    let tokens = (req.body.len() as u64).div_ceil(4);
    assert_eq!(job.price_msat, (tokens * 150_000 + 1024 * 600_000).div_ceil(1_000_000));
    assert_eq!((job.state.as_str(), job.result_len), ("done", Some(ANSWER.len() as u64)));

    rc.close();
    pc.close();
    let status = provider.terminate("lcpnode", Duration::from_secs(15)).expect("lcpnode stops");
    assert!(status.success(), "{status:?}");
    assert!(!provider.log("lcpnode").contains(KEY), "the API key is never logged");
}

/// A provider's failed jobs leave a line in its log (warn, with the job id, the phase and the
/// reason): a paid job whose upstream answers 500, and a quote refused for an unknown model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_jobs_are_logged_at_the_provider_with_job_id_phase_and_reason() {
    let _up = Upstream::start(|_| Script::Respond {
        status: 500,
        content_type: "application/json",
        body: br#"{"error":{"message":"the model crashed"}}"#.to_vec(),
    })
    .await;
    let n = provider_and_requester(&_up).await;
    let (provider, pc, provider_id, requester, rc) = (n.provider, n.pc, n.provider_id, n.requester, n.rc);
    wait_offer(&rc, &provider_id, MODEL).await.expect("manifest");

    let cli = |extra: Vec<String>| {
        let dir = requester.dir.path().to_path_buf();
        let id = provider_id.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(lcp::testkit::bin_path("lcp-cli"))
                .arg("--datadir")
                .arg(&dir)
                .args(["--json", "job", "run", &id, "-m", MODEL])
                .args(extra)
                .env_remove("LCP_CONFIG")
                .output()
                .expect("lcp-cli runs")
        })
    };
    // A paid job whose upstream fails.
    let out = cli(vec!["-p".into(), PROMPT.into()]).await.expect("join");
    assert!(!out.status.success(), "the job failed");
    let rows =
        match rc.request(&ServiceId::Lcpd, Body::Lcpd(LcpdApi::ListJobs { limit: 10 }), Duration::from_secs(5)).await {
            Ok(Body::Lcpd(LcpdApi::Jobs(rows))) => rows,
            other => panic!("{other:?}"),
        };
    let job = rows.iter().find(|r| r.role == JobRole::Requester).expect("the requester's job");
    let id = hex::encode(job.job_id);
    let found = lcp::testkit::wait_until(Duration::from_secs(10), "the provider's warn line", || {
        provider
            .log("lcpnode")
            .lines()
            .any(|l| l.contains(" WARN ") && l.contains("paid job failed") && l.contains(&id))
    });
    let log = provider.log("lcpnode");
    assert!(found.is_ok(), "{log}");
    let line = log.lines().find(|l| l.contains("paid job failed") && l.contains(&id)).unwrap_or_default();
    assert!(line.contains("phase=") && line.contains("running") && line.contains("500"), "{line}");

    // A quote refused before anything is paid: the request asks for more output tokens than the
    // provider sells (only the provider knows its maximum).
    let body = requester.dir.path().join("big.json");
    let json = format!(r#"{{"model":"{MODEL}","messages":[{{"role":"user","content":"x"}}],"max_tokens":100000}}"#);
    std::fs::write(&body, json).expect("body file");
    let out = cli(vec!["-i".into(), body.display().to_string()]).await.expect("join");
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let found = lcp::testkit::wait_until(Duration::from_secs(10), "the provider's refusal line", || {
        provider
            .log("lcpnode")
            .lines()
            .any(|l| l.contains(" WARN ") && l.contains("job refused") && l.contains("quote"))
    });
    assert!(found.is_ok(), "{}", provider.log("lcpnode"));
    rc.close();
    pc.close();
}

/// `lcp-cli job run --job-timeout N` bounds silence, not length: a streamed answer that keeps
/// coming for longer than N (and than the client's own slack of 15 s) arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_run_waits_for_a_long_stream_that_keeps_coming() {
    let tokens: Vec<String> = (0..40).map(|i| format!("t{i} ")).collect();
    let events = jobd_upstream::chat_sse_events(&tokens.iter().map(String::as_str).collect::<Vec<_>>());
    let ev = events.clone();
    let up = Upstream::start(move |_| Script::Paced { events: ev.clone(), every: Duration::from_millis(500) }).await;
    let n = provider_and_requester(&up).await;
    wait_offer(&n.rc, &n.provider_id, MODEL).await.expect("manifest");
    let dir = n.requester.dir.path().to_path_buf();
    let id = n.provider_id.clone();
    let started = std::time::Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(lcp::testkit::bin_path("lcp-cli"))
            .arg("--datadir")
            .arg(&dir)
            .args(["--json", "job", "run", &id, "-m", MODEL, "-p", PROMPT, "--stream", "--job-timeout", "3"])
            .env_remove("LCP_CONFIG")
            .output()
            .expect("lcp-cli runs")
    })
    .await
    .expect("join");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}\n{}", n.provider.log("lcpnode"));
    assert!(started.elapsed() > Duration::from_secs(18), "the stream outlasted the client's former bound");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["result"].as_str().map(str::as_bytes), Some(&events.concat()[..]), "{v}");
    n.rc.close();
    n.pc.close();
}
