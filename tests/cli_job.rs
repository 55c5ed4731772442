//! `lcp-cli job ...` against two in-process nodes (deterministic backend, devnet payments over a
//! real channel): JSON output with hex ids and hashes, `--prompt` for each OpenAI task kind, and
//! malformed node ids refused before anything is sent.

use lcp::testkit::{InProcessNode, NodePair};
use std::process::Output;

const MODEL: &str = "gpt-5.2";

async fn pair() -> NodePair {
    let p = NodePair::start(InProcessNode::start().unwrap(), 1_000_000).await.unwrap();
    lcp::testkit::wait_offer(&p.rc, &p.provider_id, MODEL).await.unwrap();
    p
}

async fn cli(dir: &std::path::Path, args: &[&str]) -> Output {
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(lcp::testkit::bin_path("lcp-cli"))
            .arg("--datadir")
            .arg(&dir)
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// A 32-byte id or hash printed as 64 hex digits.
fn assert_hex32(v: &serde_json::Value, what: &str) {
    let s = v.as_str().unwrap_or_else(|| panic!("{what} is not a string: {v}"));
    assert!(s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()), "{what}: {s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_json_output_prints_ids_and_hashes_as_hex() {
    let p = pair().await;
    let dir = p.requester.dir.path();
    let q = json(&cli(dir, &["--json", "job", "quote", &p.provider_id, "-m", MODEL, "-p", "hi"]).await);
    for k in ["job_id", "terms_hash", "payment_hash"] {
        assert_hex32(&q[k], k);
    }
    let job = q["job_id"].as_str().unwrap().to_string();
    let run = json(&cli(dir, &["--json", "job", "accept", &job]).await);
    assert_eq!(run["result"], "deterministic-output");
    let rows = json(&cli(dir, &["--json", "job", "show", &job]).await);
    let row = &rows[0];
    for k in ["job_id", "terms_hash", "payment_hash", "preimage", "result_hash"] {
        assert_hex32(&row[k], k);
    }
    assert_eq!(row["job_id"].as_str(), Some(job.as_str()));
    let list = json(&cli(dir, &["--json", "job", "list"]).await);
    let found = list.as_array().unwrap().iter().find(|r| r["job_id"].as_str() == Some(job.as_str()));
    assert_hex32(&found.expect("the job is listed")["payment_hash"], "payment_hash");
    // The provider's record too.
    let rows = json(&cli(p.provider.dir.path(), &["--json", "job", "show", &job]).await);
    assert_hex32(&rows[0]["payment_hash"], "provider payment_hash");
    p.rc.close();
    p.pc.close();
}

/// The price `job quote -p hello --max-tokens N` gets for `kind`.
async fn quoted_price(p: &NodePair, kind: &str, max_tokens: &str) -> u64 {
    let dir = p.requester.dir.path();
    let args = [
        "--json",
        "job",
        "quote",
        &p.provider_id,
        "-m",
        MODEL,
        "-p",
        "hello",
        "--task-kind",
        kind,
        "--max-tokens",
        max_tokens,
    ];
    json(&cli(dir, &args).await)["price_msat"].as_u64().expect("price_msat")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_run_with_a_prompt_builds_the_body_of_the_task_kind() {
    let p = pair().await;
    let dir = p.requester.dir.path();
    for kind in ["openai.responses.v1", "openai.chat_completions.v1"] {
        let out =
            cli(dir, &["--json", "job", "run", &p.provider_id, "-m", MODEL, "-p", "hello", "--task-kind", kind]).await;
        let v = json(&out);
        assert_eq!(v["result"], "deterministic-output", "{kind}");
    }
    // --max-tokens (default 1024) goes into the body, and the provider prices for it: a
    // smaller limit quotes less, 0 leaves it out (the provider's maximum).
    for kind in ["openai.responses.v1", "openai.chat_completions.v1"] {
        let (small, default, none) = (
            quoted_price(&p, kind, "16").await,
            quoted_price(&p, kind, "1024").await,
            quoted_price(&p, kind, "0").await,
        );
        assert!(small < default && default < none, "{kind}: {small} {default} {none}");
        let out =
            cli(dir, &["--json", "job", "quote", &p.provider_id, "-m", MODEL, "-p", "hello", "--task-kind", kind])
                .await;
        assert_eq!(json(&out)["price_msat"].as_u64(), Some(default), "{kind}: the default is 1024");
    }
    // A task kind --prompt cannot build a body for: a clear error, nothing sent.
    let out = cli(dir, &["job", "run", &p.provider_id, "-m", MODEL, "-p", "x", "--task-kind", "llm.other.v1"]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--input FILE for llm.other.v1"), "{err}");
    p.rc.close();
    p.pc.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_node_id_is_refused_before_anything_is_sent() {
    let p = pair().await;
    let dir = p.requester.dir.path();
    let mut not_a_key = p.provider_id.clone();
    not_a_key.replace_range(..2, "05");
    for (bad, why) in
        [("02abc", "66 hex digits"), (&"zz".repeat(33)[..], "not hex"), (&not_a_key[..], "not a public key")]
    {
        for cmd in [&["job", "run"][..], &["job", "quote"][..]] {
            let mut args = cmd.to_vec();
            args.extend([bad, "-m", MODEL, "-p", "hi"]);
            let out = cli(dir, &args).await;
            assert!(!out.status.success());
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("is malformed") && err.contains(why), "{bad}: {err}");
            assert!(!err.contains("not connected"), "{err}");
        }
    }
    // Nothing was asked of the provider: the requester has no job.
    let list = json(&cli(dir, &["--json", "job", "list"]).await);
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
    p.rc.close();
    p.pc.close();
}
