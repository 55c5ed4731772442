//! A chaos run, bounded: two nodes, each as separate processes (lcpd hosting the bus, peerd, payd,
//! and the provider's two jobd workers), paid jobs from several clients at a time, while a killer
//! SIGKILLs a random daemon of either node and starts it again. Then, from the nodes' own records:
//! every daemon is back, no job was paid twice, every settled invoice has a provider job that
//! finished, and every requester job whose payment went through ends `done` with the provider's
//! result (or, when no result can ever come, ends at all: nothing stays `paying`).
//!
//! The killer's pauses are the load's pace, not an ordering of events: whatever a kill lands on,
//! the invariants must hold. The seed is printed; `LCP_CHAOS_SEED=N` replays a run's choices (the
//! timing of the processes still differs). `LCP_CHAOS_KILLS=N` changes the number of kills.

use lcp::bus::api::lcpd::{JobRole, JobRow, LcpdApi, QuoteArgs};
use lcp::bus::api::payd::{InvoiceState, PaydApi, PaymentState};
use lcp::bus::api::Body;
use lcp::bus::{Bus, ServiceId};
use lcp::testkit::{poll_until, wait_services, ProcessNode};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);
const MODEL: &str = "gpt-5.2";
const CHAT: &str = "openai.chat_completions.v1";
/// How long the nodes get, after the last kill, to bring every job to its end (a job's own
/// deadline is 120 s, long enough that no kill makes a healthy job miss it).
const SETTLE: Duration = Duration::from_secs(180);
const CLIENTS: usize = 3;
const PROVIDER_DAEMONS: [&str; 5] = ["lcpd", "peerd", "payd", "jobd/w1", "jobd/w2"];
const REQUESTER_DAEMONS: [&str; 3] = ["lcpd", "peerd", "payd"];

/// xorshift64*: enough randomness for choosing kills, and replayable from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

async fn lcpd(c: &Bus, req: LcpdApi) -> anyhow::Result<LcpdApi> {
    match c.request(&ServiceId::Lcpd, Body::Lcpd(req), T).await? {
        Body::Lcpd(p) => Ok(p),
        other => anyhow::bail!("unexpected answer {other:?}"),
    }
}

async fn payd(c: &Bus, req: PaydApi) -> anyhow::Result<PaydApi> {
    match c.request(&ServiceId::Payd, Body::Payd(req), T).await? {
        Body::Payd(p) => Ok(p),
        other => anyhow::bail!("unexpected answer {other:?}"),
    }
}

async fn jobs(c: &Bus, role: JobRole) -> anyhow::Result<Vec<JobRow>> {
    match lcpd(c, LcpdApi::ListJobs { limit: 10_000 }).await? {
        LcpdApi::Jobs(rows) => Ok(rows.into_iter().filter(|r| r.role == role).collect()),
        other => anyhow::bail!("unexpected answer {other:?}"),
    }
}

fn terminal(state: &str) -> bool {
    matches!(state, "done" | "failed" | "cancelled" | "expired")
}

/// A requester job at rest: ended, or quoted and never accepted (a client whose `Execute` did not
/// reach lcpd leaves it so; nothing was paid and the quote expires by itself).
fn at_rest(state: &str) -> bool {
    terminal(state) || state == "quoted"
}

/// One client: quote, execute, wait for the job's end (bounded), again, until told to stop.
/// Every job id it quoted is recorded, whatever happened to it afterwards.
async fn client(rc: Bus, provider: String, n: usize, stop: Arc<AtomicBool>, quoted: Arc<Mutex<Vec<[u8; 32]>>>) {
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let body = format!(r#"{{"model":"{MODEL}","messages":[{{"role":"user","content":"chaos {n} {i}"}}]}}"#);
        let args = QuoteArgs {
            peer: provider.clone(),
            task_kind: CHAT.into(),
            model: Some(MODEL.into()),
            input: body.into_bytes(),
            input_content_type: None,
            max_price_msat: None,
            timeout_secs: Some(120),
        };
        let q = match lcpd(&rc, LcpdApi::RequestQuote(args)).await {
            Ok(LcpdApi::Quote(q)) => q,
            // lcpd, peerd or the provider is down or the manifest is not back yet: try again
            // once the bus answers (the request itself waits up to T).
            _ => {
                let _ = wait_services(&rc, &[ServiceId::Lcpd]).await;
                continue;
            }
        };
        quoted.lock().expect("lock").push(q.job_id);
        let exec = LcpdApi::Execute { job_id: q.job_id, max_price_msat: None, timeout_secs: Some(120) };
        if lcpd(&rc, exec).await.is_err() {
            continue;
        }
        let _ = poll_until(Duration::from_secs(40), "job end", || async {
            match lcpd(&rc, LcpdApi::GetJob { job_id: q.job_id, with_result: false }).await.ok()? {
                LcpdApi::Job { rows, .. } => {
                    rows.into_iter().find(|r| r.role == JobRole::Requester && terminal(&r.state))
                }
                _ => None,
            }
        })
        .await;
    }
}

