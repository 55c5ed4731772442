//! The requester's lcpd (the real process, the node's bus host) killed around a paid job: the
//! job ends `done` with its result and proof of payment, paid once, and a client waiting for the
//! job gets its answer once lcpd is back instead of waiting out its timeout.
//!
//! Both nodes run as separate processes. The provider's worker blocks on a FIFO, so the test
//! decides when the result exists and kills at a known state instead of racing the job.

use lcp::bus::api::lcpd::{JobRole, JobRow, LcpdApi, QuoteArgs, QuoteRow};
use lcp::bus::api::payd::PaydApi;
use lcp::bus::api::Body;
use lcp::bus::{Bus, ServiceId};
use lcp::lcpd::engine::RequesterState;
use lcp::testkit::{gate_worker_config, make_fifo, poll_until, FifoRelease, ProcessNode, GATE_TASK, PATIENCE};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);
const LONG: Duration = Duration::from_secs(60);

struct Nodes {
    provider: ProcessNode,
    requester: ProcessNode,
    pc: Bus,
    rc: Bus,
    provider_id: String,
}

async fn outbound(c: &Bus) -> Option<u64> {
    match c.request(&ServiceId::Payd, Body::Payd(PaydApi::ListChannels), T).await.ok()? {
        Body::Payd(PaydApi::Channels(ch)) if ch.iter().any(|c| c.is_usable) => {
            Some(ch.iter().map(|c| c.outbound_capacity_msat).sum())
        }
        _ => None,
    }
}

async fn lcpd(c: &Bus, req: LcpdApi) -> Result<LcpdApi, lcp::bus::BusError> {
    match c.request(&ServiceId::Lcpd, Body::Lcpd(req), T).await? {
        Body::Lcpd(p) => Ok(p),
        other => panic!("{other:?}"),
    }
}

async fn nodes() -> Nodes {
    let cfg = gate_worker_config(lcp::jobd::opts::DEFAULT_CAPACITY, 1_000_000);
    let provider = ProcessNode::start_with_config(Some(&cfg), &["w1"]).expect("provider");
    let requester = ProcessNode::start(&[]).expect("requester");
    let (pc, rc) = (provider.client().await.expect("pc"), requester.client().await.expect("rc"));
    let (provider_id, listen) = lcp::testkit::peerd_address(&pc).await.expect("peerd address");
    lcp::testkit::wait_services(&rc, &[ServiceId::Peerd, ServiceId::Payd, ServiceId::Lcpd])
        .await
        .expect("requester up");
    lcp::testkit::connect_with_channel(&rc, &provider_id, listen, true, 1_000_000).await.expect("channel");
    ready(&rc, &provider_id).await;
    Nodes { provider, requester, pc, rc, provider_id }
}

/// Waits until the requester holds the provider's manifest with the gate task.
async fn ready(rc: &Bus, provider_id: &str) {
    poll_until(LONG, "provider manifest at the requester", || async {
        match lcpd(rc, LcpdApi::ListLcpPeers).await.ok()? {
            LcpdApi::LcpPeers(p) => p
                .into_iter()
                .find(|p| p.node_id == provider_id && p.manifest.tasks.iter().any(|t| t.task_kind == GATE_TASK)),
            _ => None,
        }
    })
    .await
    .expect("manifest");
}

/// A quote for a job gated on `fifo` (made here).
async fn quote(n: &Nodes, fifo: &Path) -> QuoteRow {
    make_fifo(fifo).expect("fifo");
    let args = QuoteArgs {
        peer: n.provider_id.clone(),
        task_kind: GATE_TASK.into(),
        model: Some("gate".into()),
        input: format!("{}\n", fifo.display()).into_bytes(),
        input_content_type: Some("text/plain".into()),
        max_price_msat: None,
        timeout_secs: Some(120),
    };
    match lcpd(&n.rc, LcpdApi::RequestQuote(args)).await.expect("quote") {
        LcpdApi::Quote(q) => q,
        other => panic!("{other:?}"),
    }
}

async fn job(c: &Bus, job_id: [u8; 32], role: JobRole) -> Option<(JobRow, Option<Vec<u8>>)> {
    match lcpd(c, LcpdApi::GetJob { job_id, with_result: true }).await.ok()? {
        LcpdApi::Job { rows, result } => rows.into_iter().find(|r| r.role == role).map(|r| (r, result)),
        _ => None,
    }
}

