//! The gateway over HTTP against a provider whose deterministic worker echoes the request body:
//! every endpoint, Bearer keys, body and encoding limits, validation, OpenAI-shaped errors, the
//! X-Lcp-* headers, the per-request ceiling, the model map and the daily budget across restarts.

mod gateway_common;

use gateway_common::*;
use lcp::bus::api::lcpd::LcpdApi;
use lcp::jobd::backend::deterministic::DeterministicConfig;
use lcp::jobd::backend::BackendConfig;

const CHAT_URL: &str = "/v1/chat/completions";
const RESP_URL: &str = "/v1/responses";

fn echo_provider() -> ProviderSpec {
    let c = DeterministicConfig { echo: true, ..DeterministicConfig::default() };
    ProviderSpec { backend: BackendConfig::Deterministic(c), ..ProviderSpec::deterministic() }
}

fn is_hex32(s: Option<&str>) -> bool {
    s.is_some_and(|s| s.len() == 64 && hex::decode(s).is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_auth_validation_errors_and_headers() {
    let mut n = net(vec![echo_provider()]).await;
    let cfg = n.gateway_config(|a| a.gateway_api_keys = Some(vec!["sk-a".into(), "sk-b".into()]));
    n.start_gateway(cfg).await;
    let (base, c) = (n.base(), client());
    let url = |p: &str| format!("{base}{p}");
    let auth = [("authorization", "Bearer sk-b")];

    // Health: never authenticated; HEAD has no body.
    let r = call(&c, "GET", &url("/healthz"), &[], "").await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok\n"[..]));
    assert!(r.header("content-type").unwrap_or_default().starts_with("text/plain"));
    let r = call(&c, "HEAD", &url("/healthz"), &[], "").await;
    assert_eq!((r.status, r.body.len()), (200, 0));

    // Keys.
    let r = call(&c, "GET", &url("/v1/models"), &[], "").await;
    r.openai_error(401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"lcp-gateway\""));
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    call(&c, "GET", &url("/v1/models"), &[("authorization", "Bearer sk-c")], "").await.openai_error(401);
    call(&c, "POST", &url(CHAT_URL), &[("authorization", "Basic sk-a")], &chat("x", false)).await.openai_error(401);
    call(&c, "GET", &url("/v1/nothing"), &[], "").await.openai_error(401);

    // Models: from the provider's manifest, OpenAI list shape.
    let r = call(&c, "GET", &url("/v1/models"), &[("authorization", "Bearer sk-a")], "").await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![MODEL]);
    assert_eq!(v["data"][0]["object"], "model");
    assert_eq!(v["data"][0]["owned_by"], "lcp");

    // A chat job: the body reaches the provider byte for byte (odd spacing kept), the answer
    // carries the job's identity.
    let body = format!(r#"{{ "model":"{MODEL}",  "messages":[{{"role":"user","content":"héllo"}}] , "z":1}}"#);
    let r = call(&c, "POST", &url(CHAT_URL), &auth, &body).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.body, body.as_bytes());
    assert!(r.header("content-type").unwrap_or_default().starts_with("application/json"));
    let provider = n.providers[0].id.clone();
    assert_eq!(r.header("x-lcp-peer-id"), Some(provider.as_str()));
    assert!(is_hex32(r.header("x-lcp-job-id")) && is_hex32(r.header("x-lcp-terms-hash")), "{:?}", r.headers);
    let price: u64 = r.header("x-lcp-price-msat").and_then(|p| p.parse().ok()).expect("price header");
    assert!(price > 0);
    // The headers are the job's, as the requester node recorded it.
    let job_id: [u8; 32] = hex::decode(r.header("x-lcp-job-id").unwrap()).unwrap().try_into().unwrap();
    let rows = job_rows(&n.rc, job_id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].state.as_str(), rows[0].price_msat), ("done", price));
    assert_eq!(hex::encode(rows[0].terms_hash), r.header("x-lcp-terms-hash").unwrap());
    assert!(rows[0].preimage.is_some());

    // Responses, JSON.
    let body = format!(r#"{{"model":"{MODEL}","input":"hi"}}"#);
    let r = call(&c, "POST", &url(RESP_URL), &auth, &body).await;
    assert_eq!((r.status, r.body.as_slice()), (200, body.as_bytes()));

    // Streams: SSE with the streaming headers.
    for (path, body, last) in [
        (CHAT_URL, chat("hi there", true), "data: [DONE]\n\n"),
        (RESP_URL, format!(r#"{{"model":"{MODEL}","input":"hi there","stream":true}}"#), "response.completed"),
    ] {
        let r = call(&c, "POST", &url(path), &auth, &body).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert!(r.header("content-type").unwrap_or_default().starts_with("text/event-stream"), "{:?}", r.headers);
        assert_eq!(r.header("cache-control"), Some("no-cache"));
        assert_eq!(r.header("x-accel-buffering"), Some("no"));
        assert_eq!(r.header("x-lcp-peer-id"), Some(provider.as_str()));
        let text = String::from_utf8_lossy(&r.body);
        assert!(text.starts_with("data: ") || text.starts_with("event: "), "{text}");
        assert!(text.contains(last), "{text}");
    }

    // Validation, as the reference does it.
    for (path, body, want) in [
        (CHAT_URL, "not json".to_string(), "not valid JSON"),
        (CHAT_URL, format!(r#"{{"model":"{MODEL}","messages":[]}}"#), "messages"),
        (CHAT_URL, format!(r#"{{"model":" {MODEL}","messages":[1]}}"#), "whitespace"),
        (CHAT_URL, r#"{"messages":[1]}"#.to_string(), "model is required"),
        (CHAT_URL, format!(r#"{{"model":"{MODEL}","messages":[1],"stream":"yes"}}"#), "boolean"),
        (RESP_URL, format!(r#"{{"model":"{MODEL}","input":null}}"#), "input"),
    ] {
        let r = call(&c, "POST", &url(path), &auth, &body).await;
        let msg = r.openai_error(400);
        assert!(msg.contains(want), "{body}: {msg}");
        assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    }
    // An unknown model: OpenAI's 404 model_not_found.
    let r = call(&c, "POST", &url(CHAT_URL), &auth, r#"{"model":"unknown-model","messages":[1]}"#).await;
    let msg = r.openai_error(404);
    assert!(msg.contains("not offered"), "{msg}");
    assert_eq!(r.json()["error"]["code"], "model_not_found");
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    // Methods and paths.
    let r = call(&c, "GET", &url(CHAT_URL), &auth, "").await;
    r.openai_error(405);
    assert_eq!(r.header("allow"), Some("POST"));
    call(&c, "POST", &url("/v1/embeddings"), &auth, "{}").await.openai_error(404);
    // Compressed bodies are refused.
    let gz = [("authorization", "Bearer sk-a"), ("content-encoding", "gzip")];
    let msg = call(&c, "POST", &url(CHAT_URL), &gz, &chat("x", false)).await.openai_error(415);
    assert!(msg.contains("gzip"), "{msg}");
    // Body limit: by declared length, and by what arrives (chunked).
    let addr = n.gateway.unwrap();
    let head = format!(
        "POST {CHAT_URL} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-a\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        1024 * 1024 + 1
    );
    let (status, text) = raw_head(addr, head.as_bytes()).await;
    assert_eq!(status, 413, "{text}");
    let big = 1024 * 1024 + 16;
    let mut req = format!(
        "POST {CHAT_URL} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-a\r\nTransfer-Encoding: chunked\r\n\r\n{big:x}\r\n"
    )
    .into_bytes();
    req.extend(std::iter::repeat_n(b' ', big));
    req.extend_from_slice(b"\r\n0\r\n\r\n");
    let (status, text) = raw_head(addr, &req).await;
    assert_eq!(status, 413, "{text}");
    // Exactly at the limit is accepted (and then judged as JSON).
    let mut at = chat("x", false).into_bytes();
    at.resize(1024 * 1024, b' ');
    let r = call(&c, "POST", &url(CHAT_URL), &auth, std::str::from_utf8(&at).unwrap()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body[..200.min(r.body.len())]));
    n.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn price_ceiling_model_map_and_daily_budget_across_restarts() {
    let mut n = net(vec![echo_provider()]).await;
    let provider = n.providers[0].id.clone();
    let (c, body) = (client(), chat("budget", false));
    let paid_jobs = |rc: lcp::bus::Bus| async move {
        match lcpd(&rc, LcpdApi::ListJobs { limit: 100 }).await.unwrap() {
            LcpdApi::Jobs(rows) => rows.iter().filter(|r| r.preimage.is_some()).count(),
            other => panic!("{other:?}"),
        }
    };

    // No limits: learn the price of this body.
    let cfg = n.gateway_config(|_| {});
    n.start_gateway(cfg).await;
    let r = call(&c, "POST", &format!("{}{CHAT_URL}", n.base()), &[], &body).await;
    assert_eq!(r.status, 200);
    let price: u64 = r.header("x-lcp-price-msat").unwrap().parse().unwrap();
    assert_eq!(paid_jobs(n.rc.clone()).await, 1);

    // A per-request ceiling below the price: refused before anything is paid.
    n.stop_gateway().await;
    let cfg = n.gateway_config(|a| a.gateway_max_price_msat = Some(price - 1));
    n.start_gateway(cfg).await;
    let r = call(&c, "POST", &format!("{}{CHAT_URL}", n.base()), &[], &body).await;
    let msg = r.openai_error(400);
    assert!(msg.contains("ceiling"), "{msg}");
    assert_eq!(paid_jobs(n.rc.clone()).await, 1);

    // The model map: a provider that is not connected gives 503; the connected one serves.
    n.stop_gateway().await;
    let absent = format!("02{}", "11".repeat(32));
    let cfg = n.gateway_config(|a| a.gateway_model_map = Some(vec![format!("{MODEL}={absent}")]));
    n.start_gateway(cfg).await;
    let r = call(&c, "POST", &format!("{}{CHAT_URL}", n.base()), &[], &body).await;
    let msg = r.openai_error(503);
    assert!(msg.contains("not connected"), "{msg}");
    assert_eq!(r.json()["error"]["type"], "server_error");
    n.stop_gateway().await;
    let cfg = n.gateway_config(|a| a.gateway_model_map = Some(vec![format!("{MODEL}={provider}")]));
    n.start_gateway(cfg).await;
    let r = call(&c, "POST", &format!("{}{CHAT_URL}", n.base()), &[], &body).await;
    assert_eq!((r.status, r.header("x-lcp-peer-id")), (200, Some(provider.as_str())));
    assert_eq!(paid_jobs(n.rc.clone()).await, 2);

    // A daily budget of 3.5 prices: two jobs were paid today (kept in gateway.db across the
    // restarts), one more fits, the next is refused with 429 and nothing is paid for it.
    n.stop_gateway().await;
    let cfg = n.gateway_config(|a| a.gateway_daily_budget_msat = Some(price * 3 + price / 2));
    n.start_gateway(cfg).await;
    let r = call(&c, "POST", &format!("{}{CHAT_URL}", n.base()), &[], &body).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = call(&c, "POST", &format!("{}{CHAT_URL}", n.base()), &[], &body).await;
    let msg = r.openai_error(429);
    assert!(msg.contains("daily budget"), "{msg}");
    assert_eq!(r.json()["error"]["type"], "insufficient_quota");
    assert_eq!(paid_jobs(n.rc.clone()).await, 3);
    // Still refused after another restart.
    n.stop_gateway().await;
    let cfg = n.gateway_config(|a| a.gateway_daily_budget_msat = Some(price * 3 + price / 2));
    n.start_gateway(cfg).await;
    call(&c, "POST", &format!("{}{CHAT_URL}", n.base()), &[], &body).await.openai_error(429);
    assert_eq!(paid_jobs(n.rc.clone()).await, 3);
    n.close();
}
