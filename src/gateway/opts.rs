//! The gateway's options: flags (`LCP_GATEWAY_*` env), the `[gateway]` file section, and the
//! resolved config.

use super::choice::ModelMap;
use crate::config::{pick, ConfigError, NodeArgs, NodeConfig};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `lcp-gateway` command line.
#[derive(clap::Parser, Debug)]
#[command(
    name = "lcp-gateway",
    version,
    about = "LCP node: an OpenAI-compatible HTTP gateway that buys each request as a paid LCP job"
)]
pub struct Opts {
    /// Shared options.
    #[command(flatten)]
    pub node: NodeArgs,
    /// The gateway's own options.
    #[command(flatten)]
    pub gateway: GatewayArgs,
}

/// Default HTTP address of the standalone gateway (loopback only).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default time for listing peers and getting every quote, seconds.
pub const DEFAULT_QUOTE_TIMEOUT_SECS: u64 = 10;
/// Default time from `Execute` to the first byte of the result, seconds (a model may think long
/// before its first token).
pub const DEFAULT_FIRST_BYTE_TIMEOUT_SECS: u64 = 120;
/// Default longest silence between two result chunks once the result has begun, seconds. There is
/// no bound on a result's whole length: a long generation that keeps flowing is not cut.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
/// Largest request body accepted (the reference's limit): larger bodies get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Connections served at once; more wait in the listen queue.
pub const MAX_CONNECTIONS: usize = 1024;
/// The gateway's database in the data directory (the day's spending).
pub const DB_FILE: &str = "gateway.db";

/// The gateway's own flags. Its `Debug` never shows the API keys.
#[derive(clap::Args, Clone, Default)]
pub struct GatewayArgs {
    /// HTTP address of the OpenAI-compatible gateway (lcp-gateway default: 127.0.0.1:8080; lcpnode
    /// runs the gateway only when this is set)
    #[arg(long, env = "LCP_GATEWAY_LISTEN", value_name = "HOST:PORT")]
    pub gateway_listen: Option<String>,
    /// Bearer keys accepted on /v1/*, comma-separated; none: no authentication (prefer the
    /// environment: flags show in `ps`)
    #[arg(long, env = "LCP_GATEWAY_API_KEYS", value_delimiter = ',', hide_env_values = true, value_name = "KEY,...")]
    pub gateway_api_keys: Option<Vec<String>>,
    /// Refuse to pay more than this for one request (0: no ceiling)
    #[arg(long, env = "LCP_GATEWAY_MAX_PRICE_MSAT", value_name = "MSAT")]
    pub gateway_max_price_msat: Option<u64>,
    /// Refuse requests once the paid prices of the day (UTC) would exceed this (0: no budget)
    #[arg(long, env = "LCP_GATEWAY_DAILY_BUDGET_MSAT", value_name = "MSAT")]
    pub gateway_daily_budget_msat: Option<u64>,
    /// Send a model to a fixed provider, comma-separated MODEL=NODEID entries
    #[arg(long, env = "LCP_GATEWAY_MODEL_MAP", value_delimiter = ',', value_name = "MODEL=NODEID,...")]
    pub gateway_model_map: Option<Vec<String>>,
    /// Seconds for listing providers and getting their quotes [default: 10]
    #[arg(long, env = "LCP_GATEWAY_QUOTE_TIMEOUT_SECS", value_name = "SECS")]
    pub gateway_quote_timeout_secs: Option<u64>,
    /// Seconds from paying a job to the first byte of its result; past it the answer is 504 and
    /// the job is cancelled [default: 120]
    #[arg(long, env = "LCP_GATEWAY_FIRST_BYTE_TIMEOUT_SECS", value_name = "SECS")]
    pub gateway_first_byte_timeout_secs: Option<u64>,
    /// Longest silence in seconds between two chunks of a result; past it a stream ends with an
    /// error event and the job is cancelled [default: 60]
    #[arg(long, env = "LCP_GATEWAY_IDLE_TIMEOUT_SECS", value_name = "SECS")]
    pub gateway_idle_timeout_secs: Option<u64>,
    /// Deprecated name of --gateway-first-byte-timeout-secs (it bounded the whole job)
    #[arg(long, env = "LCP_GATEWAY_EXECUTE_TIMEOUT_SECS", value_name = "SECS", hide = true)]
    pub gateway_execute_timeout_secs: Option<u64>,
}