async fn wait_state(c: &Bus, job_id: [u8; 32], role: JobRole, state: &str) -> (JobRow, Option<Vec<u8>>) {
    poll_until(LONG, &format!("{role:?} job {state}"), || async {
        job(c, job_id, role).await.filter(|(r, _)| r.state == state)
    })
    .await
    .expect("state reached")
}

fn logs(n: &Nodes) -> String {
    format!(
        "--- provider lcpd:\n{}\n--- requester lcpd:\n{}\n--- requester payd:\n{}\n--- requester peerd:\n{}",
        n.provider.log("lcpd"),
        n.requester.log("lcpd"),
        n.requester.log("payd"),
        n.requester.log("peerd")
    )
}

/// The requester's lcpd is killed right after paying, before it wrote payd's answer down: its
/// record says `paying`. When it is back, the provider delivers the result (the run's stream,
/// held meanwhile in the requester's socket) and, asked again by the restarted lcpd, re-sends the
/// stored result on a second stream; both arrive while the job is still `paying` (payd, frozen,
/// has not answered yet). Then payd answers `paid`: the job ends done with the result and the
/// preimage, paid once. Five times.
///
/// The window between payd's answer and lcpd's write of it is one bus hop wide, so the kill cannot
/// be aimed at it: in even rounds the test kills just after the write and puts the record back as
/// a kill inside the window leaves it (`paying`, no preimage, outcome unknown); odd rounds keep
/// the record the kill left (`awaiting_result`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requester_lcpd_killed_right_after_paying_gets_the_result_delivered_twice() {
    for i in 0..5 {
        // Fresh nodes each round: a channel message on the bus when its host is killed is lost,
        // and the channel then waits for it until the peer is timed out (a bus matter, not this
        // test's), which would hold up the next round's payment.
        let mut n = nodes().await;
        let cap0 = poll_until(PATIENCE, "usable channel", || outbound(&n.rc)).await.expect("capacity");
        let fifo = n.provider.dir.path().join(format!("gate-{i}"));
        let q = quote(&n, &fifo).await;
        let req = LcpdApi::Execute { job_id: q.job_id, max_price_msat: None, timeout_secs: Some(120) };
        assert_eq!(lcpd(&n.rc, req).await.expect("execute"), LcpdApi::Executing { job_id: q.job_id });
        // Paid at both ends; the provider's run waits on the gate.
        poll_until(LONG, &format!("round {i}: requester job paid"), || async {
            job(&n.rc, q.job_id, JobRole::Requester).await.filter(|(r, _)| r.state == "awaiting_result")
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&n)));
        wait_state(&n.pc, q.job_id, JobRole::Provider, "running").await;
        // The run's result stream will wait in the requester's socket while peerd is frozen.
        n.requester.signal("peerd", libc::SIGSTOP).expect("freeze peerd");
        n.requester.kill("lcpd").expect("kill lcpd");
        // Even rounds: the record as a kill inside the window leaves it. Odd rounds: as this
        // kill left it (`awaiting_result`).
        let in_window = i % 2 == 0;
        if in_window {
            let store = lcp::lcpd::store::JobStore::open(&n.requester.dir.path().join("lcpd.db")).expect("lcpd.db");
            let mut rec = store.requester_job(&q.job_id).expect("read").expect("record");
            assert_eq!((rec.state, rec.preimage.is_some()), (RequesterState::AwaitingResult, true));
            rec.state = RequesterState::Paying;
            rec.preimage = None;
            rec.payment_unresolved = true;
            store.save_requester(&rec, None, None).expect("write");
        }
        // payd's answer to the restarted lcpd waits until the result arrived.
        n.requester.signal("payd", libc::SIGSTOP).expect("freeze payd");
        let line = format!("twice-{i}");
        let gate = FifoRelease::open(fifo, &line);
        wait_state(&n.pc, q.job_id, JobRole::Provider, "done").await;
        drop(gate);
        let redelivered = n.provider.log("lcpd").matches("re-delivering a stored result").count();
        let again = n.requester.log("lcpd").matches("a result delivered again ignored").count();
        n.requester.start_daemon("lcpd").expect("start lcpd");
        n.requester.signal("peerd", libc::SIGCONT).expect("thaw peerd");
        if in_window {
            // Both deliveries reach the restarted lcpd while its job is paying.
            poll_until(LONG, "both deliveries at the requester", || async {
                let r = n.provider.log("lcpd").matches("re-delivering a stored result").count() > redelivered;
                let c = n.requester.log("lcpd").matches("a result delivered again ignored").count() > again;
                (r && c).then_some(())
            })
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", logs(&n)));
            let (row, _) = job(&n.rc, q.job_id, JobRole::Requester).await.expect("requester job");
            assert_eq!(row.state, "paying", "the job is still paying when both results are in");
        }
        n.requester.signal("payd", libc::SIGCONT).expect("thaw payd");
        let done = poll_until(LONG, "requester job ended", || async {
            job(&n.rc, q.job_id, JobRole::Requester)
                .await
                .filter(|(r, _)| !matches!(r.state.as_str(), "paying" | "awaiting_result"))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&n)));
        let (r, result) = done;
        assert_eq!(r.state, "done", "{r:?}\n{}", logs(&n));
        assert_eq!(result.as_deref(), Some(line.as_bytes()));
        assert_eq!(r.result_hash, Some(Sha256::digest(line.as_bytes()).into()));
        let preimage = r.preimage.expect("preimage kept");
        assert_eq!(<[u8; 32]>::from(Sha256::digest(preimage)), q.payment_hash);
        // Paid once: the channel balance dropped by the price, no more.
        let spent = q.price_msat;
        let cap = poll_until(LONG, "the payments in the channel balance", || async {
            outbound(&n.rc).await.filter(|c| cap0 - c >= spent)
        })
        .await;
        let cap = match cap {
            Ok(c) => c,
            Err(e) => {
                let now = outbound(&n.rc).await.map(|c| cap0 - c);
                panic!("round {i}: {e}: now {now:?}, spent {spent}\n{}", logs(&n))
            }
        };
        assert_eq!(cap0 - cap, spent, "paid once");
    }
}

