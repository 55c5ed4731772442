//! peerd: peer connections, one service per process.
use clap::Parser;
use lcp::bus::ServiceId;
use lcp::lnd::LndOptions;
use lcp::node::{daemon_main, run_daemon, service_fn};
use lcp::peerd::opts::{check_pairing, Opts};
use lcp::peerd::{self, PeerdConfig};

fn main() -> std::process::ExitCode {
    let opts = Opts::parse();
    daemon_main("peerd", || {
        let (node, file) = opts.node.resolve()?;
        let lnd = LndOptions::resolve(&opts.lnd, &file.lnd);
        let cfg = PeerdConfig::resolve(&node, &opts.peerd, &file.peerd, &lnd)?;
        check_pairing(cfg.transport.kind(), lcp::payd::opts::backend_kind_outside(&file.payd)?)?;
        run_daemon(
            &node,
            ServiceId::Peerd,
            false,
            service_fn(move |b, s| async move { Ok(peerd::run(cfg, b, s).await?) }),
        )
    })
}
