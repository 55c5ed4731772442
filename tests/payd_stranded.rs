//! A paid job whose HTLC is stranded on a channel closed by force (real processes).
//!
//! On devnet there is no chain: an HTLC in flight on a channel that closed by force is never
//! claimed nor timed out. payd ends such a payment `stranded` (not "failed": the payee may hold
//! the HTLC), lcpd ends the job that paid it as failed with a reason naming the stranded payment
//! and stops asking about it, and the operator sees both in `lcp-cli job list` and
//! `lcp-cli channel list`.
//!
//! The HTLC is held in flight without timing tricks: the provider's payd is down while the
//! requester pays, so the HTLC leaves but nobody answers it. The channel is then closed by force
//! with `lcp-cli channel close --force`.

use lcp::bus::api::lcpd::{JobRole, JobRow, LcpdApi, QuoteArgs, QuoteRow};
use lcp::bus::api::payd::{PaydApi, PaymentState};
use lcp::bus::api::Body;
use lcp::bus::{Bus, ServiceId};
use lcp::testkit::{gate_worker_config, poll_until, services, wait_services, ProcessNode, GATE_TASK, PATIENCE};
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

async fn lcpd(c: &Bus, req: LcpdApi) -> Result<LcpdApi, lcp::bus::BusError> {
    match c.request(&ServiceId::Lcpd, Body::Lcpd(req), T).await? {
        Body::Lcpd(p) => Ok(p),
        other => panic!("{other:?}"),
    }
}

async fn payd(c: &Bus, req: PaydApi) -> Result<PaydApi, lcp::bus::BusError> {
    match c.request(&ServiceId::Payd, Body::Payd(req), T).await? {
        Body::Payd(p) => Ok(p),
        other => panic!("{other:?}"),
    }
}

async fn job(c: &Bus, job_id: [u8; 32]) -> Option<JobRow> {
    match lcpd(c, LcpdApi::GetJob { job_id, with_result: false }).await.ok()? {
        LcpdApi::Job { rows, .. } => rows.into_iter().find(|r| r.role == JobRole::Requester),
        _ => None,
    }
}

