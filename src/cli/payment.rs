//! `lcp-cli payment ...`: payments this node made.

use super::channel::ask_payd;
use super::invoice::fmt_unix;
use super::{to_json, CliError};
use crate::bus::api::payd::{PaydApi, PaymentRow, PaymentState};
use crate::bus::Bus;
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;

/// `payment` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum PaymentCmd {
    /// List outgoing payments, oldest first
    List,
    /// Show one outgoing payment by its payment hash (a lookup: nothing is paid)
    Show {
        /// Payment hash, 64 hex digits
        payment_hash: String,
    },
}

/// A payment as `--json` prints it (hashes and preimage in hex).
#[derive(Debug, Serialize)]
pub struct PaymentView {
    /// Payment hash, hex.
    pub payment_hash: String,
    /// The invoice paid.
    pub bolt11: String,
    /// Amount sent to the payee, msat.
    pub amount_msat: u64,
    /// The payee's node id, hex.
    pub payee: String,
    /// `pending`, `succeeded`, `failed` or `stranded` (ended on a force-closed channel with the
    /// HTLC in flight; see `failure`).
    pub state: &'static str,
    /// The preimage, hex, once succeeded.
    pub preimage: Option<String>,
    /// Routing fee paid, msat.
    pub fee_msat: Option<u64>,
    /// Why it failed.
    pub failure: Option<String>,
    /// When the attempt was recorded, unix seconds.
    pub created_at: u64,
    /// Last state change, unix seconds.
    pub updated_at: u64,
}

fn state_name(s: PaymentState) -> &'static str {
    match s {
        PaymentState::Pending => "pending",
        PaymentState::Succeeded => "succeeded",
        PaymentState::Failed => "failed",
        PaymentState::Stranded => "stranded",
    }
}

impl From<&PaymentRow> for PaymentView {
    fn from(r: &PaymentRow) -> Self {
        PaymentView {
            payment_hash: hex::encode(r.payment_hash),
            bolt11: r.bolt11.clone(),
            amount_msat: r.amount_msat,
            payee: r.payee.clone(),
            state: state_name(r.state),
            preimage: r.preimage.map(hex::encode),
            fee_msat: r.fee_msat,
            failure: r.failure.clone(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

fn line(r: &PaymentRow) -> String {
    let mut s =
        format!("{}  {} msat to {}  {}", hex::encode(r.payment_hash), r.amount_msat, r.payee, state_name(r.state));
    match r.state {
        PaymentState::Succeeded => {
            let _ = write!(s, "  fee {} msat", r.fee_msat.unwrap_or(0));
            if let Some(p) = r.preimage {
                let _ = write!(s, "  preimage {}", hex::encode(p));
            }
        }
        PaymentState::Failed | PaymentState::Stranded => {
            let _ = write!(s, ": {}", r.failure.as_deref().unwrap_or("no reason given"));
        }
        PaymentState::Pending => {}
    }
    let _ = write!(s, "  at {}", fmt_unix(r.created_at));
    s
}

/// Runs a `payment` subcommand.
pub async fn run(bus: &Bus, cmd: PaymentCmd, json: bool, timeout: Duration) -> Result<String, CliError> {
    match cmd {
        PaymentCmd::List => match ask_payd(bus, PaydApi::ListPayments, timeout).await? {
            PaydApi::Payments(v) if json => to_json(&v.iter().map(PaymentView::from).collect::<Vec<_>>()),
            PaydApi::Payments(v) if v.is_empty() => Ok("(no payments)".into()),
            PaydApi::Payments(v) => {
                let mut out = String::new();
                for r in &v {
                    let _ = writeln!(out, "{}", line(r));
                }
                Ok(out.trim_end().to_string())
            }
            other => Err(CliError::Other(format!("unexpected answer from payd: {other:?}"))),
        },
        PaymentCmd::Show { payment_hash } => {
            let hash = super::parse_hex32("payment hash", &payment_hash)?;
            match ask_payd(bus, PaydApi::LookupPayment { payment_hash: hash }, timeout).await? {
                PaydApi::PaymentInfo(Some(r)) if json => to_json(&PaymentView::from(&r)),
                PaydApi::PaymentInfo(Some(r)) => Ok(line(&r)),
                PaydApi::PaymentInfo(None) => {
                    Err(CliError::Other(format!("no payment with hash {} (nothing was paid)", hex::encode(hash))))
                }
                other => Err(CliError::Other(format!("unexpected answer from payd: {other:?}"))),
            }
        }
    }
}
