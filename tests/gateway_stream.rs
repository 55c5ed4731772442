//! Streaming through the gateway, end to end: requester node -> provider node whose openai worker
//! calls a local stand-in upstream. The upstream holds every SSE event after the first until the
//! test opens a gate, so the first chunk reaching the HTTP client proves per-chunk flushing. A
//! client that goes away (during a stream, or while waiting for a JSON answer) cancels its job at
//! the provider with the reason "request canceled", and so does stopping the gateway mid-stream.

mod gateway_common;
#[path = "jobd_upstream.rs"]
mod upstream;

use gateway_common::*;
use http_body_util::BodyExt;
use lcp::bus::api::lcpd::LcpdApi;
use lcp::testkit::{poll_until, PATIENCE};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use upstream::{chat_sse_events, Event, Script, Upstream};

const CHAT_URL: &str = "/v1/chat/completions";

/// Waits until the provider has the job cancelled with the gateway's reason.
async fn provider_cancelled(n: &Net, job_id: [u8; 32]) {
    let pc = n.providers[0].client.clone();
    let row = poll_until(PATIENCE, "provider job cancelled", || async {
        job_rows(&pc, job_id).await.into_iter().find(|r| r.state == "cancelled")
    })
    .await
    .expect("the provider's job is cancelled");
    assert_eq!(row.error.as_deref(), Some("request canceled"));
}

