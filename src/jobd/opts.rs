//! jobd's options: flags (`LCP_*` env), the `[jobd]` file section, and the resolved config.

use super::backend::{deterministic::DeterministicConfig, openai::OpenAiConfig, BackendConfig};
use super::pricing::{parse_model_prices, PricingConfig};
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
    /// Task kinds the openai backend offers, comma-separated [default: openai.chat_completions.v1,openai.responses.v1];
    /// of these, only what the upstream serves is offered
    #[arg(long, env = "LCP_TASK_KINDS", value_delimiter = ',', value_name = "KIND,...")]
    pub task_kinds: Option<Vec<String>>,
    /// Price of a model in msat per million input and output tokens; repeat it or separate
    /// entries with commas. Set over the file's [jobd.pricing.models]; when given, the models
    /// offered default to those of the price table
    #[arg(long, env = "LCP_MODEL_PRICES", value_delimiter = ',', value_name = "MODEL=IN:OUT")]
    pub model_price: Option<Vec<String>>,
}

/// `[jobd]` section of the config file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobdFile {
    /// See [`JobdArgs::worker_name`].
    pub worker_name: Option<String>,
    /// See [`JobdArgs::capacity`].
    pub capacity: Option<u32>,
    /// `[jobd.backend]`: `kind = "deterministic" | "openai" | "exec"` and its settings, kept as
    /// a table until the flags are known: with `--compute-backend` the section may leave `kind`
    /// out (see [`JobdFile::backend_config`]).
    pub backend: Option<toml::Table>,
    /// `[jobd.pricing]`: price table in msat per million tokens, limits, surge.
    pub pricing: Option<PricingConfig>,
}

impl BackendKind {
    /// The name `kind` takes in the file.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Deterministic => "deterministic",
            BackendKind::Openai => "openai",
            BackendKind::Exec => "exec",
        }
    }
}

