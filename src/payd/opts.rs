//! payd's options: flags (`LCP_*` env), the `[payd]` file section, and the resolved config.

use crate::config::{pick, ConfigError, Network, NodeArgs, NodeConfig};
use crate::payd::lnd::{LndConfig, DEFAULT_POLL_INTERVAL, DEFAULT_REQUEST_TIMEOUT, DEFAULT_REST_URL};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `payd` command line.
#[derive(clap::Parser, Debug)]
#[command(name = "payd", version, about = "LCP node: payments (invoices, channels, pay) on the bus")]
pub struct Opts {
    /// Shared options.
    #[command(flatten)]
    pub node: NodeArgs,
    /// payd's own options.
    #[command(flatten)]
    pub payd: PaydArgs,
}

/// Which payment backend payd runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The embedded LDK channel engine (devnet only: fabricated funding, no chain source).
    Ldk,
    /// An lnd node over its REST API (regtest, signet, testnet, mainnet).
    Lnd,
}

/// payd's own flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PaydArgs {
    /// Payment backend: ldk (embedded engine, devnet only) or lnd [default: ldk]
    #[arg(long, env = "LCP_PAYMENT_BACKEND", value_enum, value_name = "KIND")]
    pub payment_backend: Option<BackendKind>,
    /// lnd's REST endpoint [default: https://127.0.0.1:8080]
    #[arg(long, env = "LCP_LND_REST_URL", value_name = "URL")]
    pub lnd_rest_url: Option<String>,
    /// lnd's tls.cert: the only certificate trusted for the REST endpoint
    #[arg(long, env = "LCP_LND_TLS_CERT", value_name = "FILE")]
    pub lnd_tls_cert: Option<PathBuf>,
    /// lnd macaroon file (invoices:read/write, offchain:read/write, info:read)
    #[arg(long, env = "LCP_LND_MACAROON", value_name = "FILE")]
    pub lnd_macaroon: Option<PathBuf>,
}

/// `[payd]` section of the config file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PaydFile {
    /// See [`PaydArgs::payment_backend`]: `backend = "ldk" | "lnd"`.
    pub backend: Option<BackendKind>,
    /// See [`PaydArgs::lnd_rest_url`].
    pub lnd_rest_url: Option<String>,
    /// See [`PaydArgs::lnd_tls_cert`].
    pub lnd_tls_cert: Option<PathBuf>,
    /// See [`PaydArgs::lnd_macaroon`].
    pub lnd_macaroon: Option<PathBuf>,
}

/// The resolved backend.
#[derive(Debug, Clone)]
pub enum PaydBackend {
    /// The embedded LDK engine.
    Ldk,
    /// lnd over REST.
    Lnd(LndConfig),
}

/// Resolved payd settings.
#[derive(Debug, Clone)]
pub struct PaydConfig {
    /// Shared settings.
    pub node: NodeConfig,
    /// The payment backend.
    pub backend: PaydBackend,
}

