//! lcpd: LCP sessions; also hosts the node's bus broker when services run as separate processes.
use clap::Parser;
use lcp::bus::ServiceId;
use lcp::lcpd::{self, opts::Opts, LcpdConfig};
use lcp::node::{daemon_main, run_daemon, service_fn};

fn main() -> std::process::ExitCode {
    let opts = Opts::parse();
    daemon_main("lcpd", || {
        let (node, file) = opts.node.resolve()?;
        let cfg = LcpdConfig::resolve(&node, &opts.lcpd, &file.lcpd)?;
        run_daemon(&node, ServiceId::Lcpd, true, service_fn(move |b, s| async move { Ok(lcpd::run(cfg, b, s).await?) }))
    })
}
