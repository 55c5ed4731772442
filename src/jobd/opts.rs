//! jobd's options: flags (`LCP_*` env), the `[jobd]` file section, and the resolved config.

use crate::bus::ServiceId;
use crate::config::{pick, ConfigError, NodeArgs, NodeConfig};
use serde::{Deserialize, Serialize};

/// `jobd` command line.
#[derive(clap::Parser, Debug)]
#[command(name = "jobd", version, about = "LCP node: a job worker (compute backends) on the bus")]
pub struct Opts {
    /// Shared options.
    #[command(flatten)]
    pub node: NodeArgs,
    /// jobd's own options.
    #[command(flatten)]
    pub jobd: JobdArgs,
}

/// jobd's own flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct JobdArgs {
    /// This worker's name on the bus, unique per node [default: HOSTNAME-PID]
    #[arg(long, env = "LCP_WORKER_NAME", value_name = "NAME")]
    pub worker_name: Option<String>,
}

/// `[jobd]` section of the config file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobdFile {
    /// See [`JobdArgs::worker_name`].
    pub worker_name: Option<String>,
}

/// Resolved jobd settings.
#[derive(Debug, Clone)]
pub struct JobdConfig {
    /// Shared settings.
    pub node: NodeConfig,
    /// Bus name of this worker.
    pub worker_name: String,
}

/// The default worker name: host name and process id, reduced to the allowed characters.
pub fn default_worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "jobd".into());
    let host: String =
        host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).take(40).collect();
    let host = if host.is_empty() { "jobd".to_string() } else { host };
    format!("{host}-{}", std::process::id())
}

impl JobdConfig {
    /// Flags/env over file over defaults.
    pub fn resolve(node: &NodeConfig, args: &JobdArgs, file: &JobdFile) -> Result<Self, ConfigError> {
        let worker_name = pick(args.worker_name.clone(), file.worker_name.clone(), default_worker_name());
        ServiceId::validate_instance(&worker_name)
            .map_err(|e| ConfigError::Invalid { what: "worker-name", msg: e.to_string() })?;
        Ok(Self { node: node.clone(), worker_name })
    }

    /// This worker's bus id.
    pub fn service_id(&self) -> ServiceId {
        ServiceId::Jobd(self.worker_name.clone())
    }
}