impl PaydConfig {
    /// Flags/env over file over defaults. The lnd backend is refused on devnet (devnet is the
    /// embedded engine only) and needs its certificate and macaroon files.
    pub fn resolve(node: &NodeConfig, args: &PaydArgs, file: &PaydFile) -> Result<Self, ConfigError> {
        let kind = pick(args.payment_backend, file.backend, BackendKind::Ldk);
        let backend = match kind {
            BackendKind::Ldk => PaydBackend::Ldk,
            BackendKind::Lnd => {
                if node.network == Network::Devnet {
                    return Err(ConfigError::Invalid {
                        what: "payment-backend",
                        msg: "lnd does not run on devnet (devnet is the embedded engine only); \
                              set --network to regtest, signet, testnet or mainnet"
                            .into(),
                    });
                }
                let rest_url = pick(args.lnd_rest_url.clone(), file.lnd_rest_url.clone(), DEFAULT_REST_URL.into());
                if !rest_url.trim().starts_with("https://") {
                    return Err(ConfigError::Invalid {
                        what: "lnd-rest-url",
                        msg: format!("{rest_url:?} must start with https:// (lnd's REST API is TLS only)"),
                    });
                }
                let need = |v: Option<PathBuf>, what: &'static str, hint: &str| {
                    v.ok_or_else(|| ConfigError::Invalid {
                        what,
                        msg: format!(
                            "required by the lnd backend (--{what}, LCP_{hint}, or {} in [payd])",
                            what.replace('-', "_")
                        ),
                    })
                };
                let tls_cert =
                    need(args.lnd_tls_cert.clone().or(file.lnd_tls_cert.clone()), "lnd-tls-cert", "LND_TLS_CERT")?;
                let macaroon =
                    need(args.lnd_macaroon.clone().or(file.lnd_macaroon.clone()), "lnd-macaroon", "LND_MACAROON")?;
                PaydBackend::Lnd(LndConfig {
                    network: node.network,
                    rest_url,
                    tls_cert,
                    macaroon,
                    state_dir: node.datadir.join("payd"),
                    poll_interval: DEFAULT_POLL_INTERVAL,
                    request_timeout: DEFAULT_REQUEST_TIMEOUT,
                })
            }
        };
        Ok(Self { node: node.clone(), backend })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(network: Network) -> NodeConfig {
        let dir = tempfile::tempdir().expect("tempdir");
        let args = NodeArgs { datadir: Some(dir.path().to_path_buf()), network: Some(network), ..Default::default() };
        args.resolve().expect("node config").0
    }

    #[test]
    fn ldk_is_the_default_and_lnd_needs_its_files_and_a_real_network() {
        let c = PaydConfig::resolve(&node(Network::Devnet), &PaydArgs::default(), &PaydFile::default()).expect("ok");
        assert!(matches!(c.backend, PaydBackend::Ldk));
        let lnd = PaydArgs {
            payment_backend: Some(BackendKind::Lnd),
            lnd_tls_cert: Some("tls.cert".into()),
            lnd_macaroon: Some("invoice.macaroon".into()),
            ..Default::default()
        };
        let e = PaydConfig::resolve(&node(Network::Devnet), &lnd, &PaydFile::default()).unwrap_err().to_string();
        assert!(e.contains("devnet"), "{e}");
        let c = PaydConfig::resolve(&node(Network::Regtest), &lnd, &PaydFile::default()).expect("ok");
        match c.backend {
            PaydBackend::Lnd(l) => {
                assert_eq!(l.rest_url, DEFAULT_REST_URL);
                assert_eq!(l.network, Network::Regtest);
                assert_eq!(l.tls_cert, PathBuf::from("tls.cert"));
            }
            PaydBackend::Ldk => panic!("lnd expected"),
        }
        let no_mac = PaydArgs { lnd_macaroon: None, ..lnd.clone() };
        let e = PaydConfig::resolve(&node(Network::Mainnet), &no_mac, &PaydFile::default()).unwrap_err().to_string();
        assert!(e.contains("lnd-macaroon") && e.contains("LCP_LND_MACAROON"), "{e}");
        let plain = PaydArgs { lnd_rest_url: Some("http://127.0.0.1:8080".into()), ..lnd.clone() };
        let e = PaydConfig::resolve(&node(Network::Mainnet), &plain, &PaydFile::default()).unwrap_err().to_string();
        assert!(e.contains("https://"), "{e}");
        // The file's section: backend and paths; flags win.
        let file: PaydFile = toml::from_str(
            "backend = \"lnd\"\nlnd_rest_url = \"https://10.0.0.2:8080\"\nlnd_tls_cert = \"/a\"\nlnd_macaroon = \"/b\"",
        )
        .expect("toml");
        let args = PaydArgs { lnd_macaroon: Some("/c".into()), ..Default::default() };
        match PaydConfig::resolve(&node(Network::Signet), &args, &file).expect("ok").backend {
            PaydBackend::Lnd(l) => {
                assert_eq!((l.rest_url.as_str(), l.macaroon), ("https://10.0.0.2:8080", PathBuf::from("/c")));
            }
            PaydBackend::Ldk => panic!("lnd expected"),
        }
        assert!(toml::from_str::<PaydFile>("backend = \"cln\"").is_err());
        assert!(toml::from_str::<PaydFile>("lnd_url = \"x\"").is_err());
    }
}