/// The warnings and errors in every daemon log of these nodes, for a failure's message.
fn warnings(nodes: &[(&ProcessNode, &str)]) -> String {
    let mut out = String::new();
    for (node, name) in nodes {
        for daemon in ["lcpd", "peerd", "payd", "jobd/w1", "jobd/w2"] {
            for line in node.log(daemon).lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")) {
                out.push_str(&format!("{name} {daemon}: {line}\n"));
            }
        }
    }
    out
}

/// Kills a daemon and starts it again; a provider's peerd listens where it did, as a real
/// provider's does (the requester redials the address it knows).
fn restart(node: &mut ProcessNode, daemon: &str, listen: Option<&str>) -> anyhow::Result<()> {
    node.kill(daemon)?;
    match (daemon.strip_prefix("jobd/"), listen) {
        (Some(worker), _) => node.start_worker(worker),
        (None, Some(addr)) if daemon == "peerd" => {
            let ep = node.endpoint.to_string();
            node.spawn("peerd", "peerd", &["--bus", &ep, "--listen", addr])
        }
        (None, _) => node.start_daemon(daemon),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_kills_of_every_daemon_under_paid_jobs_lose_nothing() {
    let seed =
        std::env::var("LCP_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| rand::random::<u64>() | 1);
    let kills: usize = std::env::var("LCP_CHAOS_KILLS").ok().and_then(|s| s.parse().ok()).unwrap_or(16);
    println!("chaos seed {seed}, {kills} kills");
    let mut rng = Rng(seed);

    let mut provider = ProcessNode::start(&["w1", "w2"]).expect("provider");
    let mut requester = ProcessNode::start(&[]).expect("requester");
    let (pc, rc) = (provider.client().await.expect("pc"), requester.client().await.expect("rc"));
    let (provider_id, listen) = lcp::testkit::peerd_address(&pc).await.expect("peerd address");
    wait_services(&rc, &[ServiceId::Peerd, ServiceId::Payd, ServiceId::Lcpd]).await.expect("requester up");
    lcp::testkit::connect_with_channel(&rc, &provider_id, listen.clone(), true, 5_000_000).await.expect("channel");
    lcp::testkit::wait_offer(&rc, &provider_id, MODEL).await.expect("offer");

    let stop = Arc::new(AtomicBool::new(false));
    let quoted = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| tokio::spawn(client(rc.clone(), provider_id.clone(), n, stop.clone(), quoted.clone())))
        .collect();

    let mut log = Vec::new();
    for _ in 0..kills {
        // 1 to 3 s between kills, as an operator's bad day might have it.
        tokio::time::sleep(Duration::from_millis(1000 + rng.below(2000))).await;
        let on_provider =
            rng.below(PROVIDER_DAEMONS.len() as u64 + REQUESTER_DAEMONS.len() as u64) < PROVIDER_DAEMONS.len() as u64;
        let (node, name, daemon, addr) = if on_provider {
            let d = PROVIDER_DAEMONS[rng.below(PROVIDER_DAEMONS.len() as u64) as usize];
            (&mut provider, "provider", d, Some(listen.as_str()))
        } else {
            let d = REQUESTER_DAEMONS[rng.below(REQUESTER_DAEMONS.len() as u64) as usize];
            (&mut requester, "requester", d, None)
        };
        restart(node, daemon, addr).expect("restart");
        log.push(format!("{name} {daemon}"));
    }
    println!("killed and restarted: {}", log.join(", "));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client task");
    }

    // Every daemon is back.
    let all = [ServiceId::Peerd, ServiceId::Payd, ServiceId::Lcpd];
    wait_services(&rc, &all).await.expect("requester daemons back");
    let mut provider_all = all.to_vec();
    provider_all.extend([ServiceId::Jobd("w1".into()), ServiceId::Jobd("w2".into())]);
    wait_services(&pc, &provider_all).await.expect("provider daemons back");

    let quoted: BTreeSet<[u8; 32]> = quoted.lock().expect("lock").iter().copied().collect();
    println!("{} jobs quoted", quoted.len());
    assert!(quoted.len() >= 5, "the clients got too few quotes to prove anything: {}", quoted.len());

    // Nothing stays in between: every requester job ends, and every provider job whose invoice
    // was settled ends too.
    let settled = poll_until(SETTLE, "every job at its end", || async {
        let req = jobs(&rc, JobRole::Requester).await.ok()?;
        let prov = jobs(&pc, JobRole::Provider).await.ok()?;
        let invoices = match payd(&pc, PaydApi::ListInvoices).await.ok()? {
            PaydApi::Invoices(i) => i,
            _ => return None,
        };
        let paid: BTreeSet<[u8; 32]> =
            invoices.iter().filter(|i| i.state == InvoiceState::Settled).map(|i| i.payment_hash).collect();
        let req_open = req.iter().any(|r| quoted.contains(&r.job_id) && !at_rest(&r.state));
        let prov_open = prov.iter().any(|r| paid.contains(&r.payment_hash) && !terminal(&r.state));
        (!req_open && !prov_open).then_some((req, prov, invoices))
    })
    .await;
    let (req, prov, invoices) = match settled {
        Ok(v) => v,
        Err(e) => {
            let req = jobs(&rc, JobRole::Requester).await.unwrap_or_default();
            let open: Vec<_> = req.iter().filter(|r| !at_rest(&r.state)).collect();
            panic!(
                "{e} (seed {seed}, kills: {}); requester jobs not ended: {open:#?}\n{}",
                log.join(", "),
                warnings(&[(&provider, "provider"), (&requester, "requester")])
            );
        }
    };

    // No job was paid twice: at the provider, one settled invoice per job at most, and every
    // settled invoice belongs to a provider job that ended `done`.
    let prov_by_hash: BTreeMap<[u8; 32], &JobRow> = prov.iter().map(|r| (r.payment_hash, r)).collect();
    let mut settled_jobs = BTreeSet::new();
    for inv in invoices.iter().filter(|i| i.state == InvoiceState::Settled) {
        let job = prov_by_hash.get(&inv.payment_hash).unwrap_or_else(|| {
            panic!("settled invoice {} has no provider job (seed {seed})", hex::encode(inv.payment_hash))
        });
        assert_eq!(job.state, "done", "a paid provider job did not finish: {job:#?} (seed {seed})");
        assert!(settled_jobs.insert(job.job_id), "job {} paid twice (seed {seed})", hex::encode(job.job_id));
        assert_eq!(inv.amount_received_msat, Some(inv.amount_msat), "invoice paid a wrong amount");
    }

    // At the requester: payd made at most one payment per job, and no payment hash twice.
    let payments = match payd(&rc, PaydApi::ListPayments).await.expect("payments") {
        PaydApi::Payments(p) => p,
        other => panic!("{other:?}"),
    };
    let mut hashes = BTreeSet::new();
    for p in &payments {
        assert!(hashes.insert(p.payment_hash), "payment hash {} recorded twice", hex::encode(p.payment_hash));
    }
    let succeeded: BTreeSet<[u8; 32]> =
        payments.iter().filter(|p| p.state == PaymentState::Succeeded).map(|p| p.payment_hash).collect();

    // A requester job whose payment went through and whose provider finished ends `done`, with the
    // provider's result and a preimage that hashes to the payment hash.
    let mut done = 0;
    for r in req.iter().filter(|r| quoted.contains(&r.job_id)) {
        if let Some(pre) = r.preimage {
            assert_eq!(Sha256::digest(pre).as_slice(), r.payment_hash, "wrong preimage recorded");
        }
        let Some(p) = prov.iter().find(|p| p.job_id == r.job_id) else { continue };
        let paid = r.preimage.is_some() || succeeded.contains(&r.payment_hash);
        if paid && p.state == "done" {
            assert_eq!(
                r.state,
                "done",
                "a paid job whose provider finished did not end done: {r:#?} provider: {p:#?} (seed {seed}, kills: {})",
                log.join(", ")
            );
            assert_eq!(r.result_hash, p.result_hash, "requester and provider hold different results");
            done += 1;
        }
    }
    let mut states: BTreeMap<&str, usize> = BTreeMap::new();
    for r in req.iter().filter(|r| quoted.contains(&r.job_id)) {
        *states.entry(r.state.as_str()).or_default() += 1;
    }
    println!(
        "{done} paid jobs done; {} settled invoices; {} payments; requester jobs by state: {states:?}",
        settled_jobs.len(),
        payments.len()
    );
    assert!(done > 0, "no paid job finished under the chaos run (seed {seed})");
}
