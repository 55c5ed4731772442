//! The payment backend contract shared by every payd implementation.
//!
//! lcpd talks to payd through [`PaymentBackend`]: it creates invoices bound to a job's
//! `terms_hash` (provider side), learns when they settle, and pays a provider's invoice after
//! checking it (requester side, LCP v0.2 section 3.3). The checks live in [`check_invoice`], a pure
//! function that every backend and lcpd can reuse.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use lightning::bitcoin::secp256k1::PublicKey;
use lightning_invoice::{Bolt11Invoice, Bolt11InvoiceDescriptionRef, Currency};
use tokio::sync::broadcast;

/// A boxed future, so that [`PaymentBackend`] stays usable as `Arc<dyn PaymentBackend>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The network, shared with the rest of the node's configuration.
pub use crate::config::Network;

/// The BOLT11 human-readable currency prefix of a currency (`bc`, `tb`, `bcrt`, ...).
pub fn currency_prefix(currency: Currency) -> &'static str {
    match currency {
        Currency::Bitcoin => "bc",
        Currency::BitcoinTestnet => "tb",
        Currency::Regtest => "bcrt",
        Currency::Simnet => "sb",
        Currency::Signet => "tbs",
    }
}

/// Errors of payd and its backends. Every message says which field or operation failed and why.
#[derive(Debug, thiserror::Error)]
pub enum PaydError {
    /// The BOLT11 string could not be parsed or its signature is invalid.
    #[error("invalid invoice: {reason}")]
    InvalidInvoice {
        /// Why parsing failed.
        reason: String,
    },
    /// The invoice is for another network than the backend's.
    #[error("invoice is for currency {got:?} but this node runs on {network} (currency {expected:?})")]
    WrongNetwork {
        /// The backend's network.
        network: Network,
        /// Expected currency prefix.
        expected: String,
        /// The invoice's currency prefix.
        got: String,
    },
    /// The invoice carries no amount (LCP never pays amount-less invoices).
    #[error("invoice has no amount (amount-less invoices are refused)")]
    MissingAmount,
    /// The invoice amount differs from the quoted price.
    #[error("invoice amount is {got_msat} msat but {expected_msat} msat was expected")]
    WrongAmount {
        /// The agreed price.
        expected_msat: u64,
        /// The invoice amount.
        got_msat: u64,
    },
    /// The invoice is payable to another node than the provider.
    #[error("invoice payee is {got} but the provider is {expected}")]
    WrongPayee {
        /// The expected payee node id, hex.
        expected: String,
        /// The invoice's payee node id, hex.
        got: String,
    },
    /// The invoice has a plain description instead of a description hash.
    #[error("invoice has no description_hash (it must commit to the job terms)")]
    MissingDescriptionHash,
    /// The invoice's description hash is not the expected terms hash.
    #[error("invoice description_hash is {got} but {expected} was expected")]
    WrongDescriptionHash {
        /// Expected hash, hex.
        expected: String,
        /// Invoice hash, hex.
        got: String,
    },
    /// The invoice has expired.
    #[error("invoice expired at unix time {expired_at} (now {now})")]
    InvoiceExpired {
        /// Expiry time of the invoice, unix seconds.
        expired_at: u64,
        /// Current time, unix seconds.
        now: u64,
    },
    /// The invoice stays valid longer than the quote allows.
    #[error("invoice expires at unix time {invoice_expires_at}, after the quote limit {not_after}")]
    InvoiceOutlivesQuote {
        /// Invoice expiry, unix seconds.
        invoice_expires_at: u64,
        /// Latest allowed expiry (quote expiry plus allowed clock skew), unix seconds.
        not_after: u64,
    },
    /// No usable channel can carry the payment.
    #[error(
        "insufficient outbound capacity: {needed_msat} msat needed, {available_msat} msat available in one channel"
    )]
    InsufficientCapacity {
        /// Amount plus fee budget.
        needed_msat: u64,
        /// Largest amount one usable channel can send now.
        available_msat: u64,
    },
    /// There is no usable channel at all.
    #[error("no usable channel{}", peer.map(|p| format!(" with {p}")).unwrap_or_default())]
    NoChannel {
        /// The peer a channel was expected with, if any.
        peer: Option<PublicKey>,
    },
    /// The payment did not resolve within the caller's timeout; it may still complete.
    #[error("payment {payment_hash} did not resolve within {after:?} (it is still in flight)")]
    Timeout {
        /// Payment hash, hex.
        payment_hash: String,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// An operation on a channel or peer did not complete within its timeout.
    #[error("{what} did not complete within {after:?}")]
    OperationTimeout {
        /// The operation.
        what: &'static str,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The payment failed for good.
    #[error("payment {payment_hash} failed: {reason}")]
    PaymentFailed {
        /// Payment hash, hex.
        payment_hash: String,
        /// Reason given by the backend.
        reason: String,
    },
    /// The payment's HTLC sits on a channel that closed by force, and nothing will resolve it
    /// (devnet has no chain): it may or may not have reached the payee, and it is never sent
    /// again.
    #[error("payment {payment_hash} stranded: {reason}")]
    PaymentStranded {
        /// Payment hash, hex.
        payment_hash: String,
        /// Which channel closed, and why.
        reason: String,
    },
    /// The backend cannot be reached or is shutting down.
    #[error("payment backend unavailable: {reason}")]
    BackendUnavailable {
        /// Why.
        reason: String,
    },
    /// A caller-supplied argument is invalid.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The argument.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// The payment/invoice database failed.
    #[error("database error while {context}: {source}")]
    Storage {
        /// What was being done.
        context: &'static str,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// A file of the channel state could not be read or written.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Persisted channel state could not be decoded.
    #[error("corrupt persisted state in {what}: {reason}")]
    CorruptState {
        /// Which file or record.
        what: String,
        /// Why decoding failed.
        reason: String,
    },
    /// A network other than devnet needs a chain source that is not configured.
    #[error("network {network} needs a chain source, and none is configured (use devnet, or the lnd backend for real funds)")]
    ChainSourceRequired {
        /// The configured network.
        network: Network,
    },
    /// A devnet-only operation was attempted on another network.
    #[error("{what} is only allowed on devnet, not on {network}")]
    DevnetOnly {
        /// The refused operation.
        what: &'static str,
        /// The configured network.
        network: Network,
    },
    /// A peer sent something that requires dropping the connection.
    #[error("peer {peer} (session {session_id}) violated the protocol: {reason}; disconnect it")]
    PeerProtocol {
        /// The peer.
        peer: PublicKey,
        /// The connection session.
        session_id: u64,
        /// What was wrong.
        reason: String,
    },
    /// An operation needs a connected peer.
    #[error("peer {peer} is not connected")]
    PeerNotConnected {
        /// The peer.
        peer: PublicKey,
    },
    /// LDK refused an API call.
    #[error("lightning engine refused {op}: {reason}")]
    Ldk {
        /// The call.
        op: &'static str,
        /// LDK's reason.
        reason: String,
    },
    /// The payment backend's node refused a request or answered in an unexpected way.
    #[error("payment backend refused {op}: {reason}")]
    BackendRefused {
        /// The request.
        op: &'static str,
        /// The backend's reason.
        reason: String,
    },
    /// No channel has this id.
    #[error("no channel {channel_id}")]
    UnknownChannel {
        /// The channel id asked for, hex.
        channel_id: String,
    },
}

/// What the requester expects of a provider's invoice (LCP v0.2 section 3.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedInvoice {
    /// The quoted price; the invoice amount must equal it.
    pub amount_msat: u64,
    /// The provider's node id; the invoice payee must equal it.
    pub payee: PublicKey,
    /// The job's `terms_hash`; the invoice description hash must equal it.
    pub description_hash: [u8; 32],
    /// If set, the invoice must expire no later than this unix time
    /// (quote expiry plus the allowed clock skew).
    pub not_after_secs: Option<u64>,
}

/// Parameters of [`PaymentBackend::pay`].
#[derive(Clone, Debug)]
pub struct PayParams {
    /// Largest routing fee the payer accepts, in msat.
    pub max_fee_msat: u64,
    /// How long `pay` waits for the outcome before returning [`PaydError::Timeout`].
    pub timeout: Duration,
    /// If set, the invoice is checked against it with [`check_invoice`] before anything is paid.
    pub expected: Option<ExpectedInvoice>,
}

/// A parsed and signature-checked BOLT11 invoice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedInvoice {
    /// The invoice string as given.
    pub bolt11: String,
    /// Currency prefix (`bc`, `tb`, `bcrt`, `tbs`).
    pub currency: String,
    /// Payment hash.
    pub payment_hash: [u8; 32],
    /// Amount, if the invoice has one.
    pub amount_msat: Option<u64>,
    /// Payee node id (explicit or recovered from the signature).
    pub payee: PublicKey,
    /// Description hash, if the invoice commits to one.
    pub description_hash: Option<[u8; 32]>,
    /// Creation time, unix seconds.
    pub timestamp_secs: u64,
    /// Validity after `timestamp_secs`, seconds.
    pub expiry_secs: u64,
}

