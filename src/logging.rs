//! tracing set-up: one target per service (`peerd`, `lcpd`, `jobd`, `payd`, `bus`, `node`, `cli`,
//! `wire`, `gateway`), levels from `-v`/`--log-level`, `RUST_LOG` overriding both.

use tracing_subscriber::EnvFilter;

/// The project's log targets.
pub const TARGETS: &[&str] = &["peerd", "lcpd", "jobd", "payd", "bus", "node", "cli", "wire", "gateway"];

/// The filter for a level or filter string: our targets at that level, dependencies at warn.
pub fn filter_for(level: &str) -> EnvFilter {
    if level.contains('=') || level.contains(',') {
        return EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    }
    let mut spec = String::from("warn");
    for t in TARGETS {
        spec.push_str(&format!(",{t}={level}"));
    }
    EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the global subscriber (once per process; later calls are no-ops). Logs go to stderr,
/// coloured only on a terminal (not into log files, `docker logs` or journald).
pub fn init(level: &str) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v).unwrap_or_else(|_| filter_for(level)),
        _ => filter_for(level),
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
}
