//! Conformance suite for [`PaymentBackend`] implementations.
//!
//! Each function checks one part of the trait contract against live backends and returns a
//! description of the first violation. A test harness sets the backends up (for example two
//! engines joined by a channel) and runs the functions. Preconditions are stated per function.

use std::time::Duration;

use lightning::bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

use crate::clock::now_secs;
use crate::payd::backend::{
    ExpectedInvoice, InvoiceStatus, PayParams, PaydError, PaydEvent, PaymentBackend, PaymentStatus,
};

/// Outcome of a conformance check: `Err` names the violated rule.
pub type Conformance = Result<(), String>;

/// How long a check waits for an asynchronous outcome.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

fn params(expected: Option<ExpectedInvoice>) -> PayParams {
    PayParams { max_fee_msat: 10_000, timeout: CHECK_TIMEOUT, expected }
}

fn terms(tag: &str) -> [u8; 32] {
    Sha256::digest(tag.as_bytes()).into()
}

/// Waits up to [`CHECK_TIMEOUT`] for the `InvoiceSettled` event of `hash`; returns the amount received.
pub async fn wait_settled(rx: &mut broadcast::Receiver<PaydEvent>, hash: [u8; 32]) -> Result<u64, String> {
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(PaydEvent::InvoiceSettled { payment_hash, amount_msat }) if payment_hash == hash => {
                    return Ok(amount_msat)
                }
                Ok(_) => {}
                Err(e) => return Err(format!("event stream failed: {e}")),
            }
        }
    };
    tokio::time::timeout(CHECK_TIMEOUT, wait)
        .await
        .map_err(|_| format!("no InvoiceSettled for {} within {CHECK_TIMEOUT:?}", hex::encode(hash)))?
}

/// How many `InvoiceSettled` events for `hash` are queued now.
pub fn count_settled(rx: &mut broadcast::Receiver<PaydEvent>, hash: [u8; 32]) -> usize {
    let mut n = 0;
    while let Ok(ev) = rx.try_recv() {
        if matches!(ev, PaydEvent::InvoiceSettled { payment_hash, .. } if payment_hash == hash) {
            n += 1;
        }
    }
    n
}

/// Invoices: amount, description hash, payee == node id, network currency, records, and refusal of
/// zero amount or zero expiry. Precondition: none.
pub async fn invoice_contract(payee: &dyn PaymentBackend) -> Conformance {
    let dh = terms("invoice_contract");
    let inv = payee.create_invoice(21_000, dh, 600).await.map_err(|e| format!("create_invoice failed: {e}"))?;
    let d = payee.decode_invoice(&inv.bolt11).map_err(|e| format!("own invoice does not decode: {e}"))?;
    ensure!(d.payee == payee.node_id(), "invoice payee {} is not the node id {}", d.payee, payee.node_id());
    ensure!(d.amount_msat == Some(21_000), "invoice amount {:?} != 21000", d.amount_msat);
    ensure!(d.description_hash == Some(dh), "invoice description_hash differs");
    ensure!(d.payment_hash == inv.payment_hash, "payment hash differs from the decoded one");
    ensure!(
        d.currency == crate::payd::backend::currency_prefix(payee.network().currency()),
        "invoice currency {} does not match network {}",
        d.currency,
        payee.network()
    );
    ensure!(
        d.expires_at_secs() == inv.expires_at_secs,
        "expiry {} != reported {}",
        d.expires_at_secs(),
        inv.expires_at_secs
    );
    let rec = payee
        .lookup_invoice(inv.payment_hash)
        .await
        .map_err(|e| format!("lookup_invoice failed: {e}"))?
        .ok_or("created invoice is not recorded")?;
    ensure!(rec.status == InvoiceStatus::Open, "new invoice status {:?}", rec.status);
    ensure!(rec.description_hash == dh && rec.amount_msat == 21_000, "record fields differ");
    let all = payee.list_invoices().await.map_err(|e| e.to_string())?;
    ensure!(all.iter().any(|r| r.payment_hash == inv.payment_hash), "list_invoices misses the invoice");
    ensure!(payee.lookup_invoice([0xee; 32]).await.map_err(|e| e.to_string())?.is_none(), "unknown hash found");
    ensure!(
        matches!(payee.create_invoice(0, dh, 600).await, Err(PaydError::InvalidArgument { field: "amount_msat", .. })),
        "zero amount accepted"
    );
    ensure!(
        matches!(payee.create_invoice(1000, dh, 0).await, Err(PaydError::InvalidArgument { field: "expiry_secs", .. })),
        "zero expiry accepted"
    );
    ensure!(
        matches!(payee.decode_invoice("lnbcrt1garbage"), Err(PaydError::InvalidInvoice { .. })),
        "garbage invoice decoded"
    );
    Ok(())
}

