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
        log_level: "warn".into(),
        config_file: None,
    };
    Ok(AllConfig {
        peerd: crate::peerd::PeerdConfig::resolve(
            &node,
            &crate::peerd::PeerdArgs { listen: Some("127.0.0.1:0".into()), ..Default::default() },
            &Default::default(),
        )?,
        lcpd: crate::lcpd::LcpdConfig::resolve(&node, &Default::default(), &Default::default())?,
        jobd: crate::jobd::JobdConfig::resolve(&node, &Default::default(), &Default::default())?,
        payd: crate::payd::PaydConfig::resolve(&node, &Default::default(), &Default::default())?,
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

/// Runs the demo.
pub fn run() -> anyhow::Result<()> {
    crate::logging::init("warn");
    let tmp = tempfile::tempdir()?;
    let provider = AllInOne::start(node_config(&tmp.path().join("provider"))?)?;
    let requester = AllInOne::start(node_config(&tmp.path().join("requester"))?)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let mut buses = Vec::new();
        for (name, dir) in [("provider", "provider"), ("requester", "requester")] {
            let cfg = node_config(&tmp.path().join(dir))?;
            let (bus, _) = crate::cli::connect(&cfg.node, false, Duration::from_secs(5)).await?;
            let up = wait_all_up(&bus, Duration::from_secs(10)).await?;
            println!("{name}: services up: {}", up.join(", "));
            buses.push(bus);
        }
        // The requester's peerd dials the provider's: BOLT #8 handshake and init exchange.
        let provider = crate::cli::status::list(&buses[0], Duration::from_secs(5)).await?;
        let peerd = provider.iter().find(|s| s.id == ServiceId::Peerd).ok_or_else(|| anyhow::anyhow!("no peerd"))?;
        let node_id = peerd.info.node_id.clone().ok_or_else(|| anyhow::anyhow!("peerd has no node id"))?;
        let listen = peerd.info.details.iter().find(|(k, _)| k == "listen").map(|(_, v)| v.clone()).unwrap_or_default();
        let req = crate::bus::api::PeerdApi::Connect { node_id, addr: listen.clone(), persistent: false };
        match buses[1].request(&ServiceId::Peerd, Body::Peerd(req), Duration::from_secs(15)).await? {
            Body::Peerd(crate::bus::api::PeerdApi::Connected(p)) => {
                println!("requester connected to provider {}@{listen} (session {})", p.node_id, p.session)
            }
            other => anyhow::bail!("unexpected answer from peerd: {other:?}"),
        }
        for b in buses {
            b.close();
        }
        Ok::<_, anyhow::Error>(())
    })?;
    println!("paid job: NOT YET. The LCP sessions that turn this connection into a quote, a devnet payment");
    println!("and a result stream are still being built; this command will run the whole paid job once they are in.");
    requester.shutdown()?;
    provider.shutdown()?;
    Ok(())
}