impl DecodedInvoice {
    /// The unix time at which the invoice expires.
    pub fn expires_at_secs(&self) -> u64 {
        self.timestamp_secs.saturating_add(self.expiry_secs)
    }
}

/// Parse a BOLT11 string and verify its signature.
pub fn decode_bolt11(bolt11: &str) -> Result<DecodedInvoice, PaydError> {
    let invoice =
        Bolt11Invoice::from_str(bolt11.trim()).map_err(|e| PaydError::InvalidInvoice { reason: e.to_string() })?;
    Ok(describe_invoice(&invoice, bolt11.trim()))
}

/// Describe an already parsed invoice.
pub(crate) fn describe_invoice(invoice: &Bolt11Invoice, bolt11: &str) -> DecodedInvoice {
    let description_hash = match invoice.description() {
        Bolt11InvoiceDescriptionRef::Hash(h) => Some(h.0.to_byte_array_compat()),
        Bolt11InvoiceDescriptionRef::Direct(_) => None,
    };
    DecodedInvoice {
        bolt11: bolt11.to_string(),
        currency: currency_prefix(invoice.currency()).to_string(),
        payment_hash: invoice.payment_hash().to_byte_array_compat(),
        amount_msat: invoice.amount_milli_satoshis(),
        payee: invoice.get_payee_pub_key(),
        description_hash,
        timestamp_secs: invoice.duration_since_epoch().as_secs(),
        expiry_secs: invoice.expiry_time().as_secs(),
    }
}

