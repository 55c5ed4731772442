//! peerd: peer connections, one service per process.
use clap::Parser;
use lcp::bus::ServiceId;
use lcp::node::{daemon_main, run_daemon, service_fn};
use lcp::peerd::{self, opts::Opts, PeerdConfig};

fn main() -> std::process::ExitCode {
    let opts = Opts::parse();
    daemon_main("peerd", || {
        let (node, file) = opts.node.resolve()?;
        let cfg = PeerdConfig::resolve(&node, &opts.peerd, &file.peerd)?;
        run_daemon(
            &node,
            ServiceId::Peerd,
            false,
            service_fn(move |b, s| async move { Ok(peerd::run(cfg, b, s).await?) }),
        )
    })
}
