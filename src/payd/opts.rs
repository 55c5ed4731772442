//! payd's options: flags (`LCP_*` env), the `[payd]` file section, and the resolved config.

use crate::config::{pick, ConfigError, NodeArgs, NodeConfig};
use crate::lnd::{LndArgs, LndOptions};
use crate::payd::lnd::{LndConfig, DEFAULT_POLL_INTERVAL};
use serde::{Deserialize, Serialize};

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
    /// The lnd connection (shared with peerd's lnd transport).
    #[command(flatten)]
    pub lnd: LndArgs,
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
}

/// payd's backend kind as a process that does not take payd's flags sees it (peerd run on its
/// own): `LCP_PAYMENT_BACKEND`, then the file, then the default.
pub fn backend_kind_outside(file: &PaydFile) -> Result<BackendKind, ConfigError> {
    let env: PaydArgs = crate::config::args_from_env("payment-backend")?;
    Ok(pick(env.payment_backend, file.backend, BackendKind::Ldk))
}

/// `[payd]` section of the config file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PaydFile {
    /// See [`PaydArgs::payment_backend`]: `backend = "ldk" | "lnd"`.
    pub backend: Option<BackendKind>,
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
    /// embedded engine only) and needs lnd's certificate and macaroon files (`lnd`: the shared
    /// `[lnd]` options).
    pub fn resolve(node: &NodeConfig, args: &PaydArgs, file: &PaydFile, lnd: &LndOptions) -> Result<Self, ConfigError> {
        let backend = match pick(args.payment_backend, file.backend, BackendKind::Ldk) {
            BackendKind::Ldk => PaydBackend::Ldk,
            BackendKind::Lnd => PaydBackend::Lnd(LndConfig {
                network: node.network,
                conn: lnd.require(node.network, "payment-backend")?,
                state_dir: node.datadir.join("payd"),
                poll_interval: DEFAULT_POLL_INTERVAL,
            }),
        };
        Ok(Self { node: node.clone(), backend })
    }

    /// Which backend kind this is.
    pub fn kind(&self) -> BackendKind {
        match self.backend {
            PaydBackend::Ldk => BackendKind::Ldk,
            PaydBackend::Lnd(_) => BackendKind::Lnd,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Network;

    fn node(network: Network) -> NodeConfig {
        let dir = tempfile::tempdir().expect("tempdir");
        let args = NodeArgs { datadir: Some(dir.path().to_path_buf()), network: Some(network), ..Default::default() };
        args.resolve().expect("node config").0
    }

    #[test]
    fn ldk_is_the_default_and_lnd_needs_its_files_and_a_real_network() {
        let none = LndOptions::default();
        let c = PaydConfig::resolve(&node(Network::Devnet), &PaydArgs::default(), &PaydFile::default(), &none);
        assert!(matches!(c.expect("ok").backend, PaydBackend::Ldk));
        let lnd = PaydArgs { payment_backend: Some(BackendKind::Lnd) };
        let files = LndOptions::resolve(
            &crate::lnd::LndArgs {
                lnd_tls_cert: Some("tls.cert".into()),
                lnd_macaroon: Some("invoice.macaroon".into()),
                ..Default::default()
            },
            &Default::default(),
        );
        let e = PaydConfig::resolve(&node(Network::Devnet), &lnd, &PaydFile::default(), &files).unwrap_err();
        assert!(e.to_string().contains("devnet"), "{e}");
        let c = PaydConfig::resolve(&node(Network::Regtest), &lnd, &PaydFile::default(), &files).expect("ok");
        assert_eq!(c.kind(), BackendKind::Lnd);
        match c.backend {
            PaydBackend::Lnd(l) => {
                assert_eq!(l.conn.rest_url, crate::lnd::DEFAULT_REST_URL);
                assert_eq!(l.network, Network::Regtest);
                assert_eq!(l.conn.tls_cert, std::path::PathBuf::from("tls.cert"));
            }
            PaydBackend::Ldk => panic!("lnd expected"),
        }
        let e = PaydConfig::resolve(&node(Network::Mainnet), &lnd, &PaydFile::default(), &none).unwrap_err();
        assert!(e.to_string().contains("lnd-tls-cert") && e.to_string().contains("LCP_LND_TLS_CERT"), "{e}");
        // The file's section names the backend; the connection is the shared [lnd] section.
        let file: PaydFile = toml::from_str("backend = \"lnd\"").expect("toml");
        let c = PaydConfig::resolve(&node(Network::Signet), &PaydArgs::default(), &file, &files).expect("ok");
        assert_eq!(c.kind(), BackendKind::Lnd);
        assert!(toml::from_str::<PaydFile>("backend = \"cln\"").is_err());
        assert!(toml::from_str::<PaydFile>("lnd_rest_url = \"x\"").is_err(), "lnd options live in [lnd]");
    }
}
