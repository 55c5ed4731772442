//! Configuration shared by every daemon: flags, `LCP_*` environment variables and one TOML file.
//!
//! Precedence: flags > environment > file > defaults. clap resolves flags and environment (every
//! option is an `Option` with `env = "LCP_..."`), the file fills what is still unset, and the
//! defaults below fill the rest. The file has one section per service (`[node]`, `[peerd]`,
//! `[lcpd]`, `[jobd]`, `[payd]`, `[gateway]`, plus `[lnd]` shared by payd and peerd); unknown keys
//! are errors, so a typo never goes unnoticed.

use crate::bus::Endpoint;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Default data directory below the user's home.
pub const DEFAULT_DATADIR_NAME: &str = ".lcp";
/// Default config file name inside the data directory.
pub const DEFAULT_CONFIG_NAME: &str = "lcp.toml";
/// Default remote bus endpoint: a unix socket in the data directory.
pub const DEFAULT_BUS_SOCKET: &str = "bus.sock";
/// Default network: devnet moves no real money.
pub const DEFAULT_NETWORK: Network = Network::Devnet;
/// Default log level when neither `-v`, `--log-level` nor `RUST_LOG` says otherwise.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// Which Lightning network the node is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Local devnet: zero-conf channels with fabricated funding, no blockchain, no real money.
    Devnet,
    /// Bitcoin regtest.
    Regtest,
    /// Bitcoin signet.
    Signet,
    /// Bitcoin testnet.
    Testnet,
    /// Bitcoin mainnet: real money.
    Mainnet,
}

impl Network {
    /// The Bitcoin network underneath (devnet runs on regtest's parameters and chain hash).
    pub fn bitcoin_network(self) -> lightning::bitcoin::Network {
        match self {
            Network::Devnet | Network::Regtest => lightning::bitcoin::Network::Regtest,
            Network::Signet => lightning::bitcoin::Network::Signet,
            Network::Testnet => lightning::bitcoin::Network::Testnet,
            Network::Mainnet => lightning::bitcoin::Network::Bitcoin,
        }
    }

    /// The BOLT11 currency of invoices on this network (devnet: regtest's `lnbcrt`, which no
    /// mainnet wallet accepts).
    pub fn currency(self) -> lightning_invoice::Currency {
        use lightning_invoice::Currency;
        match self {
            Network::Devnet | Network::Regtest => Currency::Regtest,
            Network::Signet => Currency::Signet,
            Network::Testnet => Currency::BitcoinTestnet,
            Network::Mainnet => Currency::Bitcoin,
        }
    }

    /// The name used in flags, files and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Devnet => "devnet",
            Network::Regtest => "regtest",
            Network::Signet => "signet",
            Network::Testnet => "testnet",
            Network::Mainnet => "mainnet",
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Network {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "devnet" => Ok(Network::Devnet),
            "regtest" => Ok(Network::Regtest),
            "signet" => Ok(Network::Signet),
            "testnet" => Ok(Network::Testnet),
            "mainnet" | "bitcoin" => Ok(Network::Mainnet),
            other => Err(ConfigError::Invalid {
                what: "network",
                msg: format!("unknown network {other:?} (expected devnet, regtest, signet, testnet or mainnet)"),
            }),
        }
    }
}

/// Configuration errors: one line each, naming the source of the bad value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no data directory: set --datadir or LCP_DATADIR (HOME is not set)")]
    NoHome,
    #[error("config file {path}: {msg}")]
    File { path: String, msg: String },
    #[error("{what}: {msg}")]
    Invalid { what: &'static str, msg: String },
}

/// Options every daemon and `lcp-cli` take.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct NodeArgs {
    /// Data directory: node key, bus keys, databases, logs [default: ~/.lcp]
    #[arg(long, env = "LCP_DATADIR", global = true, value_name = "DIR")]
    pub datadir: Option<PathBuf>,
    /// Config file [default: DATADIR/lcp.toml when it exists]
    #[arg(long, env = "LCP_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Lightning network [default: devnet]
    #[arg(long, env = "LCP_NETWORK", global = true, value_enum)]
    pub network: Option<Network>,
    /// Bus endpoint: inproc://NAME, ipc://PATH or tcp://HOST:PORT [default: ipc://DATADIR/bus.sock]
    #[arg(long, env = "LCP_BUS", global = true, value_name = "ENDPOINT")]
    pub bus: Option<String>,
    /// Bus client key file, to join a bus on another host [default: DATADIR/bus/client.key]
    #[arg(long, env = "LCP_BUS_KEY", global = true, value_name = "FILE")]
    pub bus_key: Option<PathBuf>,
    /// Bus broker key file, for the process hosting the bus; must exist when given (`lcp-cli bus
    /// keygen` makes one) [default: DATADIR/bus/server.key, made on first start]
    #[arg(long, env = "LCP_BUS_SERVER_KEY", global = true, value_name = "FILE")]
    pub bus_server_key: Option<PathBuf>,
    /// Node key file (the Lightning identity), for services in separate containers that share it
    /// [default: DATADIR/node.key]
    #[arg(long, env = "LCP_NODE_KEY", global = true, value_name = "FILE")]
    pub node_key: Option<PathBuf>,
    /// Log level or tracing filter (RUST_LOG overrides) [default: info]
    #[arg(long, env = "LCP_LOG_LEVEL", global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// More logs: -v debug, -vv trace
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

