//! `lcp-cli balance`: what the node can send and receive, and its payment counts.

use super::channel::ask_payd;
use super::{to_json, CliError};
use crate::bus::api::payd::{BalanceRow, PaydApi};
use crate::bus::Bus;
use std::time::Duration;

/// The human form of a balance.
pub fn text(b: &BalanceRow) -> String {
    format!(
        "channels     {} ({} usable)\n\
         can send     {} msat\n\
         can receive  {} msat\n\
         payments     {} succeeded, {} pending, {} failed; sent {} msat, fees {} msat\n\
         invoices     {} open, {} settled; received {} msat",
        b.channels,
        b.usable_channels,
        b.outbound_msat,
        b.inbound_msat,
        b.payments_succeeded,
        b.payments_pending,
        b.payments_failed,
        b.sent_msat,
        b.fees_msat,
        b.invoices_open,
        b.invoices_settled,
        b.received_msat
    )
}

/// Runs `balance`.
pub async fn run(bus: &Bus, json: bool, timeout: Duration) -> Result<String, CliError> {
    match ask_payd(bus, PaydApi::Balance, timeout).await? {
        PaydApi::BalanceInfo(b) if json => to_json(&b),
        PaydApi::BalanceInfo(b) => Ok(text(&b)),
        other => Err(CliError::Other(format!("unexpected answer from payd: {other:?}"))),
    }
}