impl std::fmt::Debug for GatewayArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayArgs")
            .field("gateway_listen", &self.gateway_listen)
            .field("gateway_api_keys", &self.gateway_api_keys.as_ref().map(|k| format!("<{} keys>", k.len())))
            .field("gateway_max_price_msat", &self.gateway_max_price_msat)
            .field("gateway_daily_budget_msat", &self.gateway_daily_budget_msat)
            .field("gateway_model_map", &self.gateway_model_map)
            .field("gateway_quote_timeout_secs", &self.gateway_quote_timeout_secs)
            .field("gateway_first_byte_timeout_secs", &self.gateway_first_byte_timeout_secs)
            .field("gateway_idle_timeout_secs", &self.gateway_idle_timeout_secs)
            .field("gateway_execute_timeout_secs", &self.gateway_execute_timeout_secs)
            .finish()
    }
}

/// `[gateway]` section of the config file.
#[derive(Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    /// See [`GatewayArgs::gateway_listen`].
    pub listen: Option<String>,
    /// See [`GatewayArgs::gateway_api_keys`].
    pub api_keys: Option<Vec<String>>,
    /// See [`GatewayArgs::gateway_max_price_msat`].
    pub max_price_msat: Option<u64>,
    /// See [`GatewayArgs::gateway_daily_budget_msat`].
    pub daily_budget_msat: Option<u64>,
    /// See [`GatewayArgs::gateway_model_map`]: `["MODEL=NODEID", ...]`.
    pub model_map: Option<Vec<String>>,
    /// See [`GatewayArgs::gateway_quote_timeout_secs`].
    pub quote_timeout_secs: Option<u64>,
    /// See [`GatewayArgs::gateway_first_byte_timeout_secs`]; `execute_timeout_secs` (its former
    /// name) is read as this.
    #[serde(alias = "execute_timeout_secs")]
    pub first_byte_timeout_secs: Option<u64>,
    /// See [`GatewayArgs::gateway_idle_timeout_secs`].
    pub idle_timeout_secs: Option<u64>,
}

impl std::fmt::Debug for GatewayFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayFile")
            .field("listen", &self.listen)
            .field("api_keys", &self.api_keys.as_ref().map(|k| format!("<{} keys>", k.len())))
            .field("max_price_msat", &self.max_price_msat)
            .field("daily_budget_msat", &self.daily_budget_msat)
            .field("model_map", &self.model_map)
            .field("quote_timeout_secs", &self.quote_timeout_secs)
            .field("first_byte_timeout_secs", &self.first_byte_timeout_secs)
            .field("idle_timeout_secs", &self.idle_timeout_secs)
            .finish()
    }
}

/// Resolved gateway settings. Its `Debug` never shows the API keys.
#[derive(Clone)]
pub struct GatewayConfig {
    /// Shared settings.
    pub node: NodeConfig,
    /// HTTP address (port 0: any free port; the bound address is in the service's status).
    pub listen: SocketAddr,
    /// Accepted Bearer keys; empty: no authentication.
    pub api_keys: Vec<String>,
    /// Per-request price ceiling, msat.
    pub max_price_msat: Option<u64>,
    /// Per-day (UTC) budget of paid prices, msat.
    pub daily_budget_msat: Option<u64>,
    /// Models sent to a fixed provider.
    pub model_map: ModelMap,
    /// Time for listing providers and getting their quotes.
    pub quote_timeout: Duration,
    /// Time from `Execute` to the first byte of the result.
    pub first_byte_timeout: Duration,
    /// Longest silence between two result chunks.
    pub idle_timeout: Duration,
    /// The spending database.
    pub db_path: PathBuf,
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("listen", &self.listen)
            .field("api_keys", &format!("<{} keys>", self.api_keys.len()))
            .field("max_price_msat", &self.max_price_msat)
            .field("daily_budget_msat", &self.daily_budget_msat)
            .field("model_map", &self.model_map)
            .field("quote_timeout", &self.quote_timeout)
            .field("first_byte_timeout", &self.first_byte_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("db_path", &self.db_path)
            .finish()
    }
}