/// A checked payment succeeds with a preimage hashing to the payment hash, and the payee reports
/// settlement exactly once. Precondition: `payer` can pay `payee` 50,000 msat.
pub async fn pay_contract(payer: &dyn PaymentBackend, payee: &dyn PaymentBackend) -> Conformance {
    let mut events = payee.subscribe();
    let dh = terms("pay_contract");
    let inv = payee.create_invoice(50_000, dh, 600).await.map_err(|e| format!("create_invoice failed: {e}"))?;
    let expected = ExpectedInvoice {
        amount_msat: 50_000,
        payee: payee.node_id(),
        description_hash: dh,
        not_after_secs: Some(inv.expires_at_secs),
    };
    let paid = payer.pay(inv.bolt11.clone(), params(Some(expected))).await.map_err(|e| format!("pay failed: {e}"))?;
    let h: [u8; 32] = Sha256::digest(paid.preimage).into();
    ensure!(h == inv.payment_hash, "sha256(preimage) != payment_hash");
    ensure!(paid.amount_msat == 50_000, "paid amount {}", paid.amount_msat);
    let got = wait_settled(&mut events, inv.payment_hash).await?;
    ensure!(got >= 50_000, "settled amount {got} below the invoice amount");
    let rec =
        payee.lookup_invoice(inv.payment_hash).await.map_err(|e| e.to_string())?.ok_or("paid invoice not recorded")?;
    ensure!(rec.status == InvoiceStatus::Settled, "paid invoice status {:?}", rec.status);
    let payments = payer.list_payments().await.map_err(|e| e.to_string())?;
    let mine: Vec<_> = payments.iter().filter(|p| p.payment_hash == inv.payment_hash).collect();
    ensure!(mine.len() == 1, "{} payment records for one hash", mine.len());
    ensure!(mine[0].status == PaymentStatus::Succeeded, "record status {:?}", mine[0].status);
    ensure!(mine[0].preimage == Some(paid.preimage), "recorded preimage differs");
    let one = payer.lookup_payment(inv.payment_hash).await.map_err(|e| e.to_string())?;
    ensure!(one.as_ref() == Some(mine[0]), "lookup_payment gave {one:?}, not the listed record");
    // Paying again returns the first outcome and settles nothing new.
    let again = payer.pay(inv.bolt11.clone(), params(None)).await.map_err(|e| format!("second pay failed: {e}"))?;
    ensure!(again.preimage == paid.preimage, "second pay returned another preimage");
    ensure!(count_settled(&mut events, inv.payment_hash) == 0, "settlement reported twice");
    Ok(())
}