/// Byte access for the sha256 hash type of the bitcoin crate LDK re-exports.
trait ToBytes {
    fn to_byte_array_compat(&self) -> [u8; 32];
}

impl ToBytes for lightning::bitcoin::hashes::sha256::Hash {
    fn to_byte_array_compat(&self) -> [u8; 32] {
        use lightning::bitcoin::hashes::Hash;
        self.to_byte_array()
    }
}

/// The requester's checks before paying (LCP v0.2 section 3.3), as a pure function.
///
/// Checks, in this order: the invoice is for `network`'s currency; it has not expired at
/// `now_secs`; it has a non-zero amount; and, when `expected` is given, amount, payee and
/// description hash equal the expected ones and the invoice does not outlive
/// `expected.not_after_secs`.
pub fn check_invoice(
    invoice: &DecodedInvoice,
    expected: Option<&ExpectedInvoice>,
    network: Network,
    now_secs: u64,
) -> Result<(), PaydError> {
    check_before_pay(invoice, expected, network, false, now_secs)
}

/// What a backend's `pay` checks: [`check_invoice`], but expiry only for a payment not `recorded`
/// yet, so asking again for an invoice paid before it expired returns the recorded outcome (the
/// preimage), not "expired".
pub fn check_before_pay(
    invoice: &DecodedInvoice,
    expected: Option<&ExpectedInvoice>,
    network: Network,
    recorded: bool,
    now_secs: u64,
) -> Result<(), PaydError> {
    let want = currency_prefix(network.currency());
    if invoice.currency != want {
        return Err(PaydError::WrongNetwork { network, expected: want.to_string(), got: invoice.currency.clone() });
    }
    let expires_at = invoice.expires_at_secs();
    if !recorded && now_secs >= expires_at {
        return Err(PaydError::InvoiceExpired { expired_at: expires_at, now: now_secs });
    }
    let amount = match invoice.amount_msat {
        Some(a) if a > 0 => a,
        _ => return Err(PaydError::MissingAmount),
    };
    let Some(expected) = expected else {
        return Ok(());
    };
    if expected.amount_msat != amount {
        return Err(PaydError::WrongAmount { expected_msat: expected.amount_msat, got_msat: amount });
    }
    if expected.payee != invoice.payee {
        return Err(PaydError::WrongPayee { expected: expected.payee.to_string(), got: invoice.payee.to_string() });
    }
    match invoice.description_hash {
        None => return Err(PaydError::MissingDescriptionHash),
        Some(h) if h != expected.description_hash => {
            return Err(PaydError::WrongDescriptionHash {
                expected: hex::encode(expected.description_hash),
                got: hex::encode(h),
            })
        }
        Some(_) => {}
    }
    if let Some(not_after) = expected.not_after_secs {
        if expires_at > not_after {
            return Err(PaydError::InvoiceOutlivesQuote { invoice_expires_at: expires_at, not_after });
        }
    }
    Ok(())
}

