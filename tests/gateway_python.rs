//! The official `openai` Python package against the gateway, unchanged but for its base URL:
//! chat completions and responses, JSON and streamed. Requester node -> provider node whose
//! openai worker calls a local stand-in upstream that answers as the OpenAI API documents it.
//! Skipped (with a message) only when `python3` is missing; the package itself is installed by
//! `scripts/deps.sh`.

mod gateway_common;
#[path = "jobd_upstream.rs"]
mod upstream;

use gateway_common::*;
use upstream::{chat_sse_events, Recorded, Script, Upstream};

const TEXT: &str = "Hello from LCP";

fn chat_json() -> Vec<u8> {
    serde_json::json!({
        "id": "chatcmpl-lcp", "object": "chat.completion", "created": 1_700_000_000, "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": TEXT}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    })
    .to_string()
    .into_bytes()
}

fn response_object(status: &str, text: Option<&str>) -> serde_json::Value {
    let output = match text {
        Some(t) => serde_json::json!([{
            "type": "message", "id": "msg_lcp", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": t, "annotations": []}]
        }]),
        None => serde_json::json!([]),
    };
    serde_json::json!({
        "id": "resp_lcp", "object": "response", "created_at": 1_700_000_000, "status": status, "model": MODEL,
        "output": output, "parallel_tool_calls": true, "tool_choice": "auto", "tools": []
    })
}

fn responses_sse() -> Vec<Vec<u8>> {
    let ev = |name: &str, data: serde_json::Value| format!("event: {name}\ndata: {data}\n\n").into_bytes();
    let mut out = vec![ev(
        "response.created",
        serde_json::json!({"type": "response.created", "sequence_number": 0, "response": response_object("in_progress", None)}),
    )];
    for (i, d) in ["Hello", " from", " LCP"].iter().enumerate() {
        out.push(ev(
            "response.output_text.delta",
            serde_json::json!({"type": "response.output_text.delta", "sequence_number": i + 1, "item_id": "msg_lcp",
                "output_index": 0, "content_index": 0, "delta": d}),
        ));
    }
    out.push(ev(
        "response.completed",
        serde_json::json!({"type": "response.completed", "sequence_number": 4,
            "response": response_object("completed", Some(TEXT))}),
    ));
    out
}

/// The stand-in upstream: the answer depends on the endpoint and on `"stream": true`.
fn script(req: &Recorded) -> Script {
    let stream = serde_json::from_slice::<serde_json::Value>(&req.body).is_ok_and(|v| v["stream"] == true);
    match (req.path.as_str(), stream) {
        ("/v1/chat/completions", false) => {
            Script::Respond { status: 200, content_type: "application/json", body: chat_json() }
        }
        ("/v1/chat/completions", true) => {
            Script::Sse { events: chat_sse_events(&["Hello", " from", " LCP"]), gate: None }
        }
        ("/v1/responses", false) => Script::Respond {
            status: 200,
            content_type: "application/json",
            body: response_object("completed", Some(TEXT)).to_string().into_bytes(),
        },
        ("/v1/responses", true) => Script::Sse { events: responses_sse(), gate: None },
        _ => Script::Respond { status: 404, content_type: "application/json", body: b"{}".to_vec() },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk_through_the_gateway() {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    if std::process::Command::new(&python).arg("--version").output().is_err() {
        eprintln!("SKIPPED: {python} is not installed; this test needs python3 and the openai package");
        return;
    }
    let up = Upstream::start(script).await;
    let mut n = net(vec![ProviderSpec::openai(&up.base_url())]).await;
    let cfg = n.gateway_config(|a| a.gateway_api_keys = Some(vec!["sk-lcp-test".into()]));
    n.start_gateway(cfg).await;
    let script_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/openai_client.py");
    let args = vec![
        script_path.display().to_string(),
        "--base-url".into(),
        format!("{}/v1", n.base()),
        "--api-key".into(),
        "sk-lcp-test".into(),
        "--model".into(),
        MODEL.into(),
        "--expect".into(),
        TEXT.into(),
    ];
    let run = tokio::task::spawn_blocking(move || std::process::Command::new(python).args(&args).output());
    let out = tokio::time::timeout(std::time::Duration::from_secs(180), run)
        .await
        .expect("the client finishes in time")
        .expect("join")
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\nstdout: {stdout}\nstderr: {stderr}", out.status.code());
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(v["chat_json"], TEXT);
    assert_eq!(v["responses_json"], TEXT);
    assert_eq!(v["peer"], n.providers[0].id.as_str());
    assert!(v["chat_stream_chunks"].as_u64() >= Some(2), "{v}");
    assert_eq!(v["responses_stream_deltas"], 3);
    assert_eq!(v["wrong_key_status"], 401);
    n.close();
}