/// An invoice paid before it expired is answered from the record after it expired: the same
/// preimage, nothing paid again. An expired invoice never paid is refused. Precondition: `payer`
/// can pay `payee` 20,000 msat.
pub async fn paid_then_expired_contract(payer: &dyn PaymentBackend, payee: &dyn PaymentBackend) -> Conformance {
    let inv = payee
        .create_invoice(20_000, terms("paid_then_expired_contract"), 2)
        .await
        .map_err(|e| format!("create_invoice failed: {e}"))?;
    let unpaid = payee
        .create_invoice(20_000, terms("paid_then_expired_contract/unpaid"), 2)
        .await
        .map_err(|e| format!("create_invoice failed: {e}"))?;
    let paid = payer.pay(inv.bolt11.clone(), params(None)).await.map_err(|e| format!("pay failed: {e}"))?;
    // Wait, bounded, until the wall clock is past both expiries.
    let past = inv.expires_at_secs.max(unpaid.expires_at_secs);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while now_secs() < past {
        ensure!(tokio::time::Instant::now() < deadline, "the clock did not pass the invoice expiry");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again =
        payer.pay(inv.bolt11.clone(), params(None)).await.map_err(|e| format!("asking again after expiry: {e}"))?;
    ensure!(again.preimage == paid.preimage, "asking again after expiry returned another preimage");
    let r = payer.pay(unpaid.bolt11.clone(), params(None)).await;
    ensure!(matches!(r, Err(PaydError::InvoiceExpired { .. })), "an expired unpaid invoice gave {r:?}");
    let n = records_for(payer, &[inv.payment_hash, unpaid.payment_hash]).await?;
    ensure!(n == 1, "{n} payment records, expected only the paid one");
    Ok(())
}

/// Concurrent calls for one invoice pay it once. Precondition: `payer` can pay `payee`
/// 30,000 msat.
pub async fn idempotency_contract(payer: &dyn PaymentBackend, payee: &dyn PaymentBackend) -> Conformance {
    let mut events = payee.subscribe();
    let inv = payee
        .create_invoice(30_000, terms("idempotency_contract"), 600)
        .await
        .map_err(|e| format!("create_invoice failed: {e}"))?;
    let (a, b, c) = tokio::join!(
        payer.pay(inv.bolt11.clone(), params(None)),
        payer.pay(inv.bolt11.clone(), params(None)),
        payer.pay(inv.bolt11.clone(), params(None)),
    );
    let a = a.map_err(|e| format!("first concurrent pay failed: {e}"))?;
    let b = b.map_err(|e| format!("second concurrent pay failed: {e}"))?;
    let c = c.map_err(|e| format!("third concurrent pay failed: {e}"))?;
    ensure!(a == b && b == c, "concurrent pays returned different outcomes");
    let got = wait_settled(&mut events, inv.payment_hash).await?;
    ensure!(got == 30_000, "payee received {got} msat, not 30000 once");
    ensure!(count_settled(&mut events, inv.payment_hash) == 0, "settlement reported twice");
    let n = records_for(payer, &[inv.payment_hash]).await?;
    ensure!(n == 1, "{n} payment records for one hash");
    Ok(())
}

/// How many payment records `payer` holds for these hashes.
async fn records_for(payer: &dyn PaymentBackend, hashes: &[[u8; 32]]) -> Result<usize, String> {
    let payments = payer.list_payments().await.map_err(|e| e.to_string())?;
    Ok(payments.iter().filter(|p| hashes.contains(&p.payment_hash)).count())
}

fn foreign_invoice(currency: Currency, timestamp_secs: u64, expiry_secs: u64) -> Result<String, String> {
    let secp = Secp256k1::new();
    let sk = SecretKey::from_slice(&[0x42; 32]).map_err(|e| e.to_string())?;
    let hash = lightning::bitcoin::hashes::sha256::Hash::from_slice_compat(&[0x11; 32]);
    let inv = InvoiceBuilder::new(currency)
        .description_hash(hash)
        .payment_hash(hash)
        .payment_secret(PaymentSecret([0x22; 32]))
        .duration_since_epoch(Duration::from_secs(timestamp_secs))
        .min_final_cltv_expiry_delta(18)
        .amount_milli_satoshis(10_000)
        .expiry_time(Duration::from_secs(expiry_secs))
        .build_signed(|m| secp.sign_ecdsa_recoverable(m, &sk))
        .map_err(|e| format!("cannot build test invoice: {e:?}"))?;
    Ok(inv.to_string())
}

trait FromSliceCompat {
    fn from_slice_compat(b: &[u8; 32]) -> Self;
}

impl FromSliceCompat for lightning::bitcoin::hashes::sha256::Hash {
    fn from_slice_compat(b: &[u8; 32]) -> Self {
        use lightning::bitcoin::hashes::Hash;
        Self::from_byte_array(*b)
    }
}

/// Bad input is refused with the matching error and nothing is paid: wrong amount, payee,
/// description hash; expired invoice; wrong network; capacity exceeded. Precondition: `payer` has
/// a usable channel to `payee` with less than 10 BTC of outbound capacity.
pub async fn bad_input_contract(payer: &dyn PaymentBackend, payee: &dyn PaymentBackend) -> Conformance {
    let before = payer.list_payments().await.map_err(|e| e.to_string())?.len();
    let mut events = payee.subscribe();
    let dh = terms("bad_input_contract");
    let inv = payee.create_invoice(40_000, dh, 600).await.map_err(|e| format!("create_invoice failed: {e}"))?;
    let good =
        ExpectedInvoice { amount_msat: 40_000, payee: payee.node_id(), description_hash: dh, not_after_secs: None };
    let r = payer.pay(inv.bolt11.clone(), params(Some(ExpectedInvoice { amount_msat: 39_999, ..good.clone() }))).await;
    ensure!(
        matches!(r, Err(PaydError::WrongAmount { expected_msat: 39_999, got_msat: 40_000 })),
        "wrong amount gave {r:?}"
    );
    let other =
        PublicKey::from_secret_key(&Secp256k1::new(), &SecretKey::from_slice(&[0x33; 32]).map_err(|e| e.to_string())?);
    let r = payer.pay(inv.bolt11.clone(), params(Some(ExpectedInvoice { payee: other, ..good.clone() }))).await;
    ensure!(matches!(r, Err(PaydError::WrongPayee { .. })), "wrong payee gave {r:?}");
    let r = payer
        .pay(inv.bolt11.clone(), params(Some(ExpectedInvoice { description_hash: terms("other"), ..good.clone() })))
        .await;
    ensure!(matches!(r, Err(PaydError::WrongDescriptionHash { .. })), "wrong hash gave {r:?}");
    let r = payer
        .pay(
            inv.bolt11.clone(),
            params(Some(ExpectedInvoice { not_after_secs: Some(inv.expires_at_secs - 1), ..good.clone() })),
        )
        .await;
    ensure!(matches!(r, Err(PaydError::InvoiceOutlivesQuote { .. })), "long-lived invoice gave {r:?}");

    let currency = payer.network().currency();
    let expired = foreign_invoice(currency.clone(), 1_000_000, 60)?;
    let r = payer.pay(expired, params(None)).await;
    ensure!(matches!(r, Err(PaydError::InvoiceExpired { .. })), "expired invoice gave {r:?}");
    let wrong_currency = if currency == Currency::Bitcoin { Currency::Regtest } else { Currency::Bitcoin };
    let foreign = foreign_invoice(wrong_currency, now_secs(), 600)?;
    let r = payer.pay(foreign, params(None)).await;
    ensure!(matches!(r, Err(PaydError::WrongNetwork { .. })), "wrong network gave {r:?}");
    let r = payer.pay("lnbcrt1notaninvoice".into(), params(None)).await;
    ensure!(matches!(r, Err(PaydError::InvalidInvoice { .. })), "garbage gave {r:?}");

    let huge = payee
        .create_invoice(1_000_000_000_000, terms("huge"), 600)
        .await
        .map_err(|e| format!("create_invoice failed: {e}"))?;
    let r = payer.pay(huge.bolt11.clone(), params(None)).await;
    ensure!(matches!(r, Err(PaydError::InsufficientCapacity { .. })), "over-capacity gave {r:?}");

    let after = payer.list_payments().await.map_err(|e| e.to_string())?.len();
    ensure!(after == before, "refused payments left {} records", after - before);
    let none = payer.lookup_payment(inv.payment_hash).await.map_err(|e| e.to_string())?;
    ensure!(none.is_none(), "a refused payment can be looked up: {none:?}");
    ensure!(count_settled(&mut events, inv.payment_hash) == 0, "a refused invoice settled");
    let rec = payee.lookup_invoice(inv.payment_hash).await.map_err(|e| e.to_string())?.ok_or("invoice not recorded")?;
    ensure!(rec.status == InvoiceStatus::Open, "refused invoice has status {:?}", rec.status);
    Ok(())
}

/// A backend without channels refuses to pay with [`PaydError::NoChannel`] and records nothing.
/// Precondition: `payer` has no channel at all.
pub async fn no_channel_contract(payer: &dyn PaymentBackend, payee: &dyn PaymentBackend) -> Conformance {
    let inv = payee
        .create_invoice(5_000, terms("no_channel_contract"), 600)
        .await
        .map_err(|e| format!("create_invoice failed: {e}"))?;
    let r = payer.pay(inv.bolt11, params(None)).await;
    ensure!(matches!(r, Err(PaydError::NoChannel { .. })), "no channel gave {r:?}");
    let n = records_for(payer, &[inv.payment_hash]).await?;
    ensure!(n == 0, "a refused payment was recorded");
    Ok(())
}
