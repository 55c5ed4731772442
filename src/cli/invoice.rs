//! `lcp-cli invoice ...`: invoices this node issued.

use super::channel::ask_payd;
use super::{to_json, CliError};
use crate::bus::api::payd::{InvoiceRow, InvoiceState, PaydApi};
use crate::bus::Bus;
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;

/// `invoice` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum InvoiceCmd {
    /// List the invoices this node issued, oldest first
    List,
}

/// An invoice as `--json` prints it (hashes in hex).
#[derive(Debug, Serialize)]
pub struct InvoiceView {
    /// Payment hash, hex.
    pub payment_hash: String,
    /// BOLT11 string.
    pub bolt11: String,
    /// Requested amount, msat.
    pub amount_msat: u64,
    /// Description hash (LCP: the terms hash), hex.
    pub description_hash: String,
    /// Creation time, unix seconds.
    pub created_at: u64,
    /// Expiry time, unix seconds.
    pub expires_at: u64,
    /// `open`, `settled` or `expired`.
    pub state: &'static str,
    /// Amount received, once settled.
    pub amount_received_msat: Option<u64>,
    /// Settlement time, unix seconds.
    pub settled_at: Option<u64>,
}

fn state_name(s: InvoiceState) -> &'static str {
    match s {
        InvoiceState::Open => "open",
        InvoiceState::Settled => "settled",
        InvoiceState::Expired => "expired",
    }
}

impl From<&InvoiceRow> for InvoiceView {
    fn from(r: &InvoiceRow) -> Self {
        InvoiceView {
            payment_hash: hex::encode(r.payment_hash),
            bolt11: r.bolt11.clone(),
            amount_msat: r.amount_msat,
            description_hash: hex::encode(r.description_hash),
            created_at: r.created_at,
            expires_at: r.expires_at,
            state: state_name(r.state),
            amount_received_msat: r.amount_received_msat,
            settled_at: r.settled_at,
        }
    }
}

/// A unix time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn fmt_unix(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn line(r: &InvoiceRow) -> String {
    let mut s = format!("{}  {} msat  {}", hex::encode(r.payment_hash), r.amount_msat, state_name(r.state));
    if let Some(got) = r.amount_received_msat {
        let _ = write!(s, " ({got} msat");
        if let Some(at) = r.settled_at {
            let _ = write!(s, " at {}", fmt_unix(at));
        }
        s.push(')');
    }
    let _ = write!(s, "  expires {}  terms {}", fmt_unix(r.expires_at), hex::encode(r.description_hash));
    s
}

/// Runs an `invoice` subcommand.
pub async fn run(bus: &Bus, cmd: InvoiceCmd, json: bool, timeout: Duration) -> Result<String, CliError> {
    match cmd {
        InvoiceCmd::List => match ask_payd(bus, PaydApi::ListInvoices, timeout).await? {
            PaydApi::Invoices(v) if json => to_json(&v.iter().map(InvoiceView::from).collect::<Vec<_>>()),
            PaydApi::Invoices(v) if v.is_empty() => Ok("(no invoices)".into()),
            PaydApi::Invoices(v) => {
                let mut out = String::new();
                for r in &v {
                    let _ = writeln!(out, "{}", line(r));
                }
                Ok(out.trim_end().to_string())
            }
            other => Err(CliError::Other(format!("unexpected answer from payd: {other:?}"))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_times_format_as_utc_dates() {
        assert_eq!(fmt_unix(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(fmt_unix(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(fmt_unix(1_800_000_000), "2027-01-15 08:00:00 UTC");
        assert_eq!(fmt_unix(4_102_444_799), "2099-12-31 23:59:59 UTC");
    }
}
