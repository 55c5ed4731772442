//! lcpd end to end between two in-process nodes (deterministic backend, devnet payments over a
//! real channel): manifests, quote, invoice checks, payment, result stream, records, and the
//! CLI over the same API.

use lcp::bus::api::lcpd::{JobEvent, JobOutcomeRow, LcpdApi, QuoteArgs, QuoteRow};
use lcp::bus::api::Body;
use lcp::bus::{Bus, ServiceId};
use lcp::testkit::{poll_until, InProcessNode, NodePair, PATIENCE};
use sha2::{Digest, Sha256};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);
const CHAT: &str = "openai.chat_completions.v1";
const MODEL: &str = "gpt-5.2";

async fn lcpd(c: &Bus, req: LcpdApi) -> Result<LcpdApi, lcp::bus::BusError> {
    match c.request(&ServiceId::Lcpd, Body::Lcpd(req), T).await? {
        Body::Lcpd(p) => Ok(p),
        other => panic!("{other:?}"),
    }
}

/// Two nodes, connected, with a channel from the requester to the provider and the provider's
/// manifest (with its worker's offers) at the requester.
pub async fn pair() -> NodePair {
    let p = NodePair::start(InProcessNode::start().unwrap(), 1_000_000).await.unwrap();
    // The provider's manifest, with its worker's offer, reaches the requester.
    lcp::testkit::wait_offer(&p.rc, &p.provider_id, MODEL).await.unwrap();
    p
}

