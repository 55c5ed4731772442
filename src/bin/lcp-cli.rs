//! lcp-cli: operator and requester commands for an LCP node.
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = lcp::cli::Cli::parse();
    lcp::logging::init(if cli.node.verbose > 0 { "debug" } else { "warn" });
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lcp-cli: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(lcp::cli::run(cli)) {
        Ok(out) => {
            use std::io::Write;
            if out.is_empty() {
                return ExitCode::SUCCESS;
            }
            // A closed pipe (`| head`) is not an error worth a panic.
            match writeln!(std::io::stdout(), "{out}") {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("lcp-cli: error: writing output: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("lcp-cli: error: {}", e.to_string().replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
