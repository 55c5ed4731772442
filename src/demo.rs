//! `lcpnode demo`: the main job on the embedded default. Two nodes (a provider and a requester)
//! on this machine, each with every service on its own bus.

use crate::bus::{api::Body, api::Ctl, Bus, ServiceId};
use crate::config::{Network, NodeConfig};
use crate::node::{AllConfig, AllInOne, SERVICES};
use std::time::{Duration, Instant};

/// Builds the config of a node whose data directory is `dir`, with its bus on a unix socket there.
pub fn node_config(dir: &std::path::Path) -> anyhow::Result<AllConfig> {
    let node = NodeConfig {
        datadir: dir.to_path_buf(),
        network: Network::Devnet,
        bus: format!("ipc://{}", dir.join("bus.sock").display()).parse()?,
        bus_key: dir.join("bus").join("client.key"),
        bus_server_key: None,
        node_key: dir.join(crate::datadir::NODE_KEY_FILE),
        log_level: "warn".into(),
        config_file: None,
    };
    Ok(AllConfig {
        peerd: crate::peerd::PeerdConfig::resolve(
            &node,
            &crate::peerd::PeerdArgs { listen: Some("127.0.0.1:0".into()), ..Default::default() },
            &Default::default(),
            &Default::default(),
        )?,
        lcpd: crate::lcpd::LcpdConfig::resolve(&node, &Default::default(), &Default::default())?,
        jobd: crate::jobd::JobdConfig::resolve(&node, &Default::default(), &Default::default())?,
        payd: crate::payd::PaydConfig::resolve(&node, &Default::default(), &Default::default(), &Default::default())?,
        node,
    })
}

