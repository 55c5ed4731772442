//! Kill lcpd (the real process) at each state of a paid job and start it again: the job is not
//! lost, nothing is paid twice, and the requester ends with the verified result.
//!
//! Both nodes run as separate processes (lcpd hosts each node's bus). The provider's worker runs
//! an exec command that blocks on a FIFO, so the test decides when the job may finish, and kills
//! at a known state instead of racing the job. The last two tests kill the requester's lcpd right
//! after paying (the result then arrives twice) and while `lcp-cli job run` waits for its job.

use lcp::bus::api::lcpd::{JobRole, JobRow, LcpdApi, QuoteArgs, QuoteRow};
use lcp::bus::api::payd::PaydApi;
use lcp::bus::api::Body;
use lcp::bus::{Bus, ServiceId};
use lcp::lcpd::engine::RequesterState;
use lcp::testkit::{
    gate_worker_config, make_fifo, poll_until, services, FifoRelease, ProcessNode, GATE_TASK, PATIENCE,
};
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
    /// The requester's outbound capacity before any payment.
    cap0: u64,
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
    nodes_with(&gate_worker_config(lcp::jobd::opts::DEFAULT_CAPACITY, 1_000_000), &["w1"]).await
}

/// A provider with this config and these workers, and a requester with a channel to it.
async fn nodes_with(provider_config: &str, workers: &[&str]) -> Nodes {
    let provider = ProcessNode::start_with_config(Some(provider_config), workers).expect("provider");
    let requester = ProcessNode::start(&[]).expect("requester");
    let (pc, rc) = (provider.client().await.expect("pc"), requester.client().await.expect("rc"));
    let (provider_id, listen) = lcp::testkit::peerd_address(&pc).await.expect("peerd address");
    lcp::testkit::wait_services(&rc, &[ServiceId::Peerd, ServiceId::Payd, ServiceId::Lcpd])
        .await
        .expect("requester up");
    lcp::testkit::connect_with_channel(&rc, &provider_id, listen, true, 1_000_000).await.expect("channel");
    ready(&rc, &provider_id).await;
    let cap0 = poll_until(PATIENCE, "usable channel", || outbound(&rc)).await.expect("capacity");
    Nodes { provider, requester, pc, rc, provider_id, cap0 }
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

async fn quote(n: &Nodes, fifo: &Path) -> QuoteRow {
    quote_input(n, fifo, format!("{}\n", fifo.display()).into_bytes()).await
}

/// A quote for a gated job with this input (it names `fifo`, made here).
async fn quote_input(n: &Nodes, fifo: &Path, input: Vec<u8>) -> QuoteRow {
    make_fifo(fifo).expect("fifo");
    let args = QuoteArgs {
        peer: n.provider_id.clone(),
        task_kind: GATE_TASK.into(),
        model: Some("gate".into()),
        input,
        input_content_type: Some("text/plain".into()),
        max_price_msat: None,
        timeout_secs: Some(120),
    };
    match lcpd(&n.rc, LcpdApi::RequestQuote(args)).await.expect("quote") {
        LcpdApi::Quote(q) => q,
        other => panic!("{other:?}"),
    }
}

async fn execute(c: &Bus, job_id: [u8; 32]) {
    let req = LcpdApi::Execute { job_id, max_price_msat: None, timeout_secs: Some(120) };
    assert_eq!(lcpd(c, req).await.expect("execute"), LcpdApi::Executing { job_id });
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

/// Restarts a daemon of a node and waits until its bus is back with every service.
async fn restart(node: &mut ProcessNode, c: &Bus, svc: &str) {
    node.kill(svc).expect("kill");
    node.start_daemon(svc).expect("start");
    lcp::testkit::wait_services(c, &[ServiceId::Peerd, ServiceId::Payd, ServiceId::Lcpd]).await.expect("back up");
}

/// The requester ends with the verified result, paid exactly once.
async fn assert_done_once(n: &Nodes, q: &QuoteRow, line: &str) {
    let expected = line.as_bytes();
    let done = poll_until(LONG, "requester job done", || async {
        job(&n.rc, q.job_id, JobRole::Requester).await.filter(|(r, _)| r.state == "done")
    })
    .await;
    let rows = if done.is_err() {
        let (p, r) = (job(&n.pc, q.job_id, JobRole::Provider).await, job(&n.rc, q.job_id, JobRole::Requester).await);
        format!("provider job: {:?}\nrequester job: {:?}", p.map(|j| j.0), r.map(|j| j.0))
    } else {
        String::new()
    };
    let (r, result) = done.unwrap_or_else(|e| {
        panic!(
            "{e}\n{rows}\n--- provider lcpd:\n{}\n--- provider jobd:\n{}\n--- requester lcpd:\n{}\n--- requester payd:\n{}\n--- requester peerd:\n{}",
            n.provider.log("lcpd"),
            n.provider.log("jobd/w1") + &n.provider.log("jobd/w2"),
            n.requester.log("lcpd"),
            n.requester.log("payd"),
            n.requester.log("peerd")
        )
    });
    assert_eq!(result.as_deref(), Some(expected));
    let preimage = r.preimage.expect("preimage kept");
    assert_eq!(<[u8; 32]>::from(Sha256::digest(preimage)), q.payment_hash);
    assert_eq!(r.result_hash, Some(Sha256::digest(expected).into()));
    let (p, _) = wait_state(&n.pc, q.job_id, JobRole::Provider, "done").await;
    assert_eq!(p.payment_hash, q.payment_hash);
    // Paid exactly once: the requester's channel balance dropped by the price, no more.
    let cap = poll_until(PATIENCE, "usable channel", || outbound(&n.rc)).await.expect("capacity");
    assert_eq!(n.cap0 - cap, q.price_msat, "paid once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_lcpd_killed_while_the_paid_job_runs() {
    let mut n = nodes().await;
    let fifo = n.provider.dir.path().join("gate-run");
    let q = quote(&n, &fifo).await;
    execute(&n.rc, q.job_id).await;
    wait_state(&n.pc, q.job_id, JobRole::Provider, "running").await;
    let pc = n.pc.clone();
    restart(&mut n.provider, &pc, "lcpd").await;
    let _gate = FifoRelease::open(fifo, "after-provider-restart");
    assert_done_once(&n, &q, "after-provider-restart").await;
}

/// The worker is full with the killed lcpd's run when lcpd comes back: the new lcpd does not know
/// that run, cancels it, and runs the paid job again once the worker has room (a worker that
/// says it is full never fails a paid job).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_lcpd_killed_while_its_only_worker_is_full() {
    let mut n = nodes_with(&gate_worker_config(1, 1_000_000), &["w1"]).await;
    let fifo = n.provider.dir.path().join("gate-full");
    let q = quote(&n, &fifo).await;
    execute(&n.rc, q.job_id).await;
    wait_state(&n.pc, q.job_id, JobRole::Provider, "running").await;
    let pc = n.pc.clone();
    restart(&mut n.provider, &pc, "lcpd").await;
    poll_until(LONG, "the old run cancelled", || async {
        n.provider.log("lcpd").contains("cancelling a run that is not ours").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n--- provider lcpd:\n{}", n.provider.log("lcpd")));
    let _gate = FifoRelease::open(fifo, "after-the-full-worker");
    assert_done_once(&n, &q, "after-the-full-worker").await;
}

/// A worker dies while its SSE job waits for its first byte (the result has begun at lcpd, but
/// nothing of it went to the requester: lcpd holds the `stream_begin` until the first bytes). The
/// paid job runs again on the other worker and the requester gets one clean result stream.
/// (`"stream": true` makes the exec worker's result SSE, forwarded as it is written.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_worker_killed_before_the_first_sse_byte_reruns_the_paid_job() {
    let cfg = gate_worker_config(1, 1_000_000).replace(
        r#"argv = ["/bin/sh", "-c", "read -r p; read -r x < \"$p\"; printf '%s' \"$x\""]"#,
        r#"argv = ["/bin/sh", "-c", "p=$(sed -n 's/.*\"gate\":\"\\([^\"]*\\)\".*/\\1/p'); touch \"$p.run\"; read -r x < \"$p\"; printf '%s' \"$x\""]"#,
    );
    assert!(cfg.contains(".run"), "the gate command changed: {cfg}");
    let mut n = nodes_with(&cfg, &["w1", "w2"]).await;
    let fifo = n.provider.dir.path().join("gate-sse");
    let input = format!("{{\"stream\":true,\"gate\":\"{}\"}}", fifo.display());
    let q = quote_input(&n, &fifo, input.into_bytes()).await;
    execute(&n.rc, q.job_id).await;
    // The run has started (its worker sent the result's beginning before starting it).
    let marker = fifo.with_extension("run");
    poll_until(LONG, "the run started", || async { marker.exists().then_some(()) }).await.expect("run started");
    let busy = poll_until(PATIENCE, "the busy worker", || async {
        match lcpd(&n.pc, LcpdApi::ListWorkers).await.ok()? {
            LcpdApi::Workers(rows) => rows.into_iter().find(|w| w.running == 1).map(|w| w.id),
            _ => None,
        }
    })
    .await
    .expect("a worker runs the job");
    n.provider.kill(&busy).expect("kill the worker");
    let _gate = FifoRelease::open(fifo, "data: from-the-other-worker");
    assert_done_once(&n, &q, "data: from-the-other-worker").await;
    assert!(n.provider.log("lcpd").contains("worker gone"), "lcpd did not notice the dead worker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_lcpd_killed_after_the_quote_before_payment() {
    let mut n = nodes().await;
    let fifo = n.provider.dir.path().join("gate-quote");
    let q = quote(&n, &fifo).await;
    wait_state(&n.pc, q.job_id, JobRole::Provider, "quoted").await;
    let pc = n.pc.clone();
    restart(&mut n.provider, &pc, "lcpd").await;
    ready(&n.rc, &n.provider_id).await;
    let _gate = FifoRelease::open(fifo, "quoted-then-paid");
    execute(&n.rc, q.job_id).await;
    assert_done_once(&n, &q, "quoted-then-paid").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requester_lcpd_killed_while_awaiting_the_result() {
    let mut n = nodes().await;
    let fifo = n.provider.dir.path().join("gate-await");
    let q = quote(&n, &fifo).await;
    execute(&n.rc, q.job_id).await;
    wait_state(&n.rc, q.job_id, JobRole::Requester, "awaiting_result").await;
    wait_state(&n.pc, q.job_id, JobRole::Provider, "running").await;
    n.requester.kill("lcpd").expect("kill");
    // The job finishes at the provider while the requester's lcpd is away: its result is lost on
    // the way, and must be asked for again.
    let _gate = FifoRelease::open(fifo, "while-requester-away");
    wait_state(&n.pc, q.job_id, JobRole::Provider, "done").await;
    n.requester.start_daemon("lcpd").expect("start");
    assert_done_once(&n, &q, "while-requester-away").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requester_lcpd_killed_with_the_payment_in_flight() {
    payment_in_flight_across_restarts(false).await;
}

/// The same, with peerd frozen while payd starts again: payd's first request for peerd's sessions
/// goes unanswered, and payd asks again until peerd answers, then ends the session it did not see
/// begin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requester_payd_restarted_while_peerd_does_not_answer_with_the_payment_in_flight() {
    payment_in_flight_across_restarts(true).await;
}

async fn payment_in_flight_across_restarts(peerd_frozen: bool) {
    let mut n = nodes().await;
    let fifo = n.provider.dir.path().join("gate-pay");
    let q = quote(&n, &fifo).await;
    // payd is down: the payment cannot complete, its outcome stays unknown.
    n.requester.kill("payd").expect("kill payd");
    poll_until(PATIENCE, "payd gone", || async {
        let s = services(&n.rc).await.ok()?;
        (!s.iter().any(|x| x.id == ServiceId::Payd)).then_some(())
    })
    .await
    .expect("payd gone");
    execute(&n.rc, q.job_id).await;
    wait_state(&n.rc, q.job_id, JobRole::Requester, "paying").await;
    n.requester.kill("lcpd").expect("kill lcpd");
    // lcpd hosts the node's bus: it comes back first, then payd joins it.
    n.requester.start_daemon("lcpd").expect("lcpd");
    lcp::testkit::wait_services(&n.rc, &[ServiceId::Peerd, ServiceId::Lcpd]).await.expect("bus back");
    if peerd_frozen {
        n.requester.signal("peerd", libc::SIGSTOP).expect("freeze peerd");
    }
    n.requester.start_daemon("payd").expect("payd");
    if peerd_frozen {
        poll_until(PATIENCE, "payd asking again for peerd's sessions", || async {
            n.requester.log("payd").contains("peer list not available yet").then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", n.requester.log("payd")));
        n.requester.signal("peerd", libc::SIGCONT).expect("thaw peerd");
    }
    // The restarted payd ends the session it did not see begin; the persistent peer reconnects
    // and the channel is reestablished, then the payment lcpd asks for again goes through.
    let _gate = FifoRelease::open(fifo, "paid-after-restart");
    assert_done_once(&n, &q, "paid-after-restart").await;
}

// ---------------------------------------------------------------------------------------------
// The requester's lcpd killed right after paying, and a client waiting across an lcpd restart.
// ---------------------------------------------------------------------------------------------

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