pub fn chat(content: &str) -> Vec<u8> {
    format!(r#"{{"model":"{MODEL}","messages":[{{"role":"user","content":"{content}"}}]}}"#).into_bytes()
}

pub async fn quote(
    c: &Bus,
    provider: &str,
    input: Vec<u8>,
    max_price: Option<u64>,
) -> Result<QuoteRow, lcp::bus::BusError> {
    let args = QuoteArgs {
        peer: provider.to_string(),
        task_kind: CHAT.into(),
        model: Some(MODEL.into()),
        input,
        input_content_type: None,
        max_price_msat: max_price,
        timeout_secs: Some(30),
    };
    match lcpd(c, LcpdApi::RequestQuote(args)).await? {
        LcpdApi::Quote(q) => Ok(q),
        other => panic!("{other:?}"),
    }
}

/// Executes and collects the events until the result.
pub async fn execute(c: &Bus, job_id: [u8; 32]) -> Vec<JobEvent> {
    let mut rx = c.take_incoming().expect("incoming");
    let got = lcpd(c, LcpdApi::Execute { job_id, max_price_msat: None, timeout_secs: Some(30) }).await.unwrap();
    assert_eq!(got, LcpdApi::Executing { job_id });
    let mut events = Vec::new();
    loop {
        let m = tokio::time::timeout(T, rx.recv()).await.expect("events in time").expect("bus open");
        if let Body::Lcpd(LcpdApi::JobEvent { job_id: j, event }) = m.body {
            assert_eq!(j, job_id);
            let done = matches!(event, JobEvent::Result(_));
            events.push(event);
            if done {
                c.put_incoming(rx);
                return events;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_job_between_two_nodes_with_records_and_cli() {
    let p = pair().await;
    let q = quote(&p.rc, &p.provider_id, chat("hello"), None).await.unwrap();
    assert_eq!(q.peer, p.provider_id);
    assert!(q.price_msat > 0);
    // The invoice commits to the terms and is the provider's.
    let inv = lcp::payd::backend::decode_bolt11(&q.payment_request).unwrap();
    assert_eq!(inv.description_hash, Some(q.terms_hash));
    assert_eq!(hex::encode(inv.payee.serialize()), p.provider_id);
    assert_eq!(inv.amount_msat, Some(q.price_msat));
    let events = execute(&p.rc, q.job_id).await;
    let paid = events.iter().find_map(|e| match e {
        JobEvent::Paid { payment_hash, preimage, price_msat } => Some((*payment_hash, *preimage, *price_msat)),
        _ => None,
    });
    let (hash, preimage, price) = paid.expect("paid event");
    assert_eq!((hash, price), (q.payment_hash, q.price_msat));
    assert_eq!(<[u8; 32]>::from(Sha256::digest(preimage)), hash);
    let bytes: Vec<u8> = events
        .iter()
        .filter_map(|e| if let JobEvent::Chunk(c) = e { Some(c.clone()) } else { None })
        .flatten()
        .collect();
    assert_eq!(bytes, b"deterministic-output");
    assert_eq!(
        events.last(),
        Some(&JobEvent::Result(JobOutcomeRow::Ok {
            content_type: "application/json; charset=utf-8".into(),
            len: bytes.len() as u64,
            sha256: Sha256::digest(&bytes).into()
        }))
    );
    // Both sides keep the job.
    let rows = |a: LcpdApi| match a {
        LcpdApi::Job { rows, result } => (rows, result),
        other => panic!("{other:?}"),
    };
    let (rr, result) = rows(lcpd(&p.rc, LcpdApi::GetJob { job_id: q.job_id, with_result: true }).await.unwrap());
    assert_eq!((rr.len(), rr[0].state.as_str()), (1, "done"));
    assert_eq!(result.as_deref(), Some(&b"deterministic-output"[..]));
    let pr = poll_until(PATIENCE, "provider done", || async {
        let (pr, _) = rows(lcpd(&p.pc, LcpdApi::GetJob { job_id: q.job_id, with_result: false }).await.ok()?);
        (pr[0].state == "done").then_some(pr)
    })
    .await
    .unwrap();
    assert_eq!(pr[0].payment_hash, q.payment_hash);
    // Executing a finished job again re-sends the stored result and pays nothing.
    let again = execute(&p.rc, q.job_id).await;
    assert!(matches!(again.last(), Some(JobEvent::Result(JobOutcomeRow::Ok { .. }))));
    assert!(!again.iter().any(|e| matches!(e, JobEvent::Paid { .. })));

    // The CLI: a whole job with --json, then list and show.
    let dir = p.requester.dir.path().to_path_buf();
    let provider = p.provider_id.clone();
    let cli = move |args: Vec<String>| {
        let dir = dir.clone();
        async move {
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
    };
    let out = cli(vec![
        "--json".into(),
        "job".into(),
        "run".into(),
        provider.clone(),
        "-m".into(),
        MODEL.into(),
        "-p".into(),
        "hi".into(),
    ])
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["result"], "deterministic-output");
    assert_eq!(v["preimage_matches"], true);
    let job = v["job_id"].as_str().unwrap().to_string();
    let out = cli(vec!["job".into(), "list".into()]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&job) && text.contains("done"), "{text}");
    let out = cli(vec!["job".into(), "show".into(), job.clone(), "--result".into()]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "deterministic-output");
    let out = cli(vec!["job".into(), "show".into(), job.clone(), "--result".into(), "--json".into()]).await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("show --result --json prints JSON");
    assert_eq!((v["job_id"].as_str(), v["result"].as_str()), (Some(job.as_str()), Some("deterministic-output")));
    // Human output of `job run`: the result on stdout, the summary on stderr.
    let out =
        cli(vec!["job".into(), "run".into(), provider.clone(), "-m".into(), MODEL.into(), "-p".into(), "hey".into()])
            .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"deterministic-output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sha256(preimage) matches: true"), "{err}");
    // A price ceiling below the quote: a clear error, exit code 1, nothing paid.
    let out = cli(vec![
        "job".into(),
        "run".into(),
        provider,
        "-m".into(),
        MODEL.into(),
        "-p".into(),
        "x".into(),
        "--max-price-msat".into(),
        "1".into(),
    ])
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exceeds the ceiling of 1 msat"), "{err}");
    // On a terminal (a pseudo-terminal from `script`): with stdout in a file, stderr shows the
    // progress line (bytes, elapsed); with stdout on the terminal too, no progress line is drawn
    // over the streamed text.
    let dir = p.requester.dir.path().to_path_buf();
    let file = dir.join("result.txt");
    let run = format!(
        "'{}' --datadir '{}' job run {} -m {MODEL} -p tty",
        lcp::testkit::bin_path("lcp-cli").display(),
        dir.display(),
        p.provider_id
    );
    let on_tty = |cmd: String| async move {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().unwrap()
        })
        .await
        .unwrap()
    };
    let out = on_tty(format!("{run} > '{}'", file.display())).await;
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    assert!(tty.contains("\r20 bytes, "), "no progress line: {tty:?}");
    assert_eq!(std::fs::read(&file).unwrap(), b"deterministic-output");
    let out = on_tty(run).await;
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(tty.contains("deterministic-output") && !tty.contains("\r20 bytes, "), "{tty:?}");
    p.rc.close();
    p.pc.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_refusals_reach_the_requester_as_errors() {
    let p = pair().await;
    // Unknown model: the provider's lcp_error 2 comes back as failed_precondition.
    let args = QuoteArgs {
        peer: p.provider_id.clone(),
        task_kind: CHAT.into(),
        model: Some("nope".into()),
        input: br#"{"model":"nope","messages":[{"role":"user","content":"x"}]}"#.to_vec(),
        input_content_type: None,
        max_price_msat: None,
        timeout_secs: Some(30),
    };
    let e = lcpd(&p.rc, LcpdApi::RequestQuote(args)).await.unwrap_err().to_string();
    assert!(e.starts_with("failed_precondition:") && e.contains("lcp_error code=2"), "{e}");
    // A request the requester itself finds invalid never leaves the node.
    let args = QuoteArgs {
        peer: p.provider_id.clone(),
        task_kind: CHAT.into(),
        model: Some(MODEL.into()),
        input: b"not json".to_vec(),
        input_content_type: None,
        max_price_msat: None,
        timeout_secs: Some(30),
    };
    let e = lcpd(&p.rc, LcpdApi::RequestQuote(args)).await.unwrap_err().to_string();
    assert!(e.starts_with("invalid_argument:"), "{e}");
    // Unknown peer.
    let e = quote(&p.rc, &format!("02{}", "11".repeat(32)), chat("x"), None).await.unwrap_err().to_string();
    assert!(e.starts_with("failed_precondition:"), "{e}");
    // Cancel of an unknown job.
    let e = lcpd(&p.rc, LcpdApi::CancelJob { job_id: [9; 32], reason: None }).await.unwrap_err().to_string();
    assert!(e.starts_with("not_found:"), "{e}");
    p.rc.close();
    p.pc.close();
}
