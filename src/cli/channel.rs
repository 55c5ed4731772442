//! `lcp-cli channel ...`: payment channels (devnet for now).

use super::invoice::fmt_unix;
use super::{to_json, CliError};
use crate::bus::api::payd::{ChannelRow, ClosedChannelRow, PaydApi};
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
    /// List channels: the open ones, then those closed in the last 30 days with why (with
    /// `--json`: the open ones only, as before; `--closed` for the closed ones)
    List {
        /// Only the closed channels
        #[arg(long)]
        closed: bool,
    },
    /// Close a channel cooperatively (its peer must be connected), or by force
    Close {
        /// Channel id, hex (as `channel list` shows it)
        channel_id: String,
        /// Close without the peer: publish our latest commitment. On devnet nothing confirms
        /// it, so payments with an HTLC in flight on the channel end `stranded`
        #[arg(long)]
        force: bool,
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

fn closed_line(c: &ClosedChannelRow) -> String {
    let mut s = format!(
        "{}  peer {}  {} sat  closed at {}: {}",
        c.channel_id,
        if c.counterparty.is_empty() { "?" } else { &c.counterparty },
        c.capacity_sat,
        fmt_unix(c.closed_at),
        c.reason
    );
    if c.stranded_htlcs > 0 {
        let _ = write!(
            s,
            "  ({} HTLC(s) of ours, {} msat, stranded: never resolved without a chain)",
            c.stranded_htlcs, c.stranded_msat
        );
    }
    s
}

async fn closed(bus: &Bus, timeout: Duration) -> Result<Vec<ClosedChannelRow>, CliError> {
    match ask_payd(bus, PaydApi::ListClosedChannels, timeout).await? {
        PaydApi::ClosedChannels(v) => Ok(v),
        other => Err(CliError::Other(format!("unexpected answer from payd: {other:?}"))),
    }
}

/// Runs a `channel` subcommand.
pub async fn run(bus: &Bus, cmd: ChannelCmd, json: bool, timeout: Duration) -> Result<String, CliError> {
    let (req, wait) = match cmd {
        ChannelCmd::Open { node_id, sats } => {
            (PaydApi::OpenChannel { node_id, sats }, timeout.max(Duration::from_secs(35)))
        }
        ChannelCmd::List { closed: true } => {
            let v = closed(bus, timeout).await?;
            if json {
                return to_json(&v);
            }
            if v.is_empty() {
                return Ok("(no closed channels)".into());
            }
            return Ok(v.iter().map(closed_line).collect::<Vec<_>>().join("\n"));
        }
        ChannelCmd::List { closed: false } if !json => {
            let open = match ask_payd(bus, PaydApi::ListChannels, timeout).await? {
                PaydApi::Channels(cs) => cs,
                other => return Err(CliError::Other(format!("unexpected answer from payd: {other:?}"))),
            };
            let mut out = String::new();
            if open.is_empty() {
                out.push_str("(no open channels)\n");
            }
            for c in &open {
                let _ = writeln!(out, "{}", line(c));
            }
            for c in closed(bus, timeout).await? {
                let _ = writeln!(out, "closed: {}", closed_line(&c));
            }
            return Ok(out.trim_end().to_string());
        }
        ChannelCmd::List { closed: false } => (PaydApi::ListChannels, timeout),
        ChannelCmd::Close { channel_id, force: false } => {
            (PaydApi::CloseChannel { channel_id }, timeout.max(Duration::from_secs(35)))
        }
        ChannelCmd::Close { channel_id, force: true } => {
            (PaydApi::ForceCloseChannel { channel_id }, timeout.max(Duration::from_secs(35)))
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