/// Waits (polling the broker) until every service of a node is registered.
pub async fn wait_all_up(bus: &Bus, timeout: Duration) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + timeout;
    loop {
        let b = bus.request(&ServiceId::Broker, Body::Ctl(Ctl::ListServices), Duration::from_secs(2)).await?;
        if let Body::Ctl(Ctl::Services(s)) = b {
            let kinds: Vec<String> = s.iter().map(|s| s.id.kind().to_string()).collect();
            if SERVICES.iter().all(|k| kinds.iter().any(|x| x == k)) {
                return Ok(s
                    .iter()
                    .filter(|s| !matches!(s.id, ServiceId::Client(_)))
                    .map(|s| s.id.to_string())
                    .collect());
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("not every service registered within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The model the demo asks for (in the default pricing table of the deterministic backend).
pub const DEMO_MODEL: &str = "gpt-5.2";

/// Runs the demo.
pub fn run() -> anyhow::Result<()> {
    crate::logging::init("warn");
    let tmp = tempfile::tempdir()?;
    let provider = AllInOne::start(node_config(&tmp.path().join("provider"))?)?;
    let requester = AllInOne::start(node_config(&tmp.path().join("requester"))?)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let r = rt.block_on(async {
        let mut buses = Vec::new();
        for (name, dir) in [("provider", "provider"), ("requester", "requester")] {
            let cfg = node_config(&tmp.path().join(dir))?;
            let (bus, _) = crate::cli::connect(&cfg.node, false, Duration::from_secs(5)).await?;
            let up = wait_all_up(&bus, Duration::from_secs(10)).await?;
            println!("{name}: services up: {}", up.join(", "));
            buses.push(bus);
        }
        let r = paid_job(&buses[0], &buses[1]).await;
        for b in buses {
            b.close();
        }
        r
    });
    requester.shutdown()?;
    provider.shutdown()?;
    r
}

/// The paid job between two running nodes: connect, open a devnet channel, quote, check, pay,
/// stream the result; prints each step and fails unless every check holds.
pub async fn paid_job(provider: &Bus, requester: &Bus) -> anyhow::Result<()> {
    use crate::bus::api::lcpd::{JobEvent, JobOutcomeRow, LcpdApi, QuoteArgs};
    use crate::bus::api::payd::PaydApi;
    use crate::bus::api::PeerdApi;
    use sha2::{Digest, Sha256};
    const T: Duration = Duration::from_secs(30);
    // The requester's peerd dials the provider's: BOLT #8 handshake and init exchange.
    let (node_id, listen) = crate::testkit::peerd_address(provider).await?;
    let req = PeerdApi::Connect { node_id: node_id.clone(), addr: listen.clone(), persistent: false };
    match requester.request(&ServiceId::Peerd, Body::Peerd(req), Duration::from_secs(15)).await? {
        Body::Peerd(PeerdApi::Connected(p)) => {
            println!("requester connected to provider {}@{listen} (session {})", p.node_id, p.session)
        }
        other => anyhow::bail!("unexpected answer from peerd: {other:?}"),
    }
    // The provider's manifest, with what its worker offers.
    crate::testkit::poll_until(T, "provider's LCP manifest", || async {
        match requester.request(&ServiceId::Lcpd, Body::Lcpd(LcpdApi::ListLcpPeers), T).await {
            Ok(Body::Lcpd(LcpdApi::LcpPeers(p))) => p.into_iter().find(|p| {
                p.node_id == node_id && p.manifest.tasks.iter().any(|t| t.model.as_deref() == Some(DEMO_MODEL))
            }),
            _ => None,
        }
    })
    .await?;
    println!("provider's manifest offers {} for {}", DEMO_MODEL, crate::wire::lcp::v02::TASK_OPENAI_CHAT);
    let input =
        format!(r#"{{"model":"{DEMO_MODEL}","messages":[{{"role":"user","content":"Say hello over Lightning."}}]}}"#);
    let args = QuoteArgs {
        peer: node_id.clone(),
        task_kind: crate::wire::lcp::v02::TASK_OPENAI_CHAT.into(),
        model: Some(DEMO_MODEL.into()),
        input: input.into_bytes(),
        input_content_type: None,
        max_price_msat: Some(1_000_000),
        timeout_secs: Some(60),
    };
    let q = match requester.request(&ServiceId::Lcpd, Body::Lcpd(LcpdApi::RequestQuote(args)), T).await? {
        Body::Lcpd(LcpdApi::Quote(q)) => q,
        other => anyhow::bail!("unexpected answer from lcpd: {other:?}"),
    };
    let inv = crate::payd::backend::decode_bolt11(&q.payment_request)?;
    let dh_ok = inv.description_hash == Some(q.terms_hash);
    let payee_ok = hex::encode(inv.payee.serialize()) == q.peer;
    println!("quote: job {} price {} msat", hex::encode(q.job_id), q.price_msat);
    println!("  peer        {}", q.peer);
    println!("  terms hash  {}", hex::encode(q.terms_hash));
    println!("  invoice     description_hash == terms_hash: {dh_ok}, payee == peer: {payee_ok}");
    anyhow::ensure!(dh_ok && payee_ok, "the invoice does not commit to the quote");
    let mut rx = requester.take_incoming().ok_or_else(|| anyhow::anyhow!("bus queue taken"))?;
    let exec = LcpdApi::Execute { job_id: q.job_id, max_price_msat: Some(q.price_msat), timeout_secs: Some(60) };
    match requester.request(&ServiceId::Lcpd, Body::Lcpd(exec), T).await? {
        Body::Lcpd(LcpdApi::Executing { .. }) => {}
        other => anyhow::bail!("unexpected answer from lcpd: {other:?}"),
    }
    let mut result = Vec::new();
    let mut preimage_ok = false;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(70), rx.recv())
            .await
            .map_err(|_| anyhow::anyhow!("no result within 70 s"))?
            .ok_or_else(|| anyhow::anyhow!("bus closed"))?;
        let Body::Lcpd(LcpdApi::JobEvent { job_id, event }) = m.body else { continue };
        if job_id != q.job_id {
            continue;
        }
        match event {
            JobEvent::Paid { payment_hash, preimage, price_msat } => {
                preimage_ok = <[u8; 32]>::from(Sha256::digest(preimage)) == payment_hash;
                println!("paid {price_msat} msat over the devnet channel");
                println!("  payment hash {}", hex::encode(payment_hash));
                println!("  preimage     {} (sha256(preimage) == payment hash: {preimage_ok})", hex::encode(preimage));
            }
            JobEvent::Chunk(c) => result.extend_from_slice(&c),
            JobEvent::Begin { .. } | JobEvent::End { .. } => {}
            JobEvent::Result(JobOutcomeRow::Ok { content_type, len, sha256 }) => {
                println!("result ({len} bytes, {content_type}, sha256 {}, verified):", hex::encode(sha256));
                println!("  {}", String::from_utf8_lossy(&result));
                break;
            }
            JobEvent::Result(other) => anyhow::bail!("the job did not succeed: {other:?}"),
        }
    }
    anyhow::ensure!(preimage_ok, "the payment's preimage does not match its hash");
    let channels = match requester.request(&ServiceId::Payd, Body::Payd(PaydApi::ListChannels), T).await? {
        Body::Payd(PaydApi::Channels(c)) => c,
        other => anyhow::bail!("unexpected answer from payd: {other:?}"),
    };
    for c in channels.iter().filter(|c| c.counterparty == node_id) {
        println!(
            "devnet channel {} ({} sat) opened for the job, {} msat left to spend",
            c.channel_id, c.capacity_sat, c.outbound_capacity_msat
        );
    }
    println!("paid job: OK");
    Ok(())
}