impl JobdFile {
    /// The file's `[jobd.backend]` as a backend of `kind` when the section names none (the
    /// flag's kind), or of the section's own `kind`; an error names what is wrong.
    pub fn backend_config(&self, kind: Option<BackendKind>) -> Result<Option<BackendConfig>, ConfigError> {
        let Some(table) = &self.backend else { return Ok(None) };
        let mut table = table.clone();
        if !table.contains_key("kind") {
            let Some(kind) = kind else {
                return Err(ConfigError::Invalid {
                    what: "[jobd.backend]",
                    msg:
                        "kind is required (\"deterministic\", \"openai\" or \"exec\") unless --compute-backend is given"
                            .into(),
                });
            };
            table.insert("kind".into(), toml::Value::String(kind.name().into()));
        }
        BackendConfig::deserialize(toml::Value::Table(table))
            .map(Some)
            .map_err(|e| ConfigError::Invalid { what: "[jobd.backend]", msg: e.to_string().trim().replace('\n', " ") })
    }
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
        let mut pricing = file.pricing.clone().unwrap_or_default();
        let prices = parse_model_prices(args.model_price.as_deref().unwrap_or_default())
            .map_err(|msg| ConfigError::Invalid { what: "model-price", msg })?;
        pricing.set_prices(&prices);
        // Priced on the command line: offer what is priced, unless --models says otherwise.
        let models = args.models.clone().or_else(|| (!prices.is_empty()).then(Vec::new));
        let mut backend = file
            .backend_config(args.compute_backend)?
            .unwrap_or(BackendConfig::Deterministic(DeterministicConfig::default()));
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
                if let Some(m) = &models {
                    c.models = m.clone();
                }
                if let Some(k) = &args.task_kinds {
                    c.task_kinds = k.iter().map(|k| k.trim().to_owned()).filter(|k| !k.is_empty()).collect();
                }
            }
            BackendConfig::Deterministic(_) | BackendConfig::Exec(_) if args.task_kinds.is_some() => {
                return Err(ConfigError::Invalid {
                    what: "task-kinds",
                    msg: "applies to the openai backend only".into(),
                });
            }
            BackendConfig::Deterministic(c) => {
                if let Some(m) = &models {
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
        Ok(Self { node: node.clone(), worker_name, capacity, backend, pricing })
    }

    /// This worker's bus id.
    pub fn service_id(&self) -> ServiceId {
        ServiceId::Jobd(self.worker_name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn resolve(args: &[&str], file: &str) -> Result<JobdConfig, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = crate::demo::node_config(dir.path()).expect("config").node;
        let opts = Opts::try_parse_from(std::iter::once("jobd").chain(args.iter().copied())).expect("flags parse");
        let file: JobdFile = toml::from_str(file).expect("file parses");
        JobdConfig::resolve(&node, &opts.jobd, &file)
    }

    fn offered(c: &JobdConfig) -> &[String] {
        match &c.backend {
            BackendConfig::Openai(o) => &o.models,
            BackendConfig::Deterministic(d) => &d.models,
            BackendConfig::Exec(_) => &[],
        }
    }

    const FILE: &str = r#"
        [backend]
        kind = "openai"
        models = ["llama3.2"]
        [pricing.models."llama3.2"]
        max_output_tokens = 100
        price = { input_msat_per_mtok = 1, output_msat_per_mtok = 2 }
    "#;

    #[test]
    fn model_prices_go_over_the_file_and_set_what_is_offered() {
        // Without the flag: the file's table and models.
        let c = resolve(&[], FILE).unwrap();
        assert_eq!(c.pricing.models.keys().collect::<Vec<_>>(), ["llama3.2"]);
        assert_eq!(offered(&c), ["llama3.2"]);

        // Repeated and comma-separated; the flag's price wins, the file's limit stays; the
        // offered models are the priced ones (an empty list: the backend offers its table).
        let c = resolve(&["--model-price", "llama3.2=10:20,gpt-4o-mini=150000:600000", "--model-price", "m=1:1"], FILE)
            .unwrap();
        assert_eq!(c.pricing.models.keys().collect::<Vec<_>>(), ["gpt-4o-mini", "llama3.2", "m"]);
        let l = &c.pricing.models["llama3.2"];
        assert_eq!(
            (l.price.input_msat_per_mtok, l.price.output_msat_per_mtok, l.max_output_tokens),
            (10, 20, Some(100))
        );
        assert_eq!(c.pricing.models["gpt-4o-mini"].price.output_msat_per_mtok, 600_000);
        assert!(offered(&c).is_empty());
        let pricer = crate::jobd::pricing::Pricer::new(&c.pricing).unwrap();
        assert_eq!(pricer.models().collect::<Vec<_>>(), ["gpt-4o-mini", "llama3.2", "m"]);

        // --models still decides what is offered.
        let c = resolve(&["--model-price", "gpt-4o-mini=1:2", "--models", "gpt-4o-mini"], FILE).unwrap();
        assert_eq!(offered(&c), ["gpt-4o-mini"]);

        // The one-command provider: no file, the openai backend, one priced model.
        let c = resolve(&["--compute-backend", "openai", "--model-price", "gpt-4o-mini=150000:600000"], "").unwrap();
        assert!(matches!(c.backend, BackendConfig::Openai(_)));
        assert!(offered(&c).is_empty());
        let pricer = crate::jobd::pricing::Pricer::new(&c.pricing).unwrap();
        assert_eq!(pricer.models().collect::<Vec<_>>(), ["gpt-4o-mini"]);
    }

    #[test]
    fn a_backend_section_without_kind_takes_the_flags_kind() {
        let file = r#"
            [backend]
            base_url = "http://127.0.0.1:1/v1"
            models = ["llama3.2"]
        "#;
        let c = resolve(&["--compute-backend", "openai"], file).unwrap();
        match &c.backend {
            BackendConfig::Openai(o) => {
                assert_eq!(o.base_url, "http://127.0.0.1:1/v1");
                assert_eq!(o.models, ["llama3.2"]);
            }
            other => panic!("{other:?}"),
        }
        // Without the flag the section must say its kind; a wrong setting is one line.
        let e = resolve(&[], file).unwrap_err().to_string();
        assert!(e.contains("kind is required"), "{e}");
        let e = resolve(&["--compute-backend", "openai"], "[backend]\nbase_url = 5\n").unwrap_err().to_string();
        assert!(e.starts_with("[jobd.backend]: ") && !e.contains('\n'), "{e}");
        // The section's own kind still counts, and a flag of another kind replaces it.
        let c = resolve(&[], FILE).unwrap();
        assert!(matches!(c.backend, BackendConfig::Openai(_)));
        let c = resolve(&["--compute-backend", "deterministic"], FILE).unwrap();
        assert!(matches!(c.backend, BackendConfig::Deterministic(_)));
    }

    #[test]
    fn task_kinds_choose_what_the_openai_backend_offers() {
        let kinds = |c: &JobdConfig| match &c.backend {
            BackendConfig::Openai(o) => o.task_kinds.clone(),
            other => panic!("{other:?}"),
        };
        // Default both; the flag (comma-separated) goes over the file's key.
        assert_eq!(kinds(&resolve(&[], FILE).unwrap()), ["openai.chat_completions.v1", "openai.responses.v1"]);
        let file = "[backend]\nkind = \"openai\"\ntask_kinds = [\"openai.responses.v1\"]\n";
        assert_eq!(kinds(&resolve(&[], file).unwrap()), ["openai.responses.v1"]);
        let c = resolve(&["--task-kinds", "openai.chat_completions.v1"], file).unwrap();
        assert_eq!(kinds(&c), ["openai.chat_completions.v1"]);
        // Only the openai backend has kinds to choose.
        let e = resolve(&["--task-kinds", "openai.chat_completions.v1"], "").unwrap_err().to_string();
        assert!(e.starts_with("task-kinds: "), "{e}");
    }

    #[test]
    fn malformed_model_prices_are_one_line_errors() {
        for bad in ["gpt-4o-mini", "gpt-4o-mini=1", "gpt-4o-mini=x:1", "=1:2", "a=1:2,a=2:3"] {
            let e = resolve(&["--model-price", bad], "").unwrap_err().to_string();
            assert!(e.starts_with("model-price: "), "{bad}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