/// A newly created invoice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedInvoice {
    /// The BOLT11 string, signed by the node key.
    pub bolt11: String,
    /// Its payment hash.
    pub payment_hash: [u8; 32],
    /// Its expiry time, unix seconds.
    pub expires_at_secs: u64,
}

/// State of an invoice we issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InvoiceStatus {
    /// Not paid yet, not expired.
    Open,
    /// Paid and claimed.
    Settled,
    /// Not paid before its expiry.
    Expired,
}

/// A record of an invoice we issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvoiceRecord {
    /// Payment hash.
    pub payment_hash: [u8; 32],
    /// The BOLT11 string.
    pub bolt11: String,
    /// Requested amount.
    pub amount_msat: u64,
    /// The description hash the invoice commits to.
    pub description_hash: [u8; 32],
    /// Creation time, unix seconds.
    pub created_at: u64,
    /// Expiry time, unix seconds.
    pub expires_at: u64,
    /// Current state.
    pub status: InvoiceStatus,
    /// Amount received, once settled.
    pub amount_received_msat: Option<u64>,
    /// Settlement time, unix seconds.
    pub settled_at: Option<u64>,
}

/// State of an outgoing payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PaymentStatus {
    /// Recorded and handed to the engine; outcome unknown.
    Pending,
    /// The payee released the preimage.
    Succeeded,
    /// Failed for good; nothing was paid.
    Failed,
    /// Ended without an outcome: its HTLC was in flight on a channel that closed by force, and
    /// without a chain (devnet) nothing will ever claim or time it out. Not "nothing paid": the
    /// payee may hold the HTLC. Never sent again; a real outcome reported later (LDK fails the
    /// HTLC back, or the payee's preimage arrives) still replaces it.
    Stranded,
}

/// A record of an outgoing payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentRecord {
    /// Payment hash.
    pub payment_hash: [u8; 32],
    /// The invoice paid.
    pub bolt11: String,
    /// Amount sent to the payee.
    pub amount_msat: u64,
    /// The payee.
    pub payee: PublicKey,
    /// Current state.
    pub status: PaymentStatus,
    /// The preimage, once succeeded.
    pub preimage: Option<[u8; 32]>,
    /// Routing fee paid, once succeeded.
    pub fee_msat: Option<u64>,
    /// Failure reason, once failed.
    pub failure: Option<String>,
    /// When the attempt was recorded, unix seconds.
    pub created_at: u64,
    /// Last state change, unix seconds.
    pub updated_at: u64,
}

