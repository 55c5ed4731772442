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
}
