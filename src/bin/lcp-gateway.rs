//! lcp-gateway: the OpenAI-compatible HTTP gateway, joined to a node's bus.
use clap::Parser;
use lcp::bus::ServiceId;
use lcp::gateway::{self, opts::Opts, GatewayConfig};
use lcp::node::{daemon_main, run_daemon, service_fn};

fn main() -> std::process::ExitCode {
    let opts = Opts::parse();
    daemon_main("lcp-gateway", || {
        let (node, file) = opts.node.resolve()?;
        let cfg = GatewayConfig::resolve(&node, &opts.gateway, &file.gateway)?;
        run_daemon(
            &node,
            ServiceId::Gateway,
            false,
            service_fn(move |b, s| async move { Ok(gateway::run(cfg, b, s).await?) }),
        )
    })
}
