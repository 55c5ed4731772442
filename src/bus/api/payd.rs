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

/// A channel that closed, kept listed for 30 days (like lnd's `closedchannels`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedChannelRow {
    /// Channel id, hex.
    pub channel_id: String,
    /// The other side's node id, hex (empty if not known).
    pub counterparty: String,
    /// Capacity in satoshis.
    pub capacity_sat: u64,
    /// Unix seconds.
    pub closed_at: u64,
    /// Why it closed (LDK's closure reason).
    pub reason: String,
    /// Our HTLCs that were in flight on it when it closed: on devnet nothing resolves them, and
    /// their payments are `Stranded`.
    pub stranded_htlcs: u64,
    /// Their total, msat.
    pub stranded_msat: u64,
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

/// State of an outgoing payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentState {
    /// Recorded and handed to the backend; outcome not known yet.
    Pending,
    /// The payee released the preimage.
    Succeeded,
    /// Failed for good; nothing was paid.
    Failed,
    /// Ended without an outcome: its HTLC was in flight on a channel that closed by force, and
    /// nothing will resolve it (devnet has no chain). It may have reached the payee; it is never
    /// sent again. `failure` says which channel closed and why.
    Stranded,
}

/// An outgoing payment as payd records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRow {
    /// Payment hash.
    pub payment_hash: [u8; 32],
    /// The invoice paid.
    pub bolt11: String,
    /// Amount sent to the payee, msat.
    pub amount_msat: u64,
    /// The payee's node id, hex.
    pub payee: String,
    /// State.
    pub state: PaymentState,
    /// The preimage, once succeeded.
    pub preimage: Option<[u8; 32]>,
    /// Routing fee paid, once succeeded, msat.
    pub fee_msat: Option<u64>,
    /// Why it failed, once failed.
    pub failure: Option<String>,
    /// When the attempt was recorded, unix seconds.
    pub created_at: u64,
    /// Last state change, unix seconds.
    pub updated_at: u64,
}

/// What the node holds in its channels, and how many payments and invoices it has.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceRow {
    /// Channels, usable or not.
    pub channels: u32,
    /// Channels payments can use now.
    pub usable_channels: u32,
    /// Sum of what we can send over all channels, msat.
    pub outbound_msat: u64,
    /// Sum of what we can receive over all channels, msat.
    pub inbound_msat: u64,
    /// Outgoing payments whose outcome is not known yet.
    pub payments_pending: u32,
    /// Outgoing payments that succeeded.
    pub payments_succeeded: u32,
    /// Outgoing payments that failed, or ended stranded on a closed channel.
    pub payments_failed: u32,
    /// Amount sent by succeeded payments (without fees), msat.
    pub sent_msat: u64,
    /// Routing fees paid by succeeded payments, msat.
    pub fees_msat: u64,
    /// Invoices neither paid nor expired.
    pub invoices_open: u32,
    /// Invoices paid.
    pub invoices_settled: u32,
    /// Amount received over settled invoices, msat.
    pub received_msat: u64,
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
    /// -> payd: every invoice payd issued, oldest first. Answered with [`PaydApi::Invoices`].
    ListInvoices,
    /// payd ->.
    Invoices(Vec<InvoiceRow>),
    /// -> payd: every outgoing payment, oldest first. Answered with [`PaydApi::Payments`].
    ListPayments,
    /// payd ->.
    Payments(Vec<PaymentRow>),
    /// -> payd: channel balances and payment counts. Answered with [`PaydApi::BalanceInfo`].
    Balance,
    /// payd ->.
    BalanceInfo(BalanceRow),
    /// -> payd: close a channel cooperatively (its peer must be connected) and wait until it is
    /// closed. Answered with [`PaydApi::ChannelClosed`].
    CloseChannel {
        /// Channel id, hex.
        channel_id: String,
    },
    /// payd ->: the channel is closed.
    ChannelClosed {
        /// Channel id, hex.
        channel_id: String,
        /// How it closed.
        reason: String,
    },
    /// -> payd: pay an invoice only if it is what the caller expects (LCP v0.2 section 3.3):
    /// network, expiry, amount, payee, description hash and latest expiry are checked before
    /// anything is paid; a mismatch is answered with a `failed_precondition` error that names it.
    /// Idempotent per payment hash like [`PaydApi::Pay`]. Answered with [`PaydApi::Paid`].
    PayChecked {
        /// BOLT11 string.
        bolt11: String,
        /// Fee limit, msat.
        max_fee_msat: u64,
        /// Give up after this many seconds.
        timeout_secs: u32,
        /// The agreed price; the invoice amount must equal it, msat.
        amount_msat: u64,
        /// The provider's node id, hex; the invoice payee must equal it.
        payee: String,
        /// The terms hash; the invoice description hash must equal it.
        description_hash: [u8; 32],
        /// If set, the invoice must expire no later than this unix time.
        not_after_secs: Option<u64>,
    },
    /// -> payd: one outgoing payment, by payment hash; a lookup only, it never pays. Answered
    /// with [`PaydApi::PaymentInfo`].
    LookupPayment {
        /// Payment hash.
        payment_hash: [u8; 32],
    },
    /// payd ->: the payment, or `None` if payd never recorded one for that hash (then nothing was
    /// paid).
    PaymentInfo(Option<PaymentRow>),
    /// payd ->: the answer to [`PaydApi::Pay`] or [`PaydApi::PayChecked`] for a payment that is
    /// stranded ([`PaymentState::Stranded`]): it ended without an outcome and is never sent again.
    PaymentStranded {
        /// Payment hash.
        payment_hash: [u8; 32],
        /// Which channel closed, and why.
        reason: String,
    },
    /// -> payd: close a channel by force (embedded engine): our latest commitment is "broadcast"
    /// without asking the peer; on devnet nothing confirms it, so HTLCs in flight on it are
    /// stranded. Answered with [`PaydApi::ChannelClosed`].
    ForceCloseChannel {
        /// Channel id, hex.
        channel_id: String,
    },
    /// -> payd: channels that closed in the last 30 days, most recent first. Answered with
    /// [`PaydApi::ClosedChannels`].
    ListClosedChannels,
    /// payd ->.
    ClosedChannels(Vec<ClosedChannelRow>),
}
