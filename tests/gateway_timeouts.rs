//! The gateway's time-outs bound silence, not length, end to end: requester node with the gateway
//! (first-byte bound 3 s, idle bound 2 s) -> provider node whose openai worker calls a local
//! stand-in upstream. A stream that lasts longer than both bounds but never falls silent for long
//! completes on both sides; an upstream that never answers gives 504 before the first byte; one
//! that stalls mid-stream ends the SSE body with a `timeout` error event. Either way the job is
//! cancelled at the provider (its upstream request closed) and both records say why.

mod gateway_common;
#[path = "jobd_upstream.rs"]
mod upstream;

use gateway_common::*;
use http_body_util::BodyExt;
use lcp::bus::api::lcpd::{JobRole, LcpdApi};
use lcp::testkit::{poll_until, PATIENCE};
use std::time::{Duration, Instant};
use upstream::{chat_sse_events, Event, Script, Upstream};

const CHAT_URL: &str = "/v1/chat/completions";
const FIRST_BYTE_SECS: u64 = 3;
const IDLE_SECS: u64 = 2;
const FIRST_BYTE_REASON: &str = "gateway time-out: no result in time";
const IDLE_REASON: &str = "gateway time-out: the result stalled";

fn job_id_of(h: &http::HeaderMap) -> [u8; 32] {
    let v = h["x-lcp-job-id"].to_str().expect("ascii");
    hex::decode(v).expect("hex").try_into().expect("32 bytes")
}

/// Waits until the job has `state` on both sides; with `reason`, both records carry it.
async fn job_state_both(n: &Net, job_id: [u8; 32], state: &str, reason: Option<&str>) {
    for (who, c) in [("requester", n.rc.clone()), ("provider", n.providers[0].client.clone())] {
        let row = poll_until(PATIENCE, &format!("{who} job {state}"), || async {
            job_rows(&c, job_id).await.into_iter().find(|r| r.state == state)
        })
        .await;
        let Ok(row) = row else { panic!("{who}: {:?}", job_rows(&c, job_id).await) };
        if let Some(reason) = reason {
            assert_eq!(row.error.as_deref(), Some(reason), "{who}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_outs_bound_silence_answer_504_and_cancel_at_the_provider() {
    let tokens: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
    let long = chat_sse_events(&tokens.iter().map(String::as_str).collect::<Vec<_>>());
    let short = chat_sse_events(&["Hel", "lo"]);
    let (l, s) = (long.clone(), short.clone());
    let mut up = Upstream::start(move |req| {
        let body = String::from_utf8_lossy(&req.body);
        if body.contains("\"long\"") {
            // The model's own pace: the whole stream outlasts both bounds, no silence comes near.
            Script::Paced { events: l.clone(), every: Duration::from_millis(400) }
        } else if body.contains("\"stall\"") {
            Script::Stall { events: vec![s[0].clone()] }
        } else {
            Script::Hang
        }
    })
    .await;
    let mut n = net(vec![ProviderSpec::openai(&up.base_url())]).await;
    let cfg = n.gateway_config(|a| {
        a.gateway_first_byte_timeout_secs = Some(FIRST_BYTE_SECS);
        a.gateway_idle_timeout_secs = Some(IDLE_SECS);
    });
    n.start_gateway(cfg).await;
    let c = client();

    // 1. A long healthy stream is not cut: the client gets every byte and both sides say done.
    let started = Instant::now();
    let r = send(&c, "POST", &format!("{}{CHAT_URL}", n.base()), &[], &chat("long", true)).await;
    assert_eq!(r.status(), 200);
    let job_id = job_id_of(r.headers());
    let body = tokio::time::timeout(T, r.into_body().collect()).await.expect("in time").expect("clean").to_bytes();
    assert!(started.elapsed() > Duration::from_secs(FIRST_BYTE_SECS + 1), "the stream outlasted both bounds");
    assert_eq!(String::from_utf8_lossy(&body), String::from_utf8_lossy(&long.concat()));
    up.wait_for(Event::Completed, T).await;
    job_state_both(&n, job_id, "done", None).await;

    // 2. No first byte in time: 504 in OpenAI's shape, and the job is cancelled at the provider,
    // which closes its upstream request.
    let r = call(&c, "POST", &format!("{}{CHAT_URL}", n.base()), &[], &chat("slow", true)).await;
    let msg = r.openai_error(504);
    assert_eq!(r.json()["error"]["type"], "server_error");
    assert!(msg.contains(&format!("{FIRST_BYTE_SECS}s")), "{msg}");
    up.wait_for(Event::ClientClosed, T).await;
    let rc = n.rc.clone();
    let job_id = poll_until(PATIENCE, "the timed-out job", || async {
        match lcpd(&rc, LcpdApi::ListJobs { limit: 10 }).await.ok()? {
            LcpdApi::Jobs(rows) => rows
                .into_iter()
                .find(|r| r.role == JobRole::Requester && r.error.as_deref() == Some(FIRST_BYTE_REASON))
                .map(|r| r.job_id),
            _ => None,
        }
    })
    .await
    .expect("the requester's record says why");
    job_state_both(&n, job_id, "cancelled", Some(FIRST_BYTE_REASON)).await;

    // 3. A stream that stalls after its first event: a `timeout` error event ends the body
    // cleanly, and the job is cancelled at the provider.
    let r = send(&c, "POST", &format!("{}{CHAT_URL}", n.base()), &[], &chat("stall", true)).await;
    assert_eq!(r.status(), 200);
    let job_id = job_id_of(r.headers());
    let body = tokio::time::timeout(T, r.into_body().collect()).await.expect("in time").expect("clean").to_bytes();
    let text = String::from_utf8(body.to_vec()).expect("utf-8");
    assert!(text.starts_with(std::str::from_utf8(&short[0]).unwrap()), "{text}");
    let last = text.trim_end().rsplit("\n\n").next().expect("an event");
    let data = last.strip_prefix("data: ").unwrap_or_else(|| panic!("an error event at the end: {text}"));
    let v: serde_json::Value = serde_json::from_str(data).expect("JSON");
    assert_eq!(v["error"]["code"], "timeout", "{text}");
    assert_eq!(v["error"]["type"], "server_error", "{text}");
    up.wait_for(Event::ClientClosed, T).await;
    job_state_both(&n, job_id, "cancelled", Some(IDLE_REASON)).await;
    n.close();
}