fn invalid(what: &'static str, msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { what, msg: msg.into() }
}

impl GatewayConfig {
    /// Flags/env over file over defaults (listen defaults to [`DEFAULT_LISTEN`]).
    pub fn resolve(node: &NodeConfig, args: &GatewayArgs, file: &GatewayFile) -> Result<Self, ConfigError> {
        let listen = pick(args.gateway_listen.clone(), file.listen.clone(), DEFAULT_LISTEN.to_string());
        let listen: SocketAddr = listen
            .trim()
            .parse()
            .map_err(|_| invalid("gateway-listen", format!("{listen:?} is not an IP:PORT address")))?;
        let api_keys: Vec<String> = pick(args.gateway_api_keys.clone(), file.api_keys.clone(), Vec::new())
            .into_iter()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .collect();
        if api_keys.iter().any(|k| k.chars().any(|c| c.is_whitespace() || c.is_control())) {
            return Err(invalid("gateway-api-keys", "a key contains whitespace or control characters"));
        }
        let nonzero = |v: u64| (v > 0).then_some(v);
        let max_price_msat = pick(args.gateway_max_price_msat, file.max_price_msat, 0);
        let daily_budget_msat = pick(args.gateway_daily_budget_msat, file.daily_budget_msat, 0);
        let entries = pick(args.gateway_model_map.clone(), file.model_map.clone(), Vec::new());
        let model_map = ModelMap::parse(&entries).map_err(|e| invalid("gateway-model-map", e))?;
        let quote = pick(args.gateway_quote_timeout_secs, file.quote_timeout_secs, DEFAULT_QUOTE_TIMEOUT_SECS);
        if !(1..=600).contains(&quote) {
            return Err(invalid("gateway-quote-timeout-secs", "must be between 1 and 600"));
        }
        let first_flag = args.gateway_first_byte_timeout_secs.or(args.gateway_execute_timeout_secs);
        let first = pick(first_flag, file.first_byte_timeout_secs, DEFAULT_FIRST_BYTE_TIMEOUT_SECS);
        if !(1..=86_400).contains(&first) {
            return Err(invalid("gateway-first-byte-timeout-secs", "must be between 1 and 86400"));
        }
        let idle = pick(args.gateway_idle_timeout_secs, file.idle_timeout_secs, DEFAULT_IDLE_TIMEOUT_SECS);
        if !(1..=86_400).contains(&idle) {
            return Err(invalid("gateway-idle-timeout-secs", "must be between 1 and 86400"));
        }
        Ok(Self {
            node: node.clone(),
            listen,
            api_keys,
            max_price_msat: nonzero(max_price_msat),
            daily_budget_msat: nonzero(daily_budget_msat),
            model_map,
            quote_timeout: Duration::from_secs(quote),
            first_byte_timeout: Duration::from_secs(first),
            idle_timeout: Duration::from_secs(idle),
            db_path: node.datadir.join(DB_FILE),
        })
    }

