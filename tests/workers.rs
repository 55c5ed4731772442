//! jobd workers: announcements, dispatch by lcpd, queueing, and a worker killed mid-load.

use lcp::bus::api::jobd::OutputItem;
use lcp::bus::api::lcpd::WorkerRow;
use lcp::bus::api::{Body, LcpdApi};
use lcp::bus::{Bus, ServiceId};
use lcp::testkit::{poll_until, InProcessNode, ProcessNode, TestJobs, PATIENCE};
use sha2::{Digest, Sha256};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
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

/// Worker config: one exec command per job that reads a FIFO path from its input, waits for a
/// line on that FIFO, and prints it. The test decides when each job may finish.
fn gate_config(capacity: u32) -> String {
    format!(
        r#"
[jobd]
capacity = {capacity}

[jobd.backend]
kind = "exec"

[[jobd.backend.commands]]
task_kind = "test.gate.v1"
models = ["gate"]
argv = ["/bin/sh", "-c", "read -r p; read -r x < \"$p\"; printf '%s' \"$x\""]
content_type = "text/plain"

[jobd.pricing.models.gate]
price = {{ input_msat_per_mtok = 1000, output_msat_per_mtok = 1000 }}
"#
    )
}

fn make_fifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
}

/// Writes `line` to the FIFO whenever a reader has it open, until `stop` is set.
fn release(
    path: PathBuf,
    line: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        use std::io::Write;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            // Non-blocking open fails (ENXIO) while no job is reading.
            if let Ok(mut f) = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&path) {
                let _ = f.write_all(format!("{line}\n").as_bytes());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_before_streaming_has_its_job_rerun_elsewhere() {
    let mut node = ProcessNode::start_with_config(Some(&gate_config(1)), &["w1", "w2"]).unwrap();
    let c = node.client().await.unwrap();
    wait_workers(&c, 2).await;
    let mut jobs = TestJobs::new(&c).unwrap();
    let fifos: Vec<PathBuf> = (0..3).map(|i| node.dir.path().join(format!("gate{i}"))).collect();
    let mut ids = Vec::new();
    for f in &fifos {
        make_fifo(f);
        let (id, _) = jobs.submit("test.gate.v1", "gate", format!("{}\n", f.display()).as_bytes()).await.unwrap();
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
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let releasers: Vec<_> =
        fifos.iter().enumerate().map(|(i, f)| release(f.clone(), format!("done-{i}"), stop.clone())).collect();
    let waited = jobs.wait(&ids, Duration::from_secs(60)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in releasers {
        r.join().unwrap();
    }
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
    let cfg = gate_config(1).replace(
        r#"argv = ["/bin/sh", "-c", "read -r p; read -r x < \"$p\"; printf '%s' \"$x\""]"#,
        r#"argv = ["/bin/sh", "-c", "p=$(sed -n 's/.*\"gate\":\"\\([^\"]*\\)\".*/\\1/p'); echo started; read -r x < \"$p\"; printf '%s' \"$x\""]"#,
    );
    let mut node = ProcessNode::start_with_config(Some(&cfg), &["w1", "w2"]).unwrap();
    let c = node.client().await.unwrap();
    wait_workers(&c, 2).await;
    let mut jobs = TestJobs::new(&c).unwrap();
    let fifo = node.dir.path().join("gate");
    make_fifo(&fifo);
    // A streamed job (`"stream": true`): its output is forwarded as it is written.
    let input = format!("{{\"stream\":true,\"gate\":\"{}\"}}", fifo.display());
    let (id, _) = jobs.submit("test.gate.v1", "gate", input.as_bytes()).await.unwrap();
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
