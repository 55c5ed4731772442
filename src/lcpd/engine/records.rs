//! The persisted form of jobs. Written by the runtime whenever the engine says so (before the
//! engine's next outward action), read back at start to resume.

use serde::{Deserialize, Serialize};

/// States of a provider job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProviderState {
    /// quote_request seen, input stream not complete.
    AwaitingInput,
    /// Input complete; a worker prices it.
    Pricing,
    /// Priced; payd makes the invoice.
    Invoicing,
    /// quote_response sent; waiting for the payment.
    Quoted,
    /// Paid; waiting for a worker.
    Paid,
    /// A worker runs it.
    Running,
    /// The result stream is going out as the worker produces it.
    Streaming,
    /// The whole result is stored; it goes out when the peer is there.
    ResultReady,
    /// Result delivered and `lcp_result(ok)` sent.
    Done,
    /// Ended with an error the requester was sent.
    Failed,
    /// Cancelled by the requester.
    Cancelled,
    /// The quote expired unpaid.
    Expired,
}

impl ProviderState {
    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingInput => "awaiting_input",
            Self::Pricing => "pricing",
            Self::Invoicing => "invoicing",
            Self::Quoted => "quoted",
            Self::Paid => "paid",
            Self::Running => "running",
            Self::Streaming => "streaming",
            Self::ResultReady => "result_ready",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }

    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Cancelled | Self::Expired)
    }

    /// Whether the job has been paid for.
    pub fn is_paid(self) -> bool {
        matches!(self, Self::Paid | Self::Running | Self::Streaming | Self::ResultReady | Self::Done)
    }
}

/// A provider job as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderRecord {
    /// The requester's node id, hex.
    pub peer: String,
    /// Job id.
    pub job_id: [u8; 32],
    /// State.
    pub state: ProviderState,
    /// protocol_version of the request.
    pub protocol_version: u16,
    /// Task kind.
    pub task_kind: String,
    /// Raw params.
    pub params: Option<Vec<u8>>,
    /// Model from the params.
    pub model: Option<String>,
    /// Input stream content type.
    pub input_content_type: String,
    /// Input stream content encoding.
    pub input_content_encoding: String,
    /// Input length.
    pub input_len: u64,
    /// Price.
    pub price_msat: u64,
    /// Quote expiry, unix seconds.
    pub quote_expiry: u64,
    /// terms_hash.
    pub terms_hash: [u8; 32],
    /// The invoice.
    pub bolt11: String,
    /// Its payment hash.
    pub payment_hash: [u8; 32],
    /// The encoded quote_response payload (re-sent to a retried quote_request).
    pub quote_response: Vec<u8>,
    /// Result content type, once known.
    pub result_content_type: Option<String>,
    /// Result length, once complete.
    pub result_len: Option<u64>,
    /// Result SHA-256, once complete.
    pub result_hash: Option<[u8; 32]>,
    /// Terminal error sent to the requester.
    pub error: Option<(u16, String)>,
    /// Created, unix seconds.
    pub created_at: u64,
    /// Last change, unix seconds.
    pub updated_at: u64,
}

/// States of a requester job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RequesterState {
    /// quote_request and input sent; waiting for the quote.
    Requested,
    /// The quote passed every check; waiting for the caller to accept.
    Quoted,
    /// The payment was handed to payd; outcome not known yet.
    Paying,
    /// Paid; waiting for the result.
    AwaitingResult,
    /// Result received and verified.
    Done,
    /// Failed.
    Failed,
    /// Cancelled by us.
    Cancelled,
    /// The quote expired before it was accepted.
    Expired,
}

impl RequesterState {
    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Quoted => "quoted",
            Self::Paying => "paying",
            Self::AwaitingResult => "awaiting_result",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }

    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Cancelled | Self::Expired)
    }
}

/// A requester job as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequesterRecord {
    /// The provider's node id, hex.
    pub peer: String,
    /// Job id.
    pub job_id: [u8; 32],
    /// State.
    pub state: RequesterState,
    /// Task kind.
    pub task_kind: String,
    /// Raw params.
    pub params: Option<Vec<u8>>,
    /// Model from the params.
    pub model: Option<String>,
    /// Input content type.
    pub input_content_type: String,
    /// Input length.
    pub input_len: u64,
    /// The caller's price ceiling.
    pub max_price_msat: Option<u64>,
    /// Quoted price.
    pub price_msat: u64,
    /// Quote expiry, unix seconds.
    pub quote_expiry: u64,
    /// terms_hash (recomputed and checked).
    pub terms_hash: [u8; 32],
    /// The provider's invoice.
    pub bolt11: String,
    /// Its payment hash.
    pub payment_hash: [u8; 32],
    /// The preimage, once paid.
    pub preimage: Option<[u8; 32]>,
    /// The payment was handed to payd and its outcome is not known yet: while set, lcpd keeps
    /// asking payd (a lookup, never a second payment) even after the job ended, so a payment that
    /// went through is never missing from the record. Records written before the field: false.
    #[serde(default)]
    pub payment_unresolved: bool,
    /// Result content type.
    pub result_content_type: Option<String>,
    /// Result length.
    pub result_len: Option<u64>,
    /// Result SHA-256.
    pub result_hash: Option<[u8; 32]>,
    /// Why it failed.
    pub error: Option<String>,
    /// Created, unix seconds.
    pub created_at: u64,
    /// Last change, unix seconds.
    pub updated_at: u64,
}
