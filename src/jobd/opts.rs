//! jobd's options: flags (`LCP_*` env), the `[jobd]` file section, and the resolved config.

use super::backend::{deterministic::DeterministicConfig, openai::OpenAiConfig, BackendConfig};
use super::pricing::PricingConfig;
use crate::bus::ServiceId;
use crate::config::{pick, ConfigError, NodeArgs, NodeConfig};
use serde::{Deserialize, Serialize};

/// Default number of jobs a worker runs at once.
pub const DEFAULT_CAPACITY: u32 = 4;

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

/// Which compute backend a worker runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// Fixed or echoed output: tests and demos.
    Deterministic,
    /// An OpenAI-compatible HTTP upstream (OpenAI, Ollama, llama.cpp, vLLM).
    Openai,
    /// A local command per task kind (configured in the file's [jobd.backend]).
    Exec,
}

/// jobd's own flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct JobdArgs {
    /// This worker's name on the bus, unique per node [default: HOSTNAME-PID]
    #[arg(long, env = "LCP_WORKER_NAME", value_name = "NAME")]
    pub worker_name: Option<String>,
    /// Jobs this worker runs at once [default: 4]
    #[arg(long, env = "LCP_WORKER_CAPACITY", value_name = "N")]
    pub capacity: Option<u32>,
    /// Compute backend [default: the file's [jobd.backend], else deterministic]
    #[arg(long, env = "LCP_COMPUTE_BACKEND", value_enum, value_name = "KIND")]
    pub compute_backend: Option<BackendKind>,
    /// Base URL of the OpenAI-compatible upstream [default: https://api.openai.com/v1]
    #[arg(long, env = "LCP_OPENAI_BASE_URL", value_name = "URL")]
    pub openai_base_url: Option<String>,
    /// API key of the upstream (prefer the environment: flags show in `ps`) [env OPENAI_API_KEY also works]
    #[arg(long, env = "LCP_OPENAI_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub openai_api_key: Option<String>,
    /// Models offered, comma-separated [default: the models of the price table]
    #[arg(long, env = "LCP_MODELS", value_delimiter = ',', value_name = "MODEL,...")]
    pub models: Option<Vec<String>>,
}

/// `[jobd]` section of the config file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobdFile {
    /// See [`JobdArgs::worker_name`].
    pub worker_name: Option<String>,
    /// See [`JobdArgs::capacity`].
    pub capacity: Option<u32>,
    /// `[jobd.backend]`: `kind = "deterministic" | "openai" | "exec"` and its settings.
    pub backend: Option<BackendConfig>,
    /// `[jobd.pricing]`: price table in msat per million tokens, limits, surge.
    pub pricing: Option<PricingConfig>,
}

/// Resolved jobd settings.
#[derive(Debug, Clone)]
pub struct JobdConfig {
    /// Shared settings.
    pub node: NodeConfig,
    /// Bus name of this worker.
    pub worker_name: String,
    /// Jobs run at once.
    pub capacity: u32,
    /// The backend.
    pub backend: BackendConfig,
    /// Pricing.
    pub pricing: PricingConfig,
}

/// The default worker name: host name and process id, reduced to the allowed characters.
pub fn default_worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "jobd".into());
    let host: String =
        host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).take(40).collect();
    let host = if host.is_empty() { "jobd".to_string() } else { host };
    format!("{host}-{}", std::process::id())
}

fn kind_of(b: &BackendConfig) -> BackendKind {
    match b {
        BackendConfig::Deterministic(_) => BackendKind::Deterministic,
        BackendConfig::Openai(_) => BackendKind::Openai,
        BackendConfig::Exec(_) => BackendKind::Exec,
    }
}

impl JobdConfig {
    /// Flags/env over file over defaults.
    pub fn resolve(node: &NodeConfig, args: &JobdArgs, file: &JobdFile) -> Result<Self, ConfigError> {
        let worker_name = pick(args.worker_name.clone(), file.worker_name.clone(), default_worker_name());
        ServiceId::validate_instance(&worker_name)
            .map_err(|e| ConfigError::Invalid { what: "worker-name", msg: e.to_string() })?;
        let capacity = pick(args.capacity, file.capacity, DEFAULT_CAPACITY);
        if capacity == 0 {
            return Err(ConfigError::Invalid { what: "capacity", msg: "must be at least 1".into() });
        }
        let mut backend = file.backend.clone().unwrap_or(BackendConfig::Deterministic(DeterministicConfig::default()));
        if let Some(kind) = args.compute_backend.filter(|k| *k != kind_of(&backend)) {
            backend = match kind {
                BackendKind::Deterministic => BackendConfig::Deterministic(DeterministicConfig::default()),
                BackendKind::Openai => BackendConfig::Openai(OpenAiConfig::default()),
                BackendKind::Exec => {
                    return Err(ConfigError::Invalid {
                        what: "compute-backend",
                        msg: "exec needs its commands in the config file ([jobd.backend] kind = \"exec\")".into(),
                    })
                }
            };
        }
        match &mut backend {
            BackendConfig::Openai(c) => {
                if let Some(u) = &args.openai_base_url {
                    c.base_url = u.clone();
                }
                if let Some(k) = &args.openai_api_key {
                    c.api_key = k.clone();
                }
                if c.api_key.is_empty() {
                    c.api_key = std::env::var("OPENAI_API_KEY").unwrap_or_default();
                }
                if let Some(m) = &args.models {
                    c.models = m.clone();
                }
            }
            BackendConfig::Deterministic(c) => {
                if let Some(m) = &args.models {
                    c.models = m.clone();
                }
            }
            BackendConfig::Exec(_) => {
                if args.models.is_some() || args.openai_base_url.is_some() {
                    return Err(ConfigError::Invalid {
                        what: "compute-backend",
                        msg: "--models/--openai-base-url do not apply to exec; its models are per command".into(),
                    });
                }
            }
        }
        Ok(Self {
            node: node.clone(),
            worker_name,
            capacity,
            backend,
            pricing: file.pricing.clone().unwrap_or_default(),
        })
    }

    /// This worker's bus id.
    pub fn service_id(&self) -> ServiceId {
        ServiceId::Jobd(self.worker_name.clone())
    }
}
