//! payd's bus API: channels (devnet), invoices and payments.

use serde::{Deserialize, Serialize};

/// A channel as payd reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRow {
    /// Channel id, hex.
    pub channel_id: String,
    /// The other side's node id, hex.
    pub counterparty: String,
    /// Capacity in satoshis.
    pub capacity_sat: u64,
    /// What we can send now, msat.
    pub outbound_capacity_msat: u64,
    /// What we can receive now, msat.
    pub inbound_capacity_msat: u64,
    /// Whether payments can use it now.
    pub is_usable: bool,
    /// Whether we opened it.
    pub is_outbound: bool,
}

/// State of an invoice payd issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InvoiceState {
    /// Not paid yet, not expired.
    Open,
    /// Paid and claimed.
    Settled,
    /// Not paid before its expiry.
    Expired,
}

/// An invoice payd issued.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceRow {
    /// Payment hash.
    pub payment_hash: [u8; 32],
    /// BOLT11 string.
    pub bolt11: String,
    /// Requested amount, msat.
    pub amount_msat: u64,
    /// The description hash it commits to.
    pub description_hash: [u8; 32],
    /// Creation time, unix seconds.
    pub created_at: u64,
    /// Expiry time, unix seconds.
    pub expires_at: u64,
    /// State.
    pub state: InvoiceState,
    /// Amount received, once settled.
    pub amount_received_msat: Option<u64>,
    /// Settlement time, unix seconds.
    pub settled_at: Option<u64>,
}

/// payd's API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaydApi {
    /// -> payd: open a devnet channel to a connected peer. Answered with [`PaydApi::Channel`].
    OpenChannel {
        /// Peer node id, hex.
        node_id: String,
        /// Capacity in satoshis.
        sats: u64,
    },
    /// payd ->: one channel.
    Channel(ChannelRow),
    /// -> payd. Answered with [`PaydApi::Channels`].
    ListChannels,
    /// payd ->.
    Channels(Vec<ChannelRow>),
    /// -> payd: an invoice signed by the node key. Answered with [`PaydApi::Invoice`].
    CreateInvoice {
        /// Amount, msat (> 0).
        amount_msat: u64,
        /// The BOLT11 `description_hash` (LCP: the terms hash).
        description_hash: [u8; 32],
        /// Seconds until it expires.
        expiry_secs: u32,
    },
    /// payd ->.
    Invoice {
        /// BOLT11 string.
        bolt11: String,
        /// Payment hash.
        payment_hash: [u8; 32],
    },
    /// -> payd: pay an invoice (idempotent per payment hash). Answered with [`PaydApi::Paid`].
    Pay {
        /// BOLT11 string.
        bolt11: String,
        /// Fee limit, msat.
        max_fee_msat: u64,
        /// Give up after this many seconds.
        timeout_secs: u32,
    },
    /// payd ->.
    Paid {
        /// Payment hash.
        payment_hash: [u8; 32],
        /// The preimage: sha256(preimage) == payment_hash.
        preimage: [u8; 32],
        /// Amount paid, msat.
        amount_msat: u64,
        /// Fee paid, msat.
        fee_msat: u64,
    },
    /// -> payd: one invoice we issued. Answered with [`PaydApi::InvoiceInfo`].
    LookupInvoice {
        /// Payment hash.
        payment_hash: [u8; 32],
    },
    /// payd ->: the invoice, or `None` if payd never issued it.
    InvoiceInfo(Option<InvoiceRow>),
    /// payd -> lcpd, event: an invoice we issued was paid and claimed. Sent once per settlement
    /// as it happens; an event lost on the bus (lcpd down) is recovered with
    /// [`PaydApi::LookupInvoice`].
    InvoiceSettled {
        /// Payment hash.
        payment_hash: [u8; 32],
        /// Amount received, msat.
        amount_msat: u64,
    },
}
