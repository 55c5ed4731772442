//! lcpnode: every service of an LCP node as threads in one process.
use clap::Parser;
use lcp::config::NodeArgs;
use lcp::gateway::{GatewayArgs, GatewayConfig};
use lcp::jobd::{JobdArgs, JobdConfig};
use lcp::lcpd::{LcpdArgs, LcpdConfig};
use lcp::lnd::{LndArgs, LndOptions};
use lcp::node::{daemon_main, AllConfig, AllInOne};
use lcp::payd::{PaydArgs, PaydConfig};
use lcp::peerd::{PeerdArgs, PeerdConfig};

/// `lcpnode` command line.
#[derive(Parser, Debug)]
#[command(name = "lcpnode", version, about = "LCP node: peerd, lcpd, jobd and payd as threads in one process")]
struct Opts {
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    peerd: PeerdArgs,
    #[command(flatten)]
    lcpd: LcpdArgs,
    #[command(flatten)]
    jobd: JobdArgs,
    #[command(flatten)]
    payd: PaydArgs,
    #[command(flatten)]
    lnd: LndArgs,
    #[command(flatten)]
    gateway: GatewayArgs,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(clap::Subcommand, Debug)]
enum Cmd {
    /// Run the node until SIGINT/SIGTERM (the default)
    Run,
    /// Start a provider and a requester on this machine and run a paid job between them
    Demo,
}

fn main() -> std::process::ExitCode {
    let opts = Opts::parse();
    daemon_main("lcpnode", || {
        let (node, file) = opts.node.resolve()?;
        let lnd = LndOptions::resolve(&opts.lnd, &file.lnd);
        let cfg = AllConfig {
            peerd: PeerdConfig::resolve(&node, &opts.peerd, &file.peerd, &lnd)?,
            lcpd: LcpdConfig::resolve(&node, &opts.lcpd, &file.lcpd)?,
            jobd: JobdConfig::resolve(&node, &opts.jobd, &file.jobd)?,
            payd: PaydConfig::resolve(&node, &opts.payd, &file.payd, &lnd)?,
            node,
        };
        lcp::peerd::opts::check_pairing(cfg.peerd.transport.kind(), cfg.payd.kind())?;
        let gateway = GatewayConfig::resolve_enabled(&cfg.node, &opts.gateway, &file.gateway)?;
        match opts.cmd.unwrap_or(Cmd::Run) {
            Cmd::Run => run(cfg, gateway),
            Cmd::Demo => lcp::demo::run(),
        }
    })
}

fn run(cfg: AllConfig, gateway: Option<GatewayConfig>) -> anyhow::Result<()> {
    lcp::logging::init(&cfg.node.log_level);
    let mut node = AllInOne::start(cfg)?;
    if let Some(g) = gateway {
        node.start_gateway(g)?;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let token = node.shutdown_token();
    rt.block_on(async {
        lcp::node::spawn_signal_handler(token.clone())?;
        token.cancelled().await;
        Ok::<_, std::io::Error>(())
    })?;
    node.shutdown()
}