async fn cli(dir: &Path, shown: &[&str]) -> String {
    let dir = dir.to_path_buf();
    let args: Vec<String> = shown.iter().map(|a| a.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(lcp::testkit::bin_path("lcp-cli")).arg("--datadir").arg(&dir).args(&args).output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(out.status.success(), "lcp-cli {shown:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The requester's channels: (channel id, outbound msat) of the usable one.
async fn usable_channel(c: &Bus) -> Option<(String, u64)> {
    match payd(c, PaydApi::ListChannels).await.ok()? {
        PaydApi::Channels(ch) => ch.into_iter().find(|c| c.is_usable).map(|c| (c.channel_id, c.outbound_capacity_msat)),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_paying_over_a_force_closed_channel_ends_stranded_and_is_shown() {
    let mut provider = ProcessNode::start_with_config(
        Some(&gate_worker_config(lcp::jobd::opts::DEFAULT_CAPACITY, 1_000_000)),
        &["w1"],
    )
    .expect("provider");
    let mut requester = ProcessNode::start(&[]).expect("requester");
    let (pc, rc) = (provider.client().await.unwrap(), requester.client().await.unwrap());
    let (provider_id, listen) = lcp::testkit::peerd_address(&pc).await.expect("peerd address");
    wait_services(&rc, &[ServiceId::Peerd, ServiceId::Payd, ServiceId::Lcpd]).await.unwrap();
    lcp::testkit::connect_with_channel(&rc, &provider_id, listen, true, 1_000_000).await.unwrap();
    poll_until(Duration::from_secs(60), "provider manifest at the requester", || async {
        match lcpd(&rc, LcpdApi::ListLcpPeers).await.ok()? {
            LcpdApi::LcpPeers(p) => p
                .into_iter()
                .find(|p| p.node_id == provider_id && p.manifest.tasks.iter().any(|t| t.task_kind == GATE_TASK)),
            _ => None,
        }
    })
    .await
    .unwrap();
    let (channel_id, cap0) = poll_until(PATIENCE, "usable channel", || usable_channel(&rc)).await.unwrap();

    let args = QuoteArgs {
        peer: provider_id.clone(),
        task_kind: GATE_TASK.into(),
        model: Some("gate".into()),
        input: b"/nonexistent\n".to_vec(),
        input_content_type: Some("text/plain".into()),
        max_price_msat: None,
        timeout_secs: Some(120),
    };
    let q: QuoteRow = match lcpd(&rc, LcpdApi::RequestQuote(args)).await.unwrap() {
        LcpdApi::Quote(q) => q,
        other => panic!("{other:?}"),
    };
    // Nobody answers the HTLC: the provider's payd is down.
    provider.kill("payd").unwrap();
    poll_until(PATIENCE, "provider's payd gone", || async {
        let s = services(&pc).await.ok()?;
        (!s.iter().any(|x| x.id == ServiceId::Payd)).then_some(())
    })
    .await
    .unwrap();
    let req = LcpdApi::Execute { job_id: q.job_id, max_price_msat: None, timeout_secs: Some(120) };
    assert_eq!(lcpd(&rc, req).await.unwrap(), LcpdApi::Executing { job_id: q.job_id });
    // The HTLC is on the channel: the outbound capacity dropped by the price.
    poll_until(PATIENCE, "the HTLC in flight", || async {
        usable_channel(&rc).await.filter(|(_, out)| *out + q.price_msat <= cap0)
    })
    .await
    .unwrap();
    assert_eq!(job(&rc, q.job_id).await.unwrap().state, "paying");

    // The operator closes the channel by force; devnet has no chain to resolve the HTLC.
    let closed = cli(requester.dir.path(), &["channel", "close", "--force", &channel_id]).await;
    assert!(closed.starts_with(&format!("closed: {channel_id}")), "{closed}");

    // The payment ends stranded, and the job that paid it fails saying so, not as "nothing paid".
    let row =
        poll_until(PATIENCE, "the job ends", || async { job(&rc, q.job_id).await.filter(|r| r.state != "paying") })
            .await
            .unwrap_or_else(|e| {
                panic!("{e}\nrequester lcpd:\n{}\npayd:\n{}", requester.log("lcpd"), requester.log("payd"))
            });
    assert_eq!(row.state, "failed");
    let error = row.error.clone().unwrap_or_default();
    assert!(error.starts_with("payment stranded: ") && error.contains("closed by force"), "{error}");
    assert!(!row.payment_unresolved, "a stranded payment is not asked about again");
    assert_eq!(row.preimage, None);
    match payd(&rc, PaydApi::LookupPayment { payment_hash: q.payment_hash }).await.unwrap() {
        PaydApi::PaymentInfo(Some(p)) => {
            assert_eq!(p.state, PaymentState::Stranded);
            assert!(p.failure.unwrap_or_default().contains("devnet has no chain"));
        }
        other => panic!("{other:?}"),
    }
    // Asked to pay again, payd answers the same and sends nothing.
    let again = PaydApi::Pay { bolt11: q.payment_request.clone(), max_fee_msat: 1_000, timeout_secs: 5 };
    assert!(
        matches!(payd(&rc, again).await.unwrap(), PaydApi::PaymentStranded { payment_hash, .. } if payment_hash == q.payment_hash)
    );

    // The operator sees it.
    let jobs = cli(requester.dir.path(), &["job", "list"]).await;
    let line = jobs.lines().find(|l| l.contains("payment stranded")).unwrap_or_else(|| panic!("{jobs}"));
    assert!(line.contains("failed"), "{line}");
    let channels = cli(requester.dir.path(), &["channel", "list"]).await;
    let line = channels.lines().find(|l| l.starts_with("closed: ")).unwrap_or_else(|| panic!("{channels}"));
    assert!(line.contains(&channel_id) && line.contains("1 HTLC(s) of ours") && line.contains("stranded"), "{line}");
    let json: serde_json::Value =
        serde_json::from_str(&cli(requester.dir.path(), &["--json", "channel", "list", "--closed"]).await).unwrap();
    assert_eq!(json[0]["channel_id"], channel_id.as_str());
    assert_eq!(json[0]["stranded_htlcs"], 1);
    let payments = cli(requester.dir.path(), &["payment", "list"]).await;
    assert!(payments.contains("stranded: channel"), "{payments}");

    // A restarted lcpd keeps the job ended and does not look the payment up again.
    let lookups_before = requester.log("lcpd").matches("will ask again").count();
    requester.kill("lcpd").unwrap();
    requester.start_daemon("lcpd").unwrap();
    wait_services(&rc, &[ServiceId::Peerd, ServiceId::Payd, ServiceId::Lcpd]).await.unwrap();
    let after = poll_until(PATIENCE, "job after restart", || job(&rc, q.job_id)).await.unwrap();
    assert_eq!((after.state.as_str(), after.payment_unresolved), ("failed", false));
    assert_eq!(requester.log("lcpd").matches("will ask again").count(), lookups_before);
    rc.close();
    pc.close();
}

/// The way the chaos run found it: payd restarts with a channel state older than its channel
/// monitor (the ChannelManager file of before the payment) and LDK closes the channel by force at
/// start, without the manager knowing the HTLC. The monitor knows it: the payment ends stranded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payd_restarted_with_a_stale_channel_manager_strands_the_payment_in_flight() {
    let mut requester = ProcessNode::start(&[]).unwrap();
    let mut provider = ProcessNode::start(&[]).unwrap();
    let (rc, pc) = (requester.client().await.unwrap(), provider.client().await.unwrap());
    let (provider_id, listen) = lcp::testkit::peerd_address(&pc).await.expect("peerd address");
    wait_services(&rc, &[ServiceId::Peerd, ServiceId::Payd, ServiceId::Lcpd]).await.unwrap();
    wait_services(&pc, &[ServiceId::Peerd, ServiceId::Payd, ServiceId::Lcpd]).await.unwrap();
    lcp::testkit::connect_with_channel(&rc, &provider_id, listen, true, 1_000_000).await.unwrap();
    let (channel_id, _) = poll_until(PATIENCE, "usable channel", || usable_channel(&rc)).await.unwrap();
    // Well above the dust limit, so the HTLC has an output in the commitment.
    let amount = 5_000_000;
    let req = PaydApi::CreateInvoice { amount_msat: amount, description_hash: [0x55; 32], expiry_secs: 600 };
    let (bolt11, hash) = match payd(&pc, req).await.unwrap() {
        PaydApi::Invoice { bolt11, payment_hash } => (bolt11, payment_hash),
        other => panic!("{other:?}"),
    };
    let manager = requester.dir.path().join("payd").join("channel_manager.bin");
    let stale = std::fs::read(&manager).unwrap();

    provider.kill("payd").unwrap();
    let pay = PaydApi::Pay { bolt11: bolt11.clone(), max_fee_msat: 1_000, timeout_secs: 2 };
    let e = payd(&rc, pay).await.unwrap_err().to_string();
    assert!(e.contains("still in flight"), "{e}");
    // The crash, and a restart from the state of before the payment.
    requester.kill("payd").unwrap();
    std::fs::write(&manager, &stale).unwrap();
    requester.start_daemon("payd").unwrap();

    let p = poll_until(PATIENCE, "the payment ends", || async {
        match payd(&rc, PaydApi::LookupPayment { payment_hash: hash }).await.ok()? {
            PaydApi::PaymentInfo(Some(p)) if p.state != PaymentState::Pending => Some(p),
            _ => None,
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nrequester payd:\n{}", requester.log("payd")));
    assert_eq!(p.state, PaymentState::Stranded, "{p:?}");
    assert!(p.failure.unwrap_or_default().contains(&channel_id));
    match payd(&rc, PaydApi::ListClosedChannels).await.unwrap() {
        PaydApi::ClosedChannels(v) => {
            assert_eq!(v.len(), 1, "{v:?}");
            assert_eq!((v[0].channel_id.as_str(), v[0].stranded_htlcs), (channel_id.as_str(), 1));
            assert_eq!(v[0].stranded_msat, amount);
        }
        other => panic!("{other:?}"),
    }
    let again = PaydApi::Pay { bolt11, max_fee_msat: 1_000, timeout_secs: 5 };
    assert!(matches!(payd(&rc, again).await.unwrap(), PaydApi::PaymentStranded { .. }));
    rc.close();
    pc.close();
}