/// `[node]` section of the file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    /// See [`NodeArgs::network`].
    pub network: Option<Network>,
    /// See [`NodeArgs::bus`].
    pub bus: Option<String>,
    /// See [`NodeArgs::bus_key`].
    pub bus_key: Option<PathBuf>,
    /// See [`NodeArgs::bus_server_key`].
    pub bus_server_key: Option<PathBuf>,
    /// See [`NodeArgs::node_key`].
    pub node_key: Option<PathBuf>,
    /// See [`NodeArgs::log_level`].
    pub log_level: Option<String>,
}

/// The whole config file. Each service reads its own section; all are validated by everyone.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Shared settings.
    #[serde(default)]
    pub node: NodeFile,
    /// peerd settings.
    #[serde(default)]
    pub peerd: crate::peerd::opts::PeerdFile,
    /// lcpd settings.
    #[serde(default)]
    pub lcpd: crate::lcpd::opts::LcpdFile,
    /// jobd settings.
    #[serde(default)]
    pub jobd: crate::jobd::opts::JobdFile,
    /// payd settings.
    #[serde(default)]
    pub payd: crate::payd::opts::PaydFile,
    /// The lnd connection, shared by payd's lnd backend and peerd's lnd transport.
    #[serde(default)]
    pub lnd: crate::lnd::LndFile,
    /// gateway settings.
    #[serde(default)]
    pub gateway: crate::gateway::opts::GatewayFile,
}

/// Resolved shared settings.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Data directory (created on first start).
    pub datadir: PathBuf,
    /// Network.
    pub network: Network,
    /// Bus endpoint.
    pub bus: Endpoint,
    /// Bus client key file.
    pub bus_key: PathBuf,
    /// Bus broker key file when set; `None`: `DATADIR/bus/server.key`, made on first start.
    pub bus_server_key: Option<PathBuf>,
    /// Node key file.
    pub node_key: PathBuf,
    /// Log filter.
    pub log_level: String,
    /// The file the rest came from, if any.
    pub config_file: Option<PathBuf>,
}

/// Picks the first value set: flag/env, then file, then default.
pub fn pick<T>(flag_or_env: Option<T>, file: Option<T>, default: T) -> T {
    flag_or_env.or(file).unwrap_or(default)
}

impl NodeArgs {
    /// Resolves the shared settings and reads the config file.
    pub fn resolve(&self) -> Result<(NodeConfig, FileConfig), ConfigError> {
        let datadir = match &self.datadir {
            Some(d) => d.clone(),
            None => std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| Path::new(&h).join(DEFAULT_DATADIR_NAME))
                .ok_or(ConfigError::NoHome)?,
        };
        let (file, config_file) = match &self.config {
            Some(p) => (load_file(p)?, Some(p.clone())),
            None => {
                let p = datadir.join(DEFAULT_CONFIG_NAME);
                if p.exists() {
                    (load_file(&p)?, Some(p))
                } else {
                    (FileConfig::default(), None)
                }
            }
        };
        let default_bus = format!("ipc://{}", datadir.join(DEFAULT_BUS_SOCKET).display());
        let bus_str = pick(self.bus.clone(), file.node.bus.clone(), default_bus);
        let bus: Endpoint = bus_str
            .parse()
            .map_err(|e: crate::bus::EndpointError| ConfigError::Invalid { what: "bus", msg: e.to_string() })?;
        let level = match self.verbose {
            0 => pick(self.log_level.clone(), file.node.log_level.clone(), DEFAULT_LOG_LEVEL.to_string()),
            1 => "debug".to_string(),
            _ => "trace".to_string(),
        };
        let cfg = NodeConfig {
            network: pick(self.network, file.node.network, DEFAULT_NETWORK),
            bus,
            bus_key: pick(self.bus_key.clone(), file.node.bus_key.clone(), datadir.join("bus").join("client.key")),
            bus_server_key: self.bus_server_key.clone().or_else(|| file.node.bus_server_key.clone()),
            node_key: pick(
                self.node_key.clone(),
                file.node.node_key.clone(),
                datadir.join(crate::datadir::NODE_KEY_FILE),
            ),
            log_level: level,
            datadir,
            config_file,
        };
        Ok((cfg, file))
    }
}

/// A service's options as the environment alone gives them (for a process that does not take that
/// service's flags but must agree with it); `what` names the setting in the error.
pub fn args_from_env<A: clap::Args>(what: &'static str) -> Result<A, ConfigError> {
    #[derive(clap::Parser)]
    struct EnvOnly<A: clap::Args> {
        #[command(flatten)]
        args: A,
    }
    <EnvOnly<A> as clap::Parser>::try_parse_from(["env"])
        .map(|e| e.args)
        .map_err(|e| ConfigError::Invalid { what, msg: e.to_string().trim().replace('\n', " ") })
}