impl PaymentRecord {
    /// A payment of `invoice` for `amount_msat`, recorded as pending at `now` before it is tried.
    pub fn pending(invoice: &DecodedInvoice, amount_msat: u64, now: u64) -> Self {
        PaymentRecord {
            payment_hash: invoice.payment_hash,
            bolt11: invoice.bolt11.clone(),
            amount_msat,
            payee: invoice.payee,
            status: PaymentStatus::Pending,
            preimage: None,
            fee_msat: None,
            failure: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// The result of a successful [`PaymentBackend::pay`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaidInvoice {
    /// Payment hash.
    pub payment_hash: [u8; 32],
    /// Preimage; `sha256(preimage) == payment_hash`.
    pub preimage: [u8; 32],
    /// Amount sent to the payee.
    pub amount_msat: u64,
    /// Routing fee paid.
    pub fee_msat: u64,
}

/// Totals over a backend's channels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelBalance {
    /// Channels, usable or not.
    pub channels: u32,
    /// Channels payments can use now.
    pub usable_channels: u32,
    /// Sum of what we can send, msat.
    pub outbound_msat: u64,
    /// Sum of what we can receive, msat.
    pub inbound_msat: u64,
}

/// Settlement and payment events a backend broadcasts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaydEvent {
    /// An invoice we issued was paid and claimed. Sent exactly once per invoice.
    InvoiceSettled {
        /// Payment hash.
        payment_hash: [u8; 32],
        /// Amount received.
        amount_msat: u64,
    },
    /// An outgoing payment succeeded.
    PaymentSucceeded {
        /// Payment hash.
        payment_hash: [u8; 32],
        /// The preimage.
        preimage: [u8; 32],
    },
    /// An outgoing payment failed for good.
    PaymentFailed {
        /// Payment hash.
        payment_hash: [u8; 32],
        /// Why.
        reason: String,
    },
    /// An outgoing payment was stranded on a force-closed channel ([`PaymentStatus::Stranded`]).
    PaymentStranded {
        /// Payment hash.
        payment_hash: [u8; 32],
        /// Why.
        reason: String,
    },
}

/// A payment backend: invoices, settlement, idempotent payments, records.
///
/// Contract every implementation keeps (checked by the conformance suite in
/// `crate::payd::conformance`):
/// - [`create_invoice`](Self::create_invoice) returns a BOLT11 invoice for exactly `amount_msat`
///   (must be > 0), whose description is the 32-byte `description_hash`, valid for `expiry_secs`
///   (must be > 0), signed by the node key: its payee is [`node_id`](Self::node_id). The invoice is
///   recorded before it is returned.
/// - Settlement is reported twice: as [`PaydEvent::InvoiceSettled`] on the stream returned by
///   [`subscribe`](Self::subscribe), exactly once per invoice (also across restarts), and by
///   [`lookup_invoice`](Self::lookup_invoice) returning [`InvoiceStatus::Settled`]. Subscribers that
///   lag may miss events; they must then re-check with `lookup_invoice`.
/// - [`pay`](Self::pay) first decodes the invoice and runs [`check_invoice`] (with
///   `params.expected`); on any failed check it returns the matching error and pays nothing.
///   It is idempotent per payment hash: the attempt is recorded before it is made, a second call for
///   the same hash returns the first outcome (success with the same preimage, or the same failure),
///   or waits for the attempt in flight; the invoice is never paid twice. Expiry is judged only for
///   a hash not recorded yet: asking again after the invoice expired still returns the first
///   outcome. On success it returns the
///   preimage, with `sha256(preimage) == payment_hash`. If the outcome is unknown after
///   `params.timeout`, it returns [`PaydError::Timeout`] and the payment stays pending.
/// - [`decode_invoice`](Self::decode_invoice) parses and verifies the signature; it does not judge
///   expiry or network.
/// - Methods never panic on bad input; they return a [`PaydError`] that names the problem.
pub trait PaymentBackend: Send + Sync {
    /// The node id that signs invoices (the node's Lightning identity).
    fn node_id(&self) -> PublicKey;

    /// The network the backend runs on.
    fn network(&self) -> Network;

    /// Create and record an invoice for `amount_msat` committing to `description_hash`.
    fn create_invoice(
        &self,
        amount_msat: u64,
        description_hash: [u8; 32],
        expiry_secs: u32,
    ) -> BoxFuture<'_, Result<CreatedInvoice, PaydError>>;

    /// Look up an invoice we issued.
    fn lookup_invoice(&self, payment_hash: [u8; 32]) -> BoxFuture<'_, Result<Option<InvoiceRecord>, PaydError>>;

    /// Subscribe to settlement and payment events.
    fn subscribe(&self) -> broadcast::Receiver<PaydEvent>;

