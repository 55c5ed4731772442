//! peerd's options: flags (`LCP_*` env), the `[peerd]` file section, and the resolved config.

use crate::config::{pick, ConfigError, NodeArgs, NodeConfig};
use crate::lnd::{LndArgs, LndConnection, LndOptions};
use crate::payd::opts::BackendKind;
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
    /// The lnd connection (for `--peer-transport lnd`; shared with payd's lnd backend).
    #[command(flatten)]
    pub lnd: LndArgs,
}

/// How peerd reaches its peers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// Our own connections: BOLT #8 and BOLT #1 over TCP, with the node key of the data directory.
    #[default]
    Bolt8,
    /// An existing lnd's peer connections: LCP messages as lnd custom messages over its REST API,
    /// with lnd's node id.
    Lnd,
}

impl TransportKind {
    /// The name used in flags and files.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Bolt8 => "bolt8",
            TransportKind::Lnd => "lnd",
        }
    }
}

/// Default Lightning port.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9735";
/// Default limit of peer connections.
pub const DEFAULT_MAX_PEERS: usize = 1024;

/// peerd's own flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PeerdArgs {
    /// Peer transport: bolt8 (our own connections) or lnd (an existing lnd's) [default: bolt8]
    #[arg(long, env = "LCP_PEER_TRANSPORT", value_enum, value_name = "KIND")]
    pub peer_transport: Option<TransportKind>,
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
    /// See [`PeerdArgs::peer_transport`]: `transport = "bolt8" | "lnd"`.
    pub transport: Option<TransportKind>,
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
    /// How peers are reached.
    pub transport: PeerTransport,
}

/// The resolved transport.
#[derive(Debug, Clone)]
pub enum PeerTransport {
    /// BOLT #8 connections of our own.
    Bolt8,
    /// lnd's peer connections (no listener; `listen` is not used).
    Lnd(LndConnection),
}

impl PeerTransport {
    /// Which kind this is.
    pub fn kind(&self) -> TransportKind {
        match self {
            PeerTransport::Bolt8 => TransportKind::Bolt8,
            PeerTransport::Lnd(_) => TransportKind::Lnd,
        }
    }
}

/// With the lnd transport, channels and payments are lnd's: payd must use the lnd backend (the
/// embedded engine would need channel messages that lnd keeps to itself).
pub fn check_pairing(transport: TransportKind, backend: BackendKind) -> Result<(), ConfigError> {
    if transport == TransportKind::Lnd && backend != BackendKind::Lnd {
        return Err(ConfigError::Invalid {
            what: "peer-transport",
            msg: "the lnd transport needs payd's lnd backend (--payment-backend lnd, LCP_PAYMENT_BACKEND, or \
                  backend = \"lnd\" in [payd]); the embedded ldk engine cannot run over lnd's peer connections"
                .into(),
        });
    }
    Ok(())
}

/// peerd's transport kind as a process that does not take peerd's flags sees it (payd run on its
/// own): `LCP_PEER_TRANSPORT`, then the file, then the default.
pub fn transport_kind_outside(file: &PeerdFile) -> Result<TransportKind, ConfigError> {
    let env: PeerdArgs = crate::config::args_from_env("peer-transport")?;
    Ok(pick(env.peer_transport, file.transport, TransportKind::Bolt8))
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
    /// Flags/env over file over defaults. The lnd transport is refused on devnet and needs the shared `[lnd]` options.
    pub fn resolve(
        node: &NodeConfig,
        args: &PeerdArgs,
        file: &PeerdFile,
        lnd: &LndOptions,
    ) -> Result<Self, ConfigError> {
        let transport = match pick(args.peer_transport, file.transport, TransportKind::Bolt8) {
            TransportKind::Bolt8 => PeerTransport::Bolt8,
            TransportKind::Lnd => PeerTransport::Lnd(lnd.require(node.network, "peer-transport")?),
        };
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
        Ok(Self { node: node.clone(), listen, max_peers, connect, transport })
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

    #[test]
    fn transport_is_bolt8_by_default_and_lnd_needs_lnd_options_and_payd_lnd() {
        use crate::config::Network;
        let dir = tempfile::tempdir().expect("tempdir");
        let node = |network| {
            let args = NodeArgs { datadir: Some(dir.path().into()), network: Some(network), ..Default::default() };
            args.resolve().expect("node config").0
        };
        let none = LndOptions::default();
        let c = PeerdConfig::resolve(&node(Network::Devnet), &PeerdArgs::default(), &PeerdFile::default(), &none);
        assert_eq!(c.expect("ok").transport.kind(), TransportKind::Bolt8);
        let lnd = PeerdArgs { peer_transport: Some(TransportKind::Lnd), ..Default::default() };
        let e = PeerdConfig::resolve(&node(Network::Devnet), &lnd, &PeerdFile::default(), &none).unwrap_err();
        assert!(e.to_string().starts_with("peer-transport") && e.to_string().contains("devnet"), "{e}");
        let e = PeerdConfig::resolve(&node(Network::Regtest), &lnd, &PeerdFile::default(), &none).unwrap_err();
        assert!(e.to_string().contains("lnd-tls-cert"), "{e}");
        let files = LndOptions::resolve(
            &LndArgs { lnd_tls_cert: Some("/a".into()), lnd_macaroon: Some("/b".into()), ..Default::default() },
            &Default::default(),
        );
        let file: PeerdFile = toml::from_str("transport = \"lnd\"").expect("toml");
        let c = PeerdConfig::resolve(&node(Network::Regtest), &PeerdArgs::default(), &file, &files).expect("ok");
        match c.transport {
            PeerTransport::Lnd(l) => assert_eq!(l.macaroon, std::path::PathBuf::from("/b")),
            PeerTransport::Bolt8 => panic!("lnd expected"),
        }
        assert!(toml::from_str::<PeerdFile>("transport = \"tor\"").is_err());
        let e = check_pairing(TransportKind::Lnd, BackendKind::Ldk).unwrap_err().to_string();
        assert!(e.contains("--peer-transport") || e.contains("peer-transport"), "{e}");
        assert!(e.contains("--payment-backend lnd"), "{e}");
        assert!(check_pairing(TransportKind::Lnd, BackendKind::Lnd).is_ok());
        assert!(check_pairing(TransportKind::Bolt8, BackendKind::Ldk).is_ok());
        assert!(check_pairing(TransportKind::Bolt8, BackendKind::Lnd).is_ok());
    }
}
