//! jobd workers: announcements, dispatch by lcpd, queueing, and a worker killed mid-load.

use lcp::bus::api::jobd::OutputItem;
use lcp::bus::api::lcpd::WorkerRow;
use lcp::bus::api::{Body, LcpdApi};
use lcp::bus::{Bus, ServiceId};
use lcp::testkit::{
    gate_worker_config, make_fifo, poll_until, FifoRelease, InProcessNode, ProcessNode, TestJobs, GATE_TASK, PATIENCE,
};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Duration;

const CHAT: &str = "openai.chat_completions.v1";

async fn workers(c: &Bus) -> Vec<WorkerRow> {
    match c.request(&ServiceId::Lcpd, Body::Lcpd(LcpdApi::ListWorkers), Duration::from_secs(5)).await {
        Ok(Body::Lcpd(LcpdApi::Workers(w))) => w,
        other => panic!("{other:?}"),
    }
}

async fn wait_workers(c: &Bus, n: usize) -> Vec<WorkerRow> {
    poll_until(PATIENCE, &format!("{n} workers"), || async {
        let w = workers(c).await;
        (w.len() == n).then_some(w)
    })
    .await
    .unwrap()
}

fn assert_end_matches(item: &OutputItem, bytes: &[u8]) {
    match item {
        OutputItem::End { len, sha256 } => {
            assert_eq!(*len as usize, bytes.len());
            assert_eq!(*sha256, <[u8; 32]>::from(Sha256::digest(bytes)));
        }
        other => panic!("job did not end well: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_workers_run_jobs_and_report_offers() {
    let mut n = InProcessNode::start().unwrap();
    n.node.start_worker("w2").unwrap();
    n.node.start_worker("w3").unwrap();
    let c = n.client().await.unwrap();
    let rows = wait_workers(&c, 3).await;
    assert!(rows.iter().all(|r| r.capacity == 4 && r.offers.iter().any(|o| o.task_kind == CHAT)), "{rows:?}");
    // gpt-5.2 is the built-in price table's model, so the deterministic backend offers it.
    let mut jobs = TestJobs::new(&c).unwrap();
    let mut ids = Vec::new();
    for i in 0..12 {
        let input = format!("{{\"model\":\"gpt-5.2\",\"messages\":[{{\"role\":\"user\",\"content\":\"{i}\"}}]}}");
        ids.push(jobs.submit(CHAT, "gpt-5.2", input.as_bytes()).await.unwrap().0);
    }
    jobs.wait(&ids, PATIENCE).await.unwrap();
    for id in &ids {
        let bytes = jobs.bytes.get(id).cloned().unwrap_or_default();
        assert_eq!(bytes, b"deterministic-output");
        assert_end_matches(&jobs.done[id], &bytes);
    }
    // A model no worker serves is refused up front.
    let e = jobs.submit(CHAT, "nope", b"{}").await.unwrap_err().to_string();
    assert!(e.contains("no worker serves"), "{e}");
    // Stopping a worker removes it from the pool once its heartbeats stop.
    n.node.stop_service("jobd/w2").unwrap();
    wait_workers(&c, 2).await;
    c.close();
    n.node.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_before_streaming_has_its_job_rerun_elsewhere() {
    let mut node = ProcessNode::start_with_config(Some(&gate_worker_config(1, 1000)), &["w1", "w2"]).unwrap();
    let c = node.client().await.unwrap();
    wait_workers(&c, 2).await;
    let mut jobs = TestJobs::new(&c).unwrap();
    let fifos: Vec<PathBuf> = (0..3).map(|i| node.dir.path().join(format!("gate{i}"))).collect();
    let mut ids = Vec::new();
    for f in &fifos {
        make_fifo(f).unwrap();
        let (id, _) = jobs.submit(GATE_TASK, "gate", format!("{}\n", f.display()).as_bytes()).await.unwrap();
        ids.push(id);
    }
    // Two run (one per worker), the third waits for capacity.
    poll_until(PATIENCE, "both workers busy", || async {
        workers(&c).await.iter().all(|w| w.running == 1).then_some(())
    })
    .await
    .unwrap();
    // Kill w1 while its job waits (no output yet).
    node.kill("jobd/w1").unwrap();
    let releasers: Vec<_> =
        fifos.iter().enumerate().map(|(i, f)| FifoRelease::open(f.clone(), &format!("done-{i}"))).collect();
    let waited = jobs.wait(&ids, Duration::from_secs(60)).await;
    drop(releasers);
    waited.map_err(|e| anyhow::anyhow!("{e}\nlcpd log:\n{}", node.log("lcpd"))).unwrap();
    for (i, id) in ids.iter().enumerate() {
        let bytes = jobs.bytes.get(id).cloned().unwrap_or_default();
        assert_eq!(String::from_utf8_lossy(&bytes), format!("done-{i}"));
        assert_end_matches(&jobs.done[id], &bytes);
    }
    assert!(node.log("lcpd").contains("worker gone"), "lcpd did not notice the dead worker");
    let rows = workers(&c).await;
    assert_eq!(rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), vec!["jobd/w2"]);
    c.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_after_streaming_started_fails_the_job() {
    // The job prints a line at once, then waits: killing its worker then is a terminal error.
    let cfg = gate_worker_config(1, 1000).replace(
        r#"argv = ["/bin/sh", "-c", "read -r p; read -r x < \"$p\"; printf '%s' \"$x\""]"#,
        r#"argv = ["/bin/sh", "-c", "p=$(sed -n 's/.*\"gate\":\"\\([^\"]*\\)\".*/\\1/p'); echo started; read -r x < \"$p\"; printf '%s' \"$x\""]"#,
    );
    let mut node = ProcessNode::start_with_config(Some(&cfg), &["w1", "w2"]).unwrap();
    let c = node.client().await.unwrap();
    wait_workers(&c, 2).await;
    let mut jobs = TestJobs::new(&c).unwrap();
    let fifo = node.dir.path().join("gate");
    make_fifo(&fifo).unwrap();
    // A streamed job (`"stream": true`): its output is forwarded as it is written.
    let input = format!("{{\"stream\":true,\"gate\":\"{}\"}}", fifo.display());
    let (id, _) = jobs.submit(GATE_TASK, "gate", input.as_bytes()).await.unwrap();
    // Wait for its first bytes, then kill whichever worker runs it.
    let deadline = std::time::Instant::now() + PATIENCE;
    let victim = loop {
        assert!(std::time::Instant::now() < deadline, "no first output");
        // Drain what arrived; the job does not end here, so the short wait times out.
        let _ = jobs.wait(&[id], Duration::from_millis(50)).await;
        if jobs.bytes.get(&id).is_some_and(|b| !b.is_empty()) {
            let rows = workers(&c).await;
            break rows.iter().find(|w| w.running == 1).map(|w| w.id.clone()).expect("a busy worker");
        }
    };
    node.kill(&victim).unwrap();
    jobs.wait(&[id], Duration::from_secs(30)).await.unwrap();
    match &jobs.done[&id] {
        OutputItem::Failed { lcp_code, message } => {
            assert_eq!(*lcp_code, 7);
            assert!(message.contains("went away"), "{message}");
        }
        other => panic!("expected a terminal error, got {other:?}"),
    }
    c.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_quotes_with_the_reference_pricing_and_cancels_on_request() {
    use lcp::bus::api::jobd::JobSpec;
    use lcp::bus::api::JobdApi;
    let cfg = gate_worker_config(2, 1000);
    let node = ProcessNode::start_with_config(Some(&cfg), &["w1"]).unwrap();
    let c = node.client().await.unwrap();
    wait_workers(&c, 1).await;
    let w1 = ServiceId::Jobd("w1".into());
    // Act as lcpd towards the worker: quote, execute, cancel.
    let spec = |input: &[u8]| JobSpec {
        job_id: rand::random(),
        task_kind: GATE_TASK.into(),
        model: Some("gate".into()),
        params: vec![],
        input: input.to_vec(),
        input_content_type: "text/plain".into(),
        max_output_bytes: None,
    };
    // 8 input bytes -> 2 tokens at 1000 msat/Mtok, plus 4096 output tokens at 1000 msat/Mtok.
    match c.request(&w1, Body::Jobd(JobdApi::Quote(spec(b"12345678"))), Duration::from_secs(5)).await.unwrap() {
        Body::Jobd(JobdApi::Priced { price_msat }) => assert_eq!(price_msat, 5), // ceil((2+4096)*1000/1e6)
        other => panic!("{other:?}"),
    }
    let mut unknown = spec(b"x");
    unknown.model = Some("other".into());
    match c.request(&w1, Body::Jobd(JobdApi::Quote(unknown)), Duration::from_secs(5)).await.unwrap() {
        Body::Jobd(JobdApi::Refused { lcp_code, .. }) => assert_eq!(lcp_code, 2),
        other => panic!("{other:?}"),
    }
    let fifo = node.dir.path().join("never");
    make_fifo(&fifo).unwrap();
    let job = spec(format!("{}\n", fifo.display()).as_bytes());
    let job_id = job.job_id;
    let mut rx = c.take_incoming().unwrap();
    let r = c.request(&w1, Body::Jobd(JobdApi::Execute(job.clone())), Duration::from_secs(5)).await.unwrap();
    assert_eq!(r, Body::Jobd(JobdApi::Started));
    // The same job twice is refused.
    assert!(c.request(&w1, Body::Jobd(JobdApi::Execute(job)), Duration::from_secs(5)).await.is_err());
    let started = std::time::Instant::now();
    let r = c.request(&w1, Body::Jobd(JobdApi::Cancel { job_id }), Duration::from_secs(5)).await.unwrap();
    assert_eq!(r, Body::Jobd(JobdApi::Cancelled { was_running: true }));
    let end = loop {
        let m = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
        if let Body::Jobd(JobdApi::Output { job_id: j, item }) = m.body {
            assert_eq!(j, job_id);
            if !matches!(item, OutputItem::Begin { .. } | OutputItem::Chunk(_)) {
                break item;
            }
        }
    };
    assert!(matches!(&end, OutputItem::Failed { message, .. } if message.contains("cancel")), "{end:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "cancel took {:?}", started.elapsed());
    c.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_on_another_host_needs_only_the_endpoint_and_the_key_file() {
    let mut node = ProcessNode::start(&[]).unwrap();
    // "Another host": an empty data directory of its own and a copy of the client key.
    let other = tempfile::tempdir().unwrap();
    let key = other.path().join("lcp-client.key");
    std::fs::copy(node.dir.path().join("bus/client.key"), &key).unwrap();
    let ep = node.endpoint.to_string();
    let (key_s, dir_s) = (key.to_str().unwrap().to_string(), other.path().join("dd").to_str().unwrap().to_string());
    node.spawn_raw(
        "jobd/remote",
        "jobd",
        &["--bus", &ep, "--bus-key", &key_s, "--worker-name", "remote", "--datadir", &dir_s],
    )
    .unwrap();
    let c = node.client().await.unwrap();
    let rows = wait_workers(&c, 1).await;
    assert_eq!(rows[0].id, "jobd/remote");
    // Without the key file the same command line is refused at start, with a clear error.
    let out = std::process::Command::new(lcp::testkit::bin_path("jobd"))
        .args(["--bus", &ep, "--bus-key", "/nonexistent/key", "--worker-name", "x", "--datadir", &dir_s])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/key"));
    c.close();
}
