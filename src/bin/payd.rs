//! payd: payments, one service per process.
use clap::Parser;
use lcp::bus::ServiceId;
use lcp::lnd::LndOptions;
use lcp::node::{daemon_main, run_daemon, service_fn};
use lcp::payd::{self, opts::Opts, PaydConfig};
use lcp::peerd::opts::{check_pairing, transport_kind_outside};

fn main() -> std::process::ExitCode {
    let opts = Opts::parse();
    daemon_main("payd", || {
        let (node, file) = opts.node.resolve()?;
        let lnd = LndOptions::resolve(&opts.lnd, &file.lnd);
        let cfg = PaydConfig::resolve(&node, &opts.payd, &file.payd, &lnd)?;
        check_pairing(transport_kind_outside(&file.peerd)?, cfg.kind())?;
        run_daemon(
            &node,
            ServiceId::Payd,
            false,
            service_fn(move |b, s| async move { Ok(payd::run(cfg, b, s).await?) }),
        )
    })
}
