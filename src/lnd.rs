//! The connection to an existing lnd node, shared by the services that use it: payd's lnd
//! backend (invoices and payments) and peerd's lnd transport (LCP messages as lnd custom
//! messages). One set of options (`--lnd-rest-url`, `--lnd-tls-cert`, `--lnd-macaroon`, their
//! `LCP_LND_*` variables, the file's `[lnd]` section) serves both.
//!
//! The REST client itself (pinned certificate, macaroon header, line-delimited streams) is
//! [`crate::payd::lnd::rest`]; this module reads the files and builds it, and checks lnd's
//! identity and network (`GET /v1/getinfo`).

use crate::config::{pick, ConfigError, Network};
use crate::payd::lnd::rest::{self, LndRest, RestError};
use crate::payd::lnd::wire::GetInfo;
use http::Method;
use lightning::bitcoin::secp256k1::PublicKey;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Default REST endpoint of a local lnd.
pub const DEFAULT_REST_URL: &str = "https://127.0.0.1:8080";
/// Default timeout of unary calls (and of connecting).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The lnd options (flags and `LCP_LND_*` environment), flattened once into each binary that
/// runs a service using lnd.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LndArgs {
    /// lnd's REST endpoint [default: https://127.0.0.1:8080]
    #[arg(long, env = "LCP_LND_REST_URL", value_name = "URL")]
    pub lnd_rest_url: Option<String>,
    /// lnd's tls.cert: the only certificate trusted for the REST endpoint
    #[arg(long, env = "LCP_LND_TLS_CERT", value_name = "FILE")]
    pub lnd_tls_cert: Option<PathBuf>,
    /// lnd macaroon file (see docs/lnd.md for the permissions payd and peerd need)
    #[arg(long, env = "LCP_LND_MACAROON", value_name = "FILE")]
    pub lnd_macaroon: Option<PathBuf>,
}

/// `[lnd]` section of the config file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LndFile {
    /// See [`LndArgs::lnd_rest_url`].
    pub rest_url: Option<String>,
    /// See [`LndArgs::lnd_tls_cert`].
    pub tls_cert: Option<PathBuf>,
    /// See [`LndArgs::lnd_macaroon`].
    pub macaroon: Option<PathBuf>,
}

/// The lnd options after flags > environment > file, not yet required by anyone.
#[derive(Debug, Clone, Default)]
pub struct LndOptions {
    rest_url: Option<String>,
    tls_cert: Option<PathBuf>,
    macaroon: Option<PathBuf>,
}

impl LndOptions {
    /// Flags/env over the file.
    pub fn resolve(args: &LndArgs, file: &LndFile) -> Self {
        Self {
            rest_url: args.lnd_rest_url.clone().or(file.rest_url.clone()),
            tls_cert: args.lnd_tls_cert.clone().or(file.tls_cert.clone()),
            macaroon: args.lnd_macaroon.clone().or(file.macaroon.clone()),
        }
    }

    /// The connection for a service that needs lnd (`who` names the setting that asked for it,
    /// for the error). Refused on devnet; the certificate and macaroon files must be given.
    pub fn require(&self, network: Network, who: &'static str) -> Result<LndConnection, ConfigError> {
        if network == Network::Devnet {
            return Err(ConfigError::Invalid {
                what: who,
                msg: "lnd does not run on devnet (devnet is the embedded engine only); \
                      set --network to regtest, signet, testnet or mainnet"
                    .into(),
            });
        }
        let rest_url = pick(self.rest_url.clone(), None, DEFAULT_REST_URL.into());
        if !rest_url.trim().starts_with("https://") {
            return Err(ConfigError::Invalid {
                what: "lnd-rest-url",
                msg: format!("{rest_url:?} must start with https:// (lnd's REST API is TLS only)"),
            });
        }
        let need = |v: &Option<PathBuf>, what: &'static str, key: &str| {
            v.clone().ok_or_else(|| ConfigError::Invalid {
                what,
                msg: format!(
                    "required by {who} lnd (--{what}, LCP_{}, or {key} in [lnd])",
                    what.to_uppercase().replace('-', "_")
                ),
            })
        };
        Ok(LndConnection {
            rest_url,
            tls_cert: need(&self.tls_cert, "lnd-tls-cert", "tls_cert")?,
            macaroon: need(&self.macaroon, "lnd-macaroon", "macaroon")?,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        })
    }
}

/// How to reach one lnd node.
#[derive(Clone, Debug)]
pub struct LndConnection {
    /// `https://HOST:PORT` of lnd's REST listener.
    pub rest_url: String,
    /// lnd's `tls.cert`: the only certificate trusted.
    pub tls_cert: PathBuf,
    /// A macaroon file (its bytes go hex-encoded in a header; never logged).
    pub macaroon: PathBuf,
    /// Timeout of unary calls (and of connecting).
    pub request_timeout: Duration,
}