/// Reads from a raw connection until `needle` has arrived; returns everything read.
async fn read_until(s: &mut tokio::net::TcpStream, needle: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(needle.len()).any(|w| w == needle) {
        let n = tokio::time::timeout(T, s.read(&mut buf)).await.expect("data in time").expect("read");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// Sends a chat completion request on a raw connection (so the test can drop it) and returns the
/// connection.
async fn post_chat(addr: std::net::SocketAddr, content: &str, stream: bool) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = chat(content, stream);
    let req = format!(
        "POST {CHAT_URL} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    s
}

fn job_id_of(head: &[u8]) -> [u8; 32] {
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    let line = text.lines().find(|l| l.starts_with("x-lcp-job-id:")).expect("job id header");
    hex::decode(line["x-lcp-job-id:".len()..].trim()).expect("hex").try_into().expect("32 bytes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_chunk_arrives_before_the_job_ends_and_disconnects_cancel() {
    let events = chat_sse_events(&["Hel", "lo", " world"]);
    let gate = Arc::new(Semaphore::new(0));
    let hang = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ev, g, h) = (events.clone(), Arc::clone(&gate), Arc::clone(&hang));
    let mut up = Upstream::start(move |_| {
        if h.load(std::sync::atomic::Ordering::SeqCst) {
            Script::Hang
        } else {
            Script::Sse { events: ev.clone(), gate: Some(Arc::clone(&g)) }
        }
    })
    .await;
    let mut n = net(vec![ProviderSpec::openai(&up.base_url())]).await;
    let cfg = n.gateway_config(|_| {});
    n.start_gateway(cfg).await;
    let c = client();

    // 1. Flushing: the first event reaches the client while the upstream still holds the rest.
    let r = send(&c, "POST", &format!("{}{CHAT_URL}", n.base()), &[], &chat("hi", true)).await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert!(h["content-type"].to_str().unwrap().starts_with("text/event-stream"), "{h:?}");
    assert_eq!(h["x-lcp-peer-id"].to_str().unwrap(), n.providers[0].id);
    let mut body = r.into_body();
    let mut first = Vec::new();
    while first.len() < events[0].len() {
        let f = tokio::time::timeout(T, body.frame()).await.expect("first chunk in time");
        let f = f.expect("stream open").expect("frame");
        if let Ok(d) = f.into_data() {
            first.extend_from_slice(&d);
        }
    }
    assert_eq!(first, events[0], "the first chunk is the first event alone");
    assert_eq!(gate.available_permits(), 0, "nothing released the later events yet");
    gate.add_permits(events.len() - 1);
    let rest = tokio::time::timeout(T, body.collect()).await.expect("rest in time").expect("rest").to_bytes();
    first.extend_from_slice(&rest);
    assert_eq!(first, events.concat());
    let req = up.requests.recv().await.expect("upstream request");
    assert_eq!(req.body, chat("hi", true).as_bytes(), "the body reached the upstream byte for byte");
    up.wait_for(Event::Completed, T).await;

    // 2. A client that goes away mid-stream: the job is cancelled at the provider, which closes
    // its upstream request.
    let addr = n.gateway.unwrap();
    let mut s = post_chat(addr, "bye", true).await;
    let got = read_until(&mut s, &events[0]).await;
    let job_id = job_id_of(&got);
    assert_eq!(gate.available_permits(), 0);
    drop(s);
    provider_cancelled(&n, job_id).await;
    up.wait_for(Event::ClientClosed, T).await;
    let rows = job_rows(&n.rc, job_id).await;
    assert_eq!(rows[0].state, "cancelled");

    // 3. A client that goes away while waiting for a JSON answer (nothing streamed to it yet):
    // cancelled as well, once the job is paid and running.
    hang.store(true, std::sync::atomic::Ordering::SeqCst);
    let s = post_chat(addr, "wait", false).await;
    // The upstream has the request: the job is paid and running at the provider.
    loop {
        match up.next_event(T).await {
            Event::Request(_) => break,
            _ => continue,
        }
    }
    let rc = n.rc.clone();
    let job_id = poll_until(PATIENCE, "the running job", || async {
        match lcpd(&rc, LcpdApi::ListJobs { limit: 10 }).await.ok()? {
            LcpdApi::Jobs(rows) => rows.into_iter().find(|r| r.state == "awaiting_result").map(|r| r.job_id),
            _ => None,
        }
    })
    .await
    .expect("a job awaiting its result");
    drop(s);
    provider_cancelled(&n, job_id).await;
    up.wait_for(Event::ClientClosed, T).await;

    // 4. The gateway stops while a stream is open: the connection gets a short grace, then the
    // job is cancelled as well, and the gateway leaves the bus within the node's shutdown grace.
    hang.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut s = post_chat(addr, "shutdown", true).await;
    let got = read_until(&mut s, &events[0]).await;
    let job_id = job_id_of(&got);
    n.stop_gateway().await;
    provider_cancelled(&n, job_id).await;
    drop(s);
    n.close();
}

/// Waits until the job has this state on both sides.
async fn job_state_both(n: &Net, job_id: [u8; 32], state: &str) {
    for (who, c) in [("requester", n.rc.clone()), ("provider", n.providers[0].client.clone())] {
        let rows = poll_until(PATIENCE, &format!("{who} job {state}"), || async {
            let rows = job_rows(&c, job_id).await;
            rows.iter().any(|r| r.state == state).then_some(rows)
        })
        .await;
        assert!(rows.is_ok(), "{who}: {:?}", job_rows(&c, job_id).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_closing_after_done_was_served_and_a_dying_upstream_ends_with_an_error_event() {
    // The upstream sends its first event, then `[DONE]` after one permit, then holds its response
    // open (a keep-alive comment waits for a second permit): the client has everything while the
    // job has not ended yet, as with a long stream whose end is still on its way.
    let mut events = chat_sse_events(&["Hel", "lo"]);
    events.push(b": keep-alive\n\n".to_vec());
    let gate = Arc::new(Semaphore::new(0));
    let (die, dying) = (Arc::new(Semaphore::new(0)), Arc::new(std::sync::atomic::AtomicBool::new(false)));
    let (ev, g, d, dy) = (events.clone(), Arc::clone(&gate), Arc::clone(&die), Arc::clone(&dying));
    let mut up = Upstream::start(move |_| {
        if dy.load(std::sync::atomic::Ordering::SeqCst) {
            Script::SseThenDie { events: ev[..2].to_vec(), gate: Arc::clone(&d) }
        } else {
            Script::Sse { events: ev.clone(), gate: Some(Arc::clone(&g)) }
        }
    })
    .await;
    let mut n = net(vec![ProviderSpec::openai(&up.base_url())]).await;
    let cfg = n.gateway_config(|_| {});
    n.start_gateway(cfg).await;
    let addr = n.gateway.unwrap();

    // 1. The OpenAI SDKs close the connection as soon as they read `[DONE]`: served, not gone.
    let mut s = post_chat(addr, "done", true).await;
    let got = read_until(&mut s, &events[0]).await;
    let job_id = job_id_of(&got);
    gate.add_permits(2);
    read_until(&mut s, b"data: [DONE]\n\n").await;
    drop(s);
    // The upstream still holds its last bytes: the job has not ended anywhere.
    let state = job_rows(&n.rc, job_id).await[0].state.clone();
    assert!(["paying", "awaiting_result"].contains(&state.as_str()), "{state}");
    gate.add_permits(1);
    up.wait_for(Event::Completed, T).await;
    job_state_both(&n, job_id, "done").await;

    // 2. The upstream dies mid-stream: the client gets an error event in OpenAI's shape and a
    // clean end of the body (not a cut connection).
    dying.store(true, std::sync::atomic::Ordering::SeqCst);
    let c = client();
    let r = send(&c, "POST", &format!("{}{CHAT_URL}", n.base()), &[], &chat("die", true)).await;
    assert_eq!(r.status(), 200);
    let mut body = r.into_body();
    let mut got = Vec::new();
    while got.len() < events[0].len() {
        let f = tokio::time::timeout(T, body.frame()).await.expect("first chunk").expect("open").expect("frame");
        if let Ok(d) = f.into_data() {
            got.extend_from_slice(&d);
        }
    }
    die.add_permits(1);
    let rest = tokio::time::timeout(T, body.collect()).await.expect("end in time").expect("a clean end").to_bytes();
    got.extend_from_slice(&rest);
    let text = String::from_utf8(got).expect("utf-8");
    let last = text.trim_end().rsplit("\n\n").next().expect("an event");
    let data = last.strip_prefix("data: ").unwrap_or_else(|| panic!("an error event at the end: {text}"));
    let v: serde_json::Value = serde_json::from_str(data).expect("JSON");
    assert_eq!(v["error"]["code"], "job_failed", "{text}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{text}");
    n.close();
}
