//! `lcp-cli channel ...`: payment channels (devnet for now).

use super::{to_json, CliError};
use crate::bus::api::payd::{ChannelRow, PaydApi};
use crate::bus::api::Body;
use crate::bus::{Bus, ServiceId};
use std::fmt::Write as _;
use std::time::Duration;

/// `channel` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ChannelCmd {
    /// Open a channel to a connected peer (devnet: zero-conf, fabricated funding)
    Open {
        /// Peer node id, hex
        node_id: String,
        /// Capacity in satoshis
        sats: u64,
    },
    /// List channels
    List,
    /// Close a channel cooperatively (its peer must be connected)
    Close {
        /// Channel id, hex (as `channel list` shows it)
        channel_id: String,
    },
}

/// Sends one request to payd and returns its answer.
pub async fn ask_payd(bus: &Bus, req: PaydApi, timeout: Duration) -> Result<PaydApi, CliError> {
    match bus.request(&ServiceId::Payd, Body::Payd(req), timeout).await? {
        Body::Payd(p) => Ok(p),
        other => Err(CliError::Other(format!("unexpected answer from payd: {other:?}"))),
    }
}

fn line(c: &ChannelRow) -> String {
    format!(
        "{}  peer {}  {} sat  out {} msat  in {} msat  {}{}",
        c.channel_id,
        c.counterparty,
        c.capacity_sat,
        c.outbound_capacity_msat,
        c.inbound_capacity_msat,
        if c.is_usable { "usable" } else { "not usable" },
        if c.is_outbound { ", opened by us" } else { "" }
    )
}

/// Runs a `channel` subcommand.
pub async fn run(bus: &Bus, cmd: ChannelCmd, json: bool, timeout: Duration) -> Result<String, CliError> {
    let (req, wait) = match cmd {
        ChannelCmd::Open { node_id, sats } => {
            (PaydApi::OpenChannel { node_id, sats }, timeout.max(Duration::from_secs(35)))
        }
        ChannelCmd::List => (PaydApi::ListChannels, timeout),
        ChannelCmd::Close { channel_id } => {
            (PaydApi::CloseChannel { channel_id }, timeout.max(Duration::from_secs(35)))
        }
    };
    match ask_payd(bus, req, wait).await? {
        PaydApi::Channel(c) if json => to_json(&c),
        PaydApi::Channel(c) => Ok(format!("opened: {}", line(&c))),
        PaydApi::Channels(cs) if json => to_json(&cs),
        PaydApi::Channels(cs) if cs.is_empty() => Ok("(no channels)".into()),
        PaydApi::Channels(cs) => {
            let mut out = String::new();
            for c in &cs {
                let _ = writeln!(out, "{}", line(c));
            }
            Ok(out.trim_end().to_string())
        }
        PaydApi::ChannelClosed { channel_id, reason } if json => {
            to_json(&serde_json::json!({ "channel_id": channel_id, "reason": reason }))
        }
        PaydApi::ChannelClosed { channel_id, reason } => Ok(format!("closed: {channel_id} ({reason})")),
        other => Err(CliError::Other(format!("unexpected answer from payd: {other:?}"))),
    }
}