impl NodeConfig {
    /// Opens (and on first use creates) the data directory, with the node key where configured.
    pub fn open_datadir(&self) -> Result<crate::datadir::Datadir, crate::datadir::DatadirError> {
        Ok(crate::datadir::Datadir::open(&self.datadir)?.with_node_key(&self.node_key))
    }
}

/// Reads and validates a config file.
pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let err = |msg: String| ConfigError::File { path: path.display().to_string(), msg };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    toml::from_str(&text).map_err(|e| {
        let mut msg = e.message().replace('\n', " ");
        if ["lnd_rest_url", "lnd_tls_cert", "lnd_macaroon"].iter().any(|k| msg.contains(&format!("`{k}`"))) {
            msg.push_str(
                " (the lnd settings moved from [payd] lnd_* to the [lnd] section: rest_url, tls_cert, macaroon)",
            );
        }
        err(msg)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        node: NodeArgs,
    }

    fn parse(args: &[&str]) -> NodeArgs {
        T::try_parse_from(std::iter::once("t").chain(args.iter().copied())).unwrap().node
    }

    #[test]
    fn precedence_flag_then_file_then_default() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("c.toml");
        std::fs::write(&f, "[node]\nnetwork = \"regtest\"\nbus = \"tcp://127.0.0.1:7000\"\n").unwrap();
        let dd = d.path().to_str().unwrap();
        let cf = f.to_str().unwrap();
        let (c, _) = parse(&["--datadir", dd, "--config", cf]).resolve().unwrap();
        assert_eq!(c.network, Network::Regtest);
        assert_eq!(c.bus.to_string(), "tcp://127.0.0.1:7000");
        let (c, _) = parse(&["--datadir", dd, "--config", cf, "--network", "signet"]).resolve().unwrap();
        assert_eq!(c.network, Network::Signet);
        let (c, _) = parse(&["--datadir", dd]).resolve().unwrap();
        assert_eq!(c.network, DEFAULT_NETWORK);
        assert_eq!(c.bus.to_string(), format!("ipc://{dd}/bus.sock"));
        assert_eq!(c.log_level, "info");
        let (c, _) = parse(&["--datadir", dd, "-vv"]).resolve().unwrap();
        assert_eq!(c.log_level, "trace");
    }

    #[test]
    fn old_lnd_keys_under_payd_say_where_they_moved() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("lcp.toml");
        std::fs::write(&f, "[payd]\nlnd_rest_url = \"https://127.0.0.1:8080\"\n").unwrap();
        let e = load_file(&f).unwrap_err().to_string();
        assert!(e.contains("lnd_rest_url") && e.contains("moved") && e.contains("[lnd]"), "{e}");
    }

    #[test]
    fn key_files_default_to_the_datadir_and_can_live_elsewhere() {
        let d = tempfile::tempdir().unwrap();
        let dd = d.path().to_str().unwrap();
        let (c, _) = parse(&["--datadir", dd]).resolve().unwrap();
        assert_eq!(c.node_key, d.path().join("node.key"));
        assert_eq!(c.bus_key, d.path().join("bus/client.key"));
        assert_eq!(c.bus_server_key, None);
        let f = d.path().join("c.toml");
        std::fs::write(&f, "[node]\nnode_key = \"/file/node.key\"\nbus_server_key = \"/file/server.key\"\n").unwrap();
        let cf = f.to_str().unwrap();
        let (c, _) = parse(&["--datadir", dd, "--config", cf]).resolve().unwrap();
        assert_eq!(
            (c.node_key.to_str(), c.bus_server_key.as_deref()),
            (Some("/file/node.key"), Some(Path::new("/file/server.key")))
        );
        let (c, _) = parse(&["--datadir", dd, "--config", cf, "--node-key", "/flag/node.key"]).resolve().unwrap();
        assert_eq!(c.node_key, Path::new("/flag/node.key"));
    }

    #[test]
    fn default_config_file_in_datadir_is_read() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(DEFAULT_CONFIG_NAME), "[node]\nnetwork = \"testnet\"\n").unwrap();
        let (c, _) = parse(&["--datadir", d.path().to_str().unwrap()]).resolve().unwrap();
        assert_eq!(c.network, Network::Testnet);
        assert!(c.config_file.is_some());
    }

    #[test]
    fn bad_files_and_endpoints_are_clear_errors() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("c.toml");
        let dd = d.path().to_str().unwrap();
        std::fs::write(&f, "[node]\nnetwrok = \"regtest\"\n").unwrap();
        let e = parse(&["--datadir", dd, "--config", f.to_str().unwrap()]).resolve().unwrap_err().to_string();
        assert!(e.contains("netwrok") && e.contains("c.toml"), "{e}");
        let e = parse(&["--datadir", dd, "--bus", "http://x:1"]).resolve().unwrap_err().to_string();
        assert!(e.starts_with("bus: ") && e.contains("unknown scheme"), "{e}");
        let e = parse(&["--datadir", dd, "--config", "/nonexistent/x.toml"]).resolve().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/x.toml"), "{e}");
    }
}
