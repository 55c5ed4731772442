//! jobd: a job worker; start as many as you like against one node's bus.
use clap::Parser;
use lcp::jobd::{self, opts::Opts, JobdConfig};
use lcp::node::{daemon_main, run_daemon, service_fn};

fn main() -> std::process::ExitCode {
    let opts = Opts::parse();
    daemon_main("jobd", || {
        let (node, file) = opts.node.resolve()?;
        let cfg = JobdConfig::resolve(&node, &opts.jobd, &file.jobd)?;
        let id = cfg.service_id();
        run_daemon(&node, id, false, service_fn(move |b, s| async move { Ok(jobd::run(cfg, b, s).await?) }))
    })
}