/// `lcp-cli job run` whose lcpd is killed and started again while the job runs: the client
/// watches its job again once the bus is back and prints the result, well before its timeout.
/// Three times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_job_run_gets_its_result_after_lcpd_restarts() {
    // Three rounds, on fresh nodes each (see above).
    for _ in 0..3 {
        let mut n = nodes().await;
        let fifo = n.provider.dir.path().join("gate-cli");
        make_fifo(&fifo).expect("fifo");
        let input = n.requester.dir.path().join("input.txt");
        std::fs::write(&input, format!("{}\n", fifo.display())).expect("input");
        let child = std::process::Command::new(lcp::testkit::bin_path("lcp-cli"))
            .arg("--datadir")
            .arg(n.requester.dir.path())
            .args(["--json", "job", "run", &n.provider_id, "-m", "gate", "--task-kind", GATE_TASK, "-i"])
            .arg(&input)
            .args(["--job-timeout", "120"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("lcp-cli");
        // The CLI's job is paid (payd has the preimage) and runs at the provider.
        let running = poll_until(LONG, "the job paid and awaiting its result", || async {
            match lcpd(&n.rc, LcpdApi::ListJobs { limit: 10 }).await.ok()? {
                LcpdApi::Jobs(rows) => rows.into_iter().find(|r| r.state == "awaiting_result"),
                _ => None,
            }
        })
        .await
        .expect("paid");
        wait_state(&n.pc, running.job_id, JobRole::Provider, "running").await;
        n.requester.kill("lcpd").expect("kill lcpd");
        let restarted = Instant::now();
        n.requester.start_daemon("lcpd").expect("start lcpd");
        let _gate = FifoRelease::open(fifo, "after-the-restart");
        // Well before the CLI's own timeout (120 s + 15 s).
        let pid = child.id();
        let waited = tokio::time::timeout(
            Duration::from_secs(45),
            tokio::task::spawn_blocking(move || child.wait_with_output().expect("output")),
        )
        .await;
        let out = match waited {
            Ok(out) => out.expect("wait"),
            Err(_) => {
                // SAFETY: kill(2) on the CLI this test started.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                panic!("lcp-cli did not finish within 45 s of lcpd's restart\n{}", logs(&n));
            }
        };
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
        assert!(restarted.elapsed() < Duration::from_secs(45));
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        assert_eq!(v["job_id"].as_str(), Some(hex::encode(running.job_id).as_str()));
        assert_eq!(v["result"], "after-the-restart");
        assert_eq!(v["preimage_matches"], true, "{v}");
        let (r, _) = wait_state(&n.rc, running.job_id, JobRole::Requester, "done").await;
        assert_eq!(r.payment_hash, running.payment_hash);
    }
}