    /// For the all-in-one node: the gateway runs only when a listen address is configured.
    pub fn resolve_enabled(
        node: &NodeConfig,
        args: &GatewayArgs,
        file: &GatewayFile,
    ) -> Result<Option<Self>, ConfigError> {
        if args.gateway_listen.is_none() && file.listen.is_none() {
            return Ok(None);
        }
        Self::resolve(node, args, file).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeConfig {
        crate::demo::node_config(std::path::Path::new("/tmp/lcp-gateway-opts")).unwrap().node
    }

    #[test]
    fn flags_over_file_over_defaults() {
        let file: GatewayFile = toml::from_str(
            "listen = \"127.0.0.1:9000\"\napi_keys = [\"k1\"]\nmax_price_msat = 5000\ndaily_budget_msat = 0\n\
             model_map = [\"m=02aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"]\n",
        )
        .unwrap();
        let c = GatewayConfig::resolve(&node(), &GatewayArgs::default(), &file).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(c.api_keys, vec!["k1".to_string()]);
        assert_eq!((c.max_price_msat, c.daily_budget_msat), (Some(5000), None));
        assert_eq!(c.model_map.peer_for("m").map(|p| &p[..4]), Some("02aa"));
        assert_eq!(c.first_byte_timeout, Duration::from_secs(DEFAULT_FIRST_BYTE_TIMEOUT_SECS));
        assert_eq!(c.idle_timeout, Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS));
        let args = GatewayArgs {
            gateway_listen: Some("127.0.0.1:0".into()),
            gateway_max_price_msat: Some(0),
            gateway_daily_budget_msat: Some(7),
            ..Default::default()
        };
        let c = GatewayConfig::resolve(&node(), &args, &file).unwrap();
        assert_eq!(c.listen.port(), 0);
        assert_eq!((c.max_price_msat, c.daily_budget_msat), (None, Some(7)));
        let c = GatewayConfig::resolve(&node(), &GatewayArgs::default(), &GatewayFile::default()).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert!(c.api_keys.is_empty());
    }

    #[test]
    fn enabled_only_with_a_listen_address_and_bad_values_are_named() {
        let n = node();
        assert!(GatewayConfig::resolve_enabled(&n, &GatewayArgs::default(), &GatewayFile::default())
            .unwrap()
            .is_none());
        let file = GatewayFile { listen: Some("127.0.0.1:1".into()), ..Default::default() };
        assert!(GatewayConfig::resolve_enabled(&n, &GatewayArgs::default(), &file).unwrap().is_some());
        let bad =
            |args: GatewayArgs| GatewayConfig::resolve(&n, &args, &GatewayFile::default()).unwrap_err().to_string();
        let e = bad(GatewayArgs { gateway_listen: Some("localhost".into()), ..Default::default() });
        assert!(e.starts_with("gateway-listen:"), "{e}");
        let e = bad(GatewayArgs { gateway_model_map: Some(vec!["m=xyz".into()]), ..Default::default() });
        assert!(e.starts_with("gateway-model-map:"), "{e}");
        let e = bad(GatewayArgs { gateway_quote_timeout_secs: Some(0), ..Default::default() });
        assert!(e.starts_with("gateway-quote-timeout-secs:"), "{e}");
    }

    #[test]
    fn silence_bounds_and_their_former_names() {
        let n = node();
        let file: GatewayFile = toml::from_str("first_byte_timeout_secs = 5\nidle_timeout_secs = 3\n").unwrap();
        let c = GatewayConfig::resolve(&n, &GatewayArgs::default(), &file).unwrap();
        assert_eq!((c.first_byte_timeout, c.idle_timeout), (Duration::from_secs(5), Duration::from_secs(3)));
        // Files and flags of the former whole-job bound still load, as the first-byte bound.
        let file: GatewayFile = toml::from_str("execute_timeout_secs = 7\n").unwrap();
        let c = GatewayConfig::resolve(&n, &GatewayArgs::default(), &file).unwrap();
        assert_eq!(c.first_byte_timeout, Duration::from_secs(7));
        let old = GatewayArgs { gateway_execute_timeout_secs: Some(9), ..Default::default() };
        assert_eq!(GatewayConfig::resolve(&n, &old, &file).unwrap().first_byte_timeout, Duration::from_secs(9));
        let both = GatewayArgs { gateway_first_byte_timeout_secs: Some(4), ..old };
        assert_eq!(GatewayConfig::resolve(&n, &both, &file).unwrap().first_byte_timeout, Duration::from_secs(4));
        let bad = GatewayArgs { gateway_idle_timeout_secs: Some(0), ..Default::default() };
        let e = GatewayConfig::resolve(&n, &bad, &GatewayFile::default()).unwrap_err().to_string();
        assert!(e.starts_with("gateway-idle-timeout-secs:"), "{e}");
    }

    #[test]
    fn debug_never_shows_keys() {
        let args = GatewayArgs { gateway_api_keys: Some(vec!["sk-secret-1".into()]), ..Default::default() };
        let c = GatewayConfig::resolve(&node(), &args, &GatewayFile::default()).unwrap();
        let file = GatewayFile { api_keys: Some(vec!["sk-secret-2".into()]), ..Default::default() };
        let text = format!("{c:?} {file:?} {args:?}");
        assert!(!text.contains("sk-secret"), "{text}");
        assert!(text.contains("<1 keys>"), "{text}");
    }
}