/// Why the client could not be built (a configuration problem: nothing was sent).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A setting is unusable.
    #[error("{field}: {reason}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl LndConnection {
    /// Builds the REST client: reads the certificate and macaroon files.
    pub fn client(&self) -> Result<LndRest, SetupError> {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|source| SetupError::Io { path: path.display().to_string(), source })
        };
        let pem = read(&self.tls_cert)?;
        let certs = rest::parse_certificates(&pem).map_err(|reason| SetupError::Invalid {
            field: "lnd_tls_cert",
            reason: format!("{}: {reason}", self.tls_cert.display()),
        })?;
        let macaroon = read(&self.macaroon)?;
        LndRest::new(&self.rest_url, certs, &macaroon, self.request_timeout)
            .map_err(|reason| SetupError::Invalid { field: "lnd_rest_url", reason })
    }
}

/// What `GET /v1/getinfo` told about lnd.
#[derive(Clone, Debug)]
pub struct Identity {
    /// lnd's node id (`identity_pubkey`).
    pub node_id: PublicKey,
    /// Whether lnd has caught up with the chain.
    pub synced_to_chain: bool,
}

/// Why lnd's identity could not be established.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// lnd did not answer, or refused the call.
    #[error(transparent)]
    Rest(#[from] RestError),
    /// lnd answered, but not with what we need (wrong network, a malformed id).
    #[error("{0}")]
    Refused(String),
}

/// lnd's name of a network (`GetInfo.chains[].network`).
pub fn lnd_network_name(network: Network) -> Option<&'static str> {
    match network {
        Network::Devnet => None,
        Network::Regtest => Some("regtest"),
        Network::Signet => Some("signet"),
        Network::Testnet => Some("testnet"),
        Network::Mainnet => Some("mainnet"),
    }
}

/// Asks lnd who it is (`GET /v1/getinfo`) and checks that it runs on `network`.
pub async fn identity(rest: &LndRest, network: Network) -> Result<Identity, IdentityError> {
    let want = lnd_network_name(network).ok_or_else(|| {
        IdentityError::Refused("lnd does not run on devnet (devnet is the embedded engine only)".into())
    })?;
    let info: GetInfo = rest.call(Method::GET, "/v1/getinfo", None).await?;
    let node_id =
        hex::decode(&info.identity_pubkey).ok().and_then(|b| PublicKey::from_slice(&b).ok()).ok_or_else(|| {
            IdentityError::Refused(format!("identity_pubkey {:?} is not a node id", info.identity_pubkey))
        })?;
    let networks: Vec<&str> = info.chains.iter().map(|c| c.network.as_str()).collect();
    if !networks.contains(&want) {
        return Err(IdentityError::Refused(format!(
            "lnd runs on {networks:?}, but this node is configured for {want}"
        )));
    }
    Ok(Identity { node_id, synced_to_chain: info.synced_to_chain })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_shared_and_required_only_by_who_uses_them() {
        let file: LndFile =
            toml::from_str("rest_url = \"https://10.0.0.2:8080\"\ntls_cert = \"/a\"\nmacaroon = \"/b\"").expect("toml");
        let args = LndArgs { lnd_macaroon: Some("/c".into()), ..Default::default() };
        let c = LndOptions::resolve(&args, &file).require(Network::Signet, "peer-transport").expect("ok");
        assert_eq!((c.rest_url.as_str(), c.tls_cert, c.macaroon), ("https://10.0.0.2:8080", "/a".into(), "/c".into()));
        let none = LndOptions::default();
        let e = none.require(Network::Regtest, "payment-backend").unwrap_err().to_string();
        assert!(e.contains("lnd-tls-cert") && e.contains("LCP_LND_TLS_CERT") && e.contains("[lnd]"), "{e}");
        let e = none.require(Network::Devnet, "peer-transport").unwrap_err().to_string();
        assert!(e.starts_with("peer-transport") && e.contains("devnet"), "{e}");
        let plain = LndArgs {
            lnd_rest_url: Some("http://127.0.0.1:8080".into()),
            lnd_tls_cert: Some("/a".into()),
            lnd_macaroon: Some("/b".into()),
        };
        let e = LndOptions::resolve(&plain, &LndFile::default()).require(Network::Mainnet, "x").unwrap_err();
        assert!(e.to_string().contains("https://"), "{e}");
        assert!(toml::from_str::<LndFile>("url = \"x\"").is_err());
    }
}
