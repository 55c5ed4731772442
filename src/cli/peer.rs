//! `lcp-cli peer ...`: Lightning peer connections.

use super::{to_json, CliError};
use crate::bus::api::peerd::{PeerInfo, PeerdApi};
use crate::bus::api::Body;
use crate::bus::{Bus, ServiceId};
use std::fmt::Write as _;
use std::time::Duration;

/// `peer` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum PeerCmd {
    /// Connect to a peer: NODEID@HOST:PORT
    Connect {
        /// NODEID@HOST:PORT
        uri: String,
        /// Keep the connection: reconnect with backoff, also after restarts
        #[arg(long)]
        persistent: bool,
    },
    /// List connected peers
    List,
    /// Disconnect a peer (and stop reconnecting to it)
    Disconnect {
        /// Node id, hex
        node_id: String,
    },
}

async fn ask(bus: &Bus, req: PeerdApi, timeout: Duration) -> Result<PeerdApi, CliError> {
    match bus.request(&ServiceId::Peerd, Body::Peerd(req), timeout).await? {
        Body::Peerd(p) => Ok(p),
        other => Err(CliError::Other(format!("unexpected answer from peerd: {other:?}"))),
    }
}

fn row(p: &PeerInfo) -> String {
    format!(
        "{}  {:<21}  {:<8}  session {:<4} {}",
        p.node_id,
        p.addr,
        if p.inbound { "inbound" } else { "outbound" },
        p.session,
        if p.persistent { "persistent" } else { "" }
    )
}

/// Runs a `peer` subcommand.
pub async fn run(bus: &Bus, cmd: PeerCmd, as_json: bool, timeout: Duration) -> Result<String, CliError> {
    match cmd {
        PeerCmd::Connect { uri, persistent } => {
            let (node_id, addr) = crate::peerd::opts::parse_peer_uri(&uri).map_err(CliError::Other)?;
            // The BOLT #8 handshake and init exchange may take longer than a plain request.
            match ask(bus, PeerdApi::Connect { node_id, addr, persistent }, timeout.max(Duration::from_secs(15)))
                .await?
            {
                PeerdApi::Connected(p) if as_json => to_json(&p),
                PeerdApi::Connected(p) => Ok(format!("connected: {}", row(&p))),
                other => Err(CliError::Other(format!("unexpected answer from peerd: {other:?}"))),
            }
        }
        PeerCmd::List => match ask(bus, PeerdApi::ListPeers, timeout).await? {
            PeerdApi::Peers(p) if as_json => to_json(&p),
            PeerdApi::Peers(p) if p.is_empty() => Ok("(no peers)".into()),
            PeerdApi::Peers(p) => {
                let mut out = String::new();
                for x in &p {
                    let _ = writeln!(out, "{}", row(x));
                }
                Ok(out.trim_end().to_string())
            }
            other => Err(CliError::Other(format!("unexpected answer from peerd: {other:?}"))),
        },
        PeerCmd::Disconnect { node_id } => {
            match ask(bus, PeerdApi::Disconnect { node_id: node_id.clone() }, timeout).await? {
                PeerdApi::Done if as_json => to_json(&serde_json::json!({ "node_id": node_id, "disconnected": true })),
                PeerdApi::Done => Ok(format!("disconnected {node_id}")),
                other => Err(CliError::Other(format!("unexpected answer from peerd: {other:?}"))),
            }
        }
    }
}