    /// Pay a BOLT11 invoice, idempotently per payment hash (see the trait contract).
    fn pay(&self, bolt11: String, params: PayParams) -> BoxFuture<'_, Result<PaidInvoice, PaydError>>;

    /// Parse a BOLT11 invoice and verify its signature.
    fn decode_invoice(&self, bolt11: &str) -> Result<DecodedInvoice, PaydError> {
        decode_bolt11(bolt11)
    }

    /// Outgoing payments, oldest first.
    fn list_payments(&self) -> BoxFuture<'_, Result<Vec<PaymentRecord>, PaydError>>;

    /// One outgoing payment by payment hash, as recorded; `None` when no attempt was ever
    /// recorded for it (then nothing was paid). Never pays.
    fn lookup_payment(&self, payment_hash: [u8; 32]) -> BoxFuture<'_, Result<Option<PaymentRecord>, PaydError>>;

    /// Invoices we issued, oldest first.
    fn list_invoices(&self) -> BoxFuture<'_, Result<Vec<InvoiceRecord>, PaydError>>;

    /// Totals over our channels (what we can send and receive now).
    fn channel_balance(&self) -> BoxFuture<'_, Result<ChannelBalance, PaydError>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use lightning::bitcoin::hashes::{sha256, Hash};
    use lightning::bitcoin::secp256k1::{Secp256k1, SecretKey};
    use lightning_invoice::{InvoiceBuilder, PaymentSecret};

    const NOW: u64 = 1_800_000_000;

    fn key(b: u8) -> (SecretKey, PublicKey) {
        let sk = SecretKey::from_slice(&[b; 32]).expect("valid constant key");
        (sk, PublicKey::from_secret_key(&Secp256k1::new(), &sk))
    }

    fn build(currency: Currency, amount: Option<u64>, dh: Option<[u8; 32]>) -> String {
        let (sk, _) = key(7);
        let secp = Secp256k1::new();
        let b = InvoiceBuilder::new(currency);
        let b = match dh {
            Some(h) => b.description_hash(sha256::Hash::from_byte_array(h)),
            None => b.description("plain".into()),
        };
        let b = b
            .payment_hash(sha256::Hash::from_byte_array([1; 32]))
            .payment_secret(PaymentSecret([2; 32]))
            .duration_since_epoch(Duration::from_secs(NOW))
            .min_final_cltv_expiry_delta(18)
            .expiry_time(Duration::from_secs(300));
        let inv = match amount {
            Some(a) => b.amount_milli_satoshis(a).build_signed(|m| secp.sign_ecdsa_recoverable(m, &sk)),
            None => b.build_signed(|m| secp.sign_ecdsa_recoverable(m, &sk)),
        };
        inv.expect("test invoice builds").to_string()
    }

    fn expected() -> ExpectedInvoice {
        ExpectedInvoice {
            amount_msat: 5_000,
            payee: key(7).1,
            description_hash: [9; 32],
            not_after_secs: Some(NOW + 305),
        }
    }

    #[test]
    fn decode_reports_fields() {
        let s = build(Currency::Regtest, Some(5_000), Some([9; 32]));
        let d = decode_bolt11(&s).expect("decodes");
        assert!(s.starts_with("lnbcrt"));
        assert_eq!(d.currency, "bcrt");
        assert_eq!(d.amount_msat, Some(5_000));
        assert_eq!(d.payee, key(7).1);
        assert_eq!(d.description_hash, Some([9; 32]));
        assert_eq!(d.payment_hash, [1; 32]);
        assert_eq!(d.expires_at_secs(), NOW + 300);
        assert!(matches!(decode_bolt11("lnbcrt1xyz"), Err(PaydError::InvalidInvoice { .. })));
        // One flipped character breaks the checksum or the signature.
        let mut bad = s.clone().into_bytes();
        let i = bad.len() - 10;
        bad[i] = if bad[i] == b'q' { b'p' } else { b'q' };
        let bad = String::from_utf8(bad).expect("ascii");
        assert!(decode_bolt11(&bad).is_err());
    }

    #[test]
    fn check_accepts_matching_invoice() {
        let d = decode_bolt11(&build(Currency::Regtest, Some(5_000), Some([9; 32]))).expect("ok");
        check_invoice(&d, Some(&expected()), Network::Devnet, NOW + 10).expect("valid");
        check_invoice(&d, Some(&expected()), Network::Regtest, NOW + 10).expect("valid");
        check_invoice(&d, None, Network::Devnet, NOW).expect("valid without expectations");
    }

