//! peerd's options: flags (`LCP_*` env), the `[peerd]` file section, and the resolved config.

use crate::config::{pick, ConfigError, NodeArgs, NodeConfig};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// `peerd` command line.
#[derive(clap::Parser, Debug)]
#[command(name = "peerd", version, about = "LCP node: peer connections (BOLT #8 + BOLT #1) on the bus")]
pub struct Opts {
    /// Shared options.
    #[command(flatten)]
    pub node: NodeArgs,
    /// peerd's own options.
    #[command(flatten)]
    pub peerd: PeerdArgs,
}

/// Default Lightning port.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9735";
/// Default limit of peer connections.
pub const DEFAULT_MAX_PEERS: usize = 1024;

/// peerd's own flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PeerdArgs {
    /// Where to accept Lightning peers, or "off" [default: 0.0.0.0:9735]
    #[arg(long, env = "LCP_LISTEN", value_name = "HOST:PORT|off")]
    pub listen: Option<String>,
    /// Peer connections at most (inbound and outbound) [default: 1024]
    #[arg(long, env = "LCP_MAX_PEERS", value_name = "N")]
    pub max_peers: Option<usize>,
    /// Peers to keep connected (reconnected with backoff), comma-separated NODEID@HOST:PORT
    #[arg(long, env = "LCP_CONNECT", value_delimiter = ',', value_name = "NODEID@HOST:PORT")]
    pub connect: Option<Vec<String>>,
}

/// `[peerd]` section of the config file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PeerdFile {
    /// See [`PeerdArgs::listen`].
    pub listen: Option<String>,
    /// See [`PeerdArgs::max_peers`].
    pub max_peers: Option<usize>,
    /// See [`PeerdArgs::connect`].
    pub connect: Option<Vec<String>>,
}

/// Resolved peerd settings.
#[derive(Debug, Clone)]
pub struct PeerdConfig {
    /// Shared settings.
    pub node: NodeConfig,
    /// Listening address (none: do not accept peers).
    pub listen: Option<SocketAddr>,
    /// Peer connections at most.
    pub max_peers: usize,
    /// Persistent peers from the configuration: (node id hex, host:port).
    pub connect: Vec<(String, String)>,
}

/// Parses `NODEID@HOST:PORT` (node id: 66 hex characters of a compressed key).
pub fn parse_peer_uri(s: &str) -> Result<(String, String), String> {
    let (id, addr) = s.split_once('@').ok_or_else(|| format!("{s:?}: expected NODEID@HOST:PORT"))?;
    let bytes = hex::decode(id).map_err(|_| format!("{s:?}: node id is not hex"))?;
    if bytes.len() != 33 || !matches!(bytes[0], 2 | 3) {
        return Err(format!("{s:?}: node id must be a 33-byte compressed public key"));
    }
    if addr.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
        return Err(format!("{s:?}: address must be HOST:PORT"));
    }
    Ok((id.to_lowercase(), addr.to_string()))
}

impl PeerdConfig {
    /// Flags/env over file over defaults.
    pub fn resolve(node: &NodeConfig, args: &PeerdArgs, file: &PeerdFile) -> Result<Self, ConfigError> {
        let listen = pick(args.listen.clone(), file.listen.clone(), DEFAULT_LISTEN.to_string());
        let listen = if listen == "off" {
            None
        } else {
            Some(listen.parse::<SocketAddr>().map_err(|_| ConfigError::Invalid {
                what: "listen",
                msg: format!("{listen:?} is not HOST:PORT with an IP address (or \"off\")"),
            })?)
        };
        let max_peers = pick(args.max_peers, file.max_peers, DEFAULT_MAX_PEERS);
        if max_peers == 0 {
            return Err(ConfigError::Invalid { what: "max-peers", msg: "must be at least 1".into() });
        }
        let connect = pick(args.connect.clone(), file.connect.clone(), vec![])
            .iter()
            .map(|s| parse_peer_uri(s).map_err(|msg| ConfigError::Invalid { what: "connect", msg }))
            .collect::<Result<_, _>>()?;
        Ok(Self { node: node.clone(), listen, max_peers, connect })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_uris_are_parsed_strictly() {
        let id = format!("02{}", "ab".repeat(32));
        assert_eq!(parse_peer_uri(&format!("{id}@127.0.0.1:9735")), Ok((id.clone(), "127.0.0.1:9735".into())));
        assert_eq!(parse_peer_uri(&format!("{}@h:1", id.to_uppercase())).map(|p| p.0), Ok(id.clone()));
        for bad in [id.clone(), format!("{id}@host"), format!("04{}@h:1", "ab".repeat(32)), "zz@h:1".into()] {
            assert!(parse_peer_uri(&bad).is_err(), "{bad}");
        }
    }
}