    #[test]
    fn check_refuses_each_mismatch() {
        let good = build(Currency::Regtest, Some(5_000), Some([9; 32]));
        let d = decode_bolt11(&good).expect("ok");
        let e = expected();
        let r = check_invoice(&d, Some(&e), Network::Mainnet, NOW);
        assert!(
            matches!(r, Err(PaydError::WrongNetwork { ref expected, ref got, .. }) if expected == "bc" && got == "bcrt")
        );
        let r = check_invoice(&d, Some(&e), Network::Devnet, NOW + 300);
        assert!(matches!(r, Err(PaydError::InvoiceExpired { expired_at, .. }) if expired_at == NOW + 300));
        let r = check_invoice(&d, Some(&ExpectedInvoice { amount_msat: 4_999, ..e.clone() }), Network::Devnet, NOW);
        assert!(matches!(r, Err(PaydError::WrongAmount { expected_msat: 4_999, got_msat: 5_000 })));
        let r = check_invoice(&d, Some(&ExpectedInvoice { payee: key(8).1, ..e.clone() }), Network::Devnet, NOW);
        assert!(matches!(r, Err(PaydError::WrongPayee { .. })));
        let r =
            check_invoice(&d, Some(&ExpectedInvoice { description_hash: [8; 32], ..e.clone() }), Network::Devnet, NOW);
        assert!(matches!(r, Err(PaydError::WrongDescriptionHash { .. })));
        let r = check_invoice(
            &d,
            Some(&ExpectedInvoice { not_after_secs: Some(NOW + 299), ..e.clone() }),
            Network::Devnet,
            NOW,
        );
        assert!(
            matches!(r, Err(PaydError::InvoiceOutlivesQuote { invoice_expires_at, not_after }) if invoice_expires_at == NOW + 300 && not_after == NOW + 299)
        );
        let plain = decode_bolt11(&build(Currency::Regtest, Some(5_000), None)).expect("ok");
        let r = check_invoice(&plain, Some(&e), Network::Devnet, NOW);
        assert!(matches!(r, Err(PaydError::MissingDescriptionHash)));
        let no_amount = decode_bolt11(&build(Currency::Regtest, None, Some([9; 32]))).expect("ok");
        let r = check_invoice(&no_amount, None, Network::Devnet, NOW);
        assert!(matches!(r, Err(PaydError::MissingAmount)));
        let mainnet = decode_bolt11(&build(Currency::Bitcoin, Some(5_000), Some([9; 32]))).expect("ok");
        check_invoice(&mainnet, Some(&e), Network::Mainnet, NOW).expect("mainnet invoice on mainnet");
        assert!(check_invoice(&mainnet, Some(&e), Network::Devnet, NOW).is_err());
    }

    #[test]
    fn network_names_round_trip() {
        for n in [Network::Devnet, Network::Regtest, Network::Signet, Network::Testnet, Network::Mainnet] {
            assert_eq!(n.as_str().parse::<Network>().expect("parses"), n);
        }
        assert!(matches!(
            "regnet".parse::<Network>(),
            Err(crate::config::ConfigError::Invalid { what: "network", .. })
        ));
        assert_eq!(Network::Devnet.currency(), Currency::Regtest);
        assert_eq!(Network::Devnet.bitcoin_network(), lightning::bitcoin::Network::Regtest);
    }

    #[test]
    fn errors_name_the_problem() {
        let e = PaydError::WrongAmount { expected_msat: 1, got_msat: 2 };
        assert_eq!(e.to_string(), "invoice amount is 2 msat but 1 msat was expected");
        let e = PaydError::InsufficientCapacity { needed_msat: 10, available_msat: 3 };
        assert!(e.to_string().contains("10 msat needed"));
        let e = PaydError::NoChannel { peer: None };
        assert_eq!(e.to_string(), "no usable channel");
        let e = PaydError::ChainSourceRequired { network: Network::Mainnet };
        assert!(e.to_string().contains("mainnet"));
    }
}
