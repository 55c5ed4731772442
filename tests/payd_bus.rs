//! payd over the bus: two whole nodes, their peerds connected over BOLT #8, open a devnet channel
//! and pay an invoice with a description hash. Channel messages travel peerd -> bus -> payd and
//! back, with per-session sequence numbers.

use lcp::bus::api::payd::{BalanceRow, InvoiceState, PaydApi, PaymentState};
use lcp::bus::api::Body;
use lcp::bus::{Bus, ServiceId};
use lcp::testkit::{poll_until, InProcessNode, NodePair, PATIENCE};
use sha2::{Digest, Sha256};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

async fn payd(c: &Bus, req: PaydApi) -> Result<PaydApi, lcp::bus::BusError> {
    match c.request(&ServiceId::Payd, Body::Payd(req), T).await? {
        Body::Payd(p) => Ok(p),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_open_a_devnet_channel_and_pay_over_peerd_and_the_bus() {
    // payd learns of the peer through peerd's event; opening waits until then.
    let p = Pair::start(100_000).await;
    let ch = &p.channel;
    assert_eq!(ch.counterparty, p.provider_id);
    assert!(ch.is_outbound && ch.capacity_sat == 100_000);
    // lcp-cli shows the channel on both sides.
    for (node, outbound) in [(&p.requester, true), (&p.provider, false)] {
        let (ok, out, err) = cli(node.dir.path(), &["channel", "list", "--json"]).await;
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v[0]["channel_id"], ch.channel_id);
        assert_eq!(v[0]["is_outbound"], outbound);
    }
    // The provider invoices with a description hash; the requester pays it.
    let terms_hash = [0x3d; 32];
    let (bolt11, payment_hash) = p.invoice(21_000, terms_hash).await;
    assert!(bolt11.starts_with("lnbcrt"), "{bolt11}");
    let decoded = lcp::payd::backend::decode_bolt11(&bolt11).unwrap();
    assert_eq!(decoded.description_hash, Some(terms_hash));
    let paid = poll_until(PATIENCE, "payment", || async {
        payd(&p.rc, PaydApi::Pay { bolt11: bolt11.clone(), max_fee_msat: 1000, timeout_secs: 20 }).await.ok()
    })
    .await
    .unwrap();
    match paid {
        PaydApi::Paid { payment_hash: h, preimage, amount_msat, .. } => {
            assert_eq!(h, payment_hash);
            assert_eq!(<[u8; 32]>::from(Sha256::digest(preimage)), payment_hash);
            assert_eq!(amount_msat, 21_000);
        }
        other => panic!("{other:?}"),
    }
    p.close();
}

/// Runs `lcp-cli --datadir DIR ARGS...`; returns (success, stdout, stderr).
async fn cli(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(lcp::testkit::bin_path("lcp-cli")).arg("--datadir").arg(&dir).args(&args).output()
    })
    .await
    .unwrap()
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Two nodes whose peerds are connected, with a devnet channel from requester to provider that is
/// usable on the provider's side too.
struct Pair(NodePair);

impl std::ops::Deref for Pair {
    type Target = NodePair;
    fn deref(&self) -> &NodePair {
        &self.0
    }
}

impl Pair {
    async fn start(sats: u64) -> Pair {
        let p = NodePair::start(InProcessNode::start().unwrap(), sats).await.unwrap();
        poll_until(PATIENCE, "provider's channel usable", || async {
            match payd(&p.pc, PaydApi::ListChannels).await.ok()? {
                PaydApi::Channels(c) if c.iter().any(|c| c.is_usable) => Some(()),
                _ => None,
            }
        })
        .await
        .unwrap();
        Pair(p)
    }

    async fn invoice(&self, amount_msat: u64, description_hash: [u8; 32]) -> (String, [u8; 32]) {
        match payd(&self.pc, PaydApi::CreateInvoice { amount_msat, description_hash, expiry_secs: 300 }).await.unwrap()
        {
            PaydApi::Invoice { bolt11, payment_hash } => (bolt11, payment_hash),
            other => panic!("{other:?}"),
        }
    }

    fn close(self) {
        self.rc.close();
        self.pc.close();
    }
}

async fn balance(c: &Bus) -> BalanceRow {
    match payd(c, PaydApi::Balance).await.unwrap() {
        PaydApi::BalanceInfo(b) => b,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoice_payment_and_balance_listings_over_the_bus_and_the_cli() {
    let p = Pair::start(100_000).await;
    let (rdir, pdir) = (p.requester.dir.path().to_path_buf(), p.provider.dir.path().to_path_buf());
    // Nothing yet: empty lists, the channel's full capacity (less the reserve) on our side.
    assert_eq!(payd(&p.rc, PaydApi::ListPayments).await.unwrap(), PaydApi::Payments(vec![]));
    assert_eq!(payd(&p.pc, PaydApi::ListInvoices).await.unwrap(), PaydApi::Invoices(vec![]));
    let (r0, p0) = (balance(&p.rc).await, balance(&p.pc).await);
    assert_eq!((r0.channels, r0.usable_channels), (1, 1));
    assert_eq!(r0.outbound_msat, p.channel.outbound_capacity_msat);
    assert!(r0.outbound_msat > 90_000_000 && r0.inbound_msat == 0, "{r0:?}");
    assert_eq!((p0.channels, p0.outbound_msat), (1, 0));
    assert_eq!((r0.payments_succeeded, p0.invoices_open, p0.invoices_settled), (0, 0, 0));

    let (paid_bolt11, paid_hash) = p.invoice(21_000, [0x3d; 32]).await;
    let (open_bolt11, open_hash) = p.invoice(5_000, [0x4e; 32]).await;
    assert!(matches!(
        payd(&p.rc, PaydApi::Pay { bolt11: paid_bolt11.clone(), max_fee_msat: 1000, timeout_secs: 20 }).await.unwrap(),
        PaydApi::Paid { amount_msat: 21_000, .. }
    ));
    // The provider lists both invoices, oldest first: one settled, one open.
    let invoices = poll_until(PATIENCE, "invoice settled in the list", || async {
        match payd(&p.pc, PaydApi::ListInvoices).await.ok()? {
            PaydApi::Invoices(v) if v.first().map(|i| i.state) == Some(InvoiceState::Settled) => Some(v),
            _ => None,
        }
    })
    .await
    .unwrap();
    assert_eq!(invoices.len(), 2);
    assert_eq!((invoices[0].payment_hash, invoices[0].amount_received_msat), (paid_hash, Some(21_000)));
    assert_eq!((invoices[1].payment_hash, invoices[1].state), (open_hash, InvoiceState::Open));
    assert_eq!(invoices[1].bolt11, open_bolt11);
    // The requester lists its one payment with the preimage.
    let payments = match payd(&p.rc, PaydApi::ListPayments).await.unwrap() {
        PaydApi::Payments(v) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(payments.len(), 1);
    assert_eq!((payments[0].payment_hash, payments[0].state), (paid_hash, PaymentState::Succeeded));
    assert_eq!(payments[0].payee, p.provider_id);
    let preimage = payments[0].preimage.expect("preimage recorded");
    assert_eq!(<[u8; 32]>::from(Sha256::digest(preimage)), paid_hash);
    // A lookup by hash gives the same record; a hash never paid gives none (and pays nothing).
    assert_eq!(
        payd(&p.rc, PaydApi::LookupPayment { payment_hash: paid_hash }).await.unwrap(),
        PaydApi::PaymentInfo(Some(payments[0].clone()))
    );
    assert_eq!(
        payd(&p.rc, PaydApi::LookupPayment { payment_hash: open_hash }).await.unwrap(),
        PaydApi::PaymentInfo(None)
    );
    // Balances moved by exactly the amount paid (the provider's 21 sat stay below its channel
    // reserve, so what it can send is still 0; what it can receive shrank).
    let r1 = poll_until(PATIENCE, "requester balance", || async {
        let b = balance(&p.rc).await;
        (b.outbound_msat == r0.outbound_msat - 21_000).then_some(b)
    })
    .await
    .unwrap();
    let p1 = poll_until(PATIENCE, "provider balance", || async {
        let b = balance(&p.pc).await;
        (b.inbound_msat == p0.inbound_msat - 21_000).then_some(b)
    })
    .await
    .unwrap();
    assert_eq!(p1.outbound_msat, 0);
    assert_eq!((r1.payments_succeeded, r1.payments_pending, r1.payments_failed, r1.sent_msat), (1, 0, 0, 21_000));
    assert_eq!((p1.invoices_open, p1.invoices_settled, p1.received_msat), (1, 1, 21_000));

    // lcp-cli: JSON with hex fields, and the human form.
    let (ok, out, err) = cli(&pdir, &["invoice", "list", "--json"]).await;
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["payment_hash"], hex::encode(paid_hash));
    assert_eq!(v[0]["state"], "settled");
    assert_eq!(v[0]["description_hash"], hex::encode([0x3d; 32]));
    assert_eq!(v[1]["state"], "open");
    let (ok, out, _) = cli(&pdir, &["invoice", "list"]).await;
    assert!(ok && out.contains(&hex::encode(paid_hash)) && out.contains("settled (21000 msat"), "{out}");
    let (ok, out, err) = cli(&rdir, &["payment", "list", "--json"]).await;
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["state"], "succeeded");
    assert_eq!(v[0]["preimage"], hex::encode(preimage));
    assert_eq!(v[0]["payee"], p.provider_id);
    let (ok, out, _) = cli(&rdir, &["payment", "list"]).await;
    assert!(ok && out.contains("21000 msat to") && out.contains("succeeded"), "{out}");
    let (ok, out, err) = cli(&rdir, &["payment", "show", &hex::encode(paid_hash), "--json"]).await;
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["state"].as_str(), v["preimage"].as_str()),
        (Some("succeeded"), Some(hex::encode(preimage).as_str()))
    );
    let (ok, _, err) = cli(&rdir, &["payment", "show", &hex::encode(open_hash)]).await;
    assert!(!ok && err.contains("no payment with hash") && err.lines().count() == 1, "{err}");
    let (ok, _, err) = cli(&rdir, &["payment", "show", "xyz"]).await;
    assert!(!ok && err.contains("not hex"), "{err}");
    let (ok, out, err) = cli(&rdir, &["balance", "--json"]).await;
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["outbound_msat"], r1.outbound_msat);
    assert_eq!(v["payments_succeeded"], 1);
    let (ok, out, _) = cli(&pdir, &["balance"]).await;
    assert!(ok && out.contains("1 open, 1 settled; received 21000 msat"), "{out}");
    let (ok, out, _) = cli(&pdir, &["payment", "list"]).await;
    assert!(ok && out.trim() == "(no payments)", "{out}");
    p.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_close_over_the_bus_and_the_cli() {
    let p = Pair::start(100_000).await;
    let rdir = p.requester.dir.path().to_path_buf();
    let (bolt11, _) = p.invoice(7_000, [0x11; 32]).await;
    assert!(matches!(
        payd(&p.rc, PaydApi::Pay { bolt11, max_fee_msat: 0, timeout_secs: 20 }).await.unwrap(),
        PaydApi::Paid { .. }
    ));
    // Bad ids are refused with the right code.
    let e = payd(&p.rc, PaydApi::CloseChannel { channel_id: "xyz".into() }).await.unwrap_err().to_string();
    assert!(e.starts_with("invalid_argument:"), "{e}");
    let e = payd(&p.rc, PaydApi::CloseChannel { channel_id: "ab".repeat(32) }).await.unwrap_err().to_string();
    assert!(e.starts_with("not_found:") && e.contains(&"ab".repeat(32)), "{e}");
    let (ok, _, err) = cli(&rdir, &["channel", "close", &"cd".repeat(32)]).await;
    assert!(!ok && err.contains("not_found"), "{err}");
    // A second channel, closed by lcp-cli; the first, closed over the bus.
    let second = poll_until(PATIENCE, "second channel", || async {
        match payd(&p.rc, PaydApi::OpenChannel { node_id: p.provider_id.clone(), sats: 50_000 }).await {
            Ok(PaydApi::Channel(c)) => Some(c),
            _ => None,
        }
    })
    .await
    .unwrap();
    assert_eq!(balance(&p.rc).await.channels, 2);
    let (ok, out, err) = cli(&rdir, &["channel", "close", &second.channel_id, "--json"]).await;
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["channel_id"], second.channel_id);
    match payd(&p.rc, PaydApi::CloseChannel { channel_id: p.channel.channel_id.clone() }).await.unwrap() {
        PaydApi::ChannelClosed { channel_id, reason } => {
            assert_eq!(channel_id, p.channel.channel_id);
            assert!(reason.to_lowercase().contains("cooperative"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Both sides forget the channels; nothing can be paid any more.
    assert_eq!(payd(&p.rc, PaydApi::ListChannels).await.unwrap(), PaydApi::Channels(vec![]));
    poll_until(PATIENCE, "provider forgets the channels", || async {
        (payd(&p.pc, PaydApi::ListChannels).await.ok()? == PaydApi::Channels(vec![])).then_some(())
    })
    .await
    .unwrap();
    let b = balance(&p.rc).await;
    assert_eq!((b.channels, b.usable_channels, b.outbound_msat), (0, 0, 0));
    let (bolt11, _) = p.invoice(1_000, [0x12; 32]).await;
    let e = payd(&p.rc, PaydApi::Pay { bolt11, max_fee_msat: 0, timeout_secs: 5 }).await.unwrap_err().to_string();
    assert!(e.starts_with("unavailable: no usable channel"), "{e}");
    // Closing it again: it is gone.
    let e =
        payd(&p.rc, PaydApi::CloseChannel { channel_id: p.channel.channel_id.clone() }).await.unwrap_err().to_string();
    assert!(e.starts_with("not_found:"), "{e}");
    p.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payd_requests_get_clear_errors() {
    let n = InProcessNode::start().unwrap();
    let c = n.client().await.unwrap();
    lcp::testkit::wait_services(&c, &[ServiceId::Payd]).await.unwrap();
    let e = payd(&c, PaydApi::OpenChannel { node_id: "zz".into(), sats: 1 }).await.unwrap_err().to_string();
    assert!(e.starts_with("invalid_argument:"), "{e}");
    let stranger = format!("02{}", "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798");
    let e = payd(&c, PaydApi::OpenChannel { node_id: stranger, sats: 100_000 }).await.unwrap_err().to_string();
    assert!(e.starts_with("failed_precondition:"), "{e}");
    let e = payd(&c, PaydApi::Pay { bolt11: "lnbc1garbage".into(), max_fee_msat: 0, timeout_secs: 1 })
        .await
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("invalid_argument: invalid invoice"), "{e}");
    // No channels: closing one is not found; lists are empty.
    let e = payd(&c, PaydApi::CloseChannel { channel_id: "00".repeat(32) }).await.unwrap_err().to_string();
    assert!(e.starts_with("not_found:"), "{e}");
    let b = balance(&c).await;
    assert_eq!(b, BalanceRow::default());
    c.close();
}

/// Pay requests one right after another, each sent as soon as the previous answer arrives: dust
/// payments (a few hundred sat, where LDK finds no route while the previous HTLC is still being
/// removed) and small ones all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_payments_over_the_bus_without_pauses() {
    let p = Pair::start(100_000).await;
    let n = 24u64;
    let mut invoices = Vec::new();
    for k in 0..n {
        let amount = if k % 2 == 0 { 300_000 + k } else { 1_000 + k };
        invoices.push(p.invoice(amount, [k as u8; 32]).await);
    }
    for (k, (bolt11, hash)) in invoices.iter().enumerate() {
        match payd(&p.rc, PaydApi::Pay { bolt11: bolt11.clone(), max_fee_msat: 0, timeout_secs: 20 }).await {
            Ok(PaydApi::Paid { payment_hash, .. }) => assert_eq!(payment_hash, *hash),
            other => panic!("payment {k}: {other:?}"),
        }
    }
    let b = balance(&p.rc).await;
    assert_eq!((b.payments_succeeded, b.payments_pending, b.payments_failed), (n as u32, 0, 0));
    p.close();
}

/// An invoice signed by a key of our choosing, for another network or long expired.
fn foreign_invoice(currency: lightning_invoice::Currency, timestamp_secs: u64, dh: [u8; 32]) -> (String, String) {
    use lightning::bitcoin::hashes::{sha256, Hash};
    use lightning::bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
    let secp = Secp256k1::new();
    let sk = SecretKey::from_slice(&[0x42; 32]).unwrap();
    let inv = lightning_invoice::InvoiceBuilder::new(currency)
        .description_hash(sha256::Hash::from_byte_array(dh))
        .payment_hash(sha256::Hash::from_byte_array([0x11; 32]))
        .payment_secret(lightning_invoice::PaymentSecret([0x22; 32]))
        .duration_since_epoch(Duration::from_secs(timestamp_secs))
        .min_final_cltv_expiry_delta(18)
        .amount_milli_satoshis(10_000)
        .expiry_time(Duration::from_secs(600))
        .build_signed(|m| secp.sign_ecdsa_recoverable(m, &sk))
        .unwrap();
    (inv.to_string(), hex::encode(PublicKey::from_secret_key(&secp, &sk).serialize()))
}

/// `PayChecked` refuses every mismatch with `failed_precondition` naming it, and pays nothing:
/// the payment list stays empty and the balance unchanged. Then the matching request pays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_checked_refuses_each_mismatch_and_pays_nothing() {
    let p = Pair::start(100_000).await;
    let dh = [0x5a; 32];
    let (bolt11, hash) = p.invoice(42_000, dh).await;
    let expires_at = lcp::payd::backend::decode_bolt11(&bolt11).unwrap().expires_at_secs();
    let before = balance(&p.rc).await;
    let checked = |bolt11: &str, amount_msat: u64, payee: &str, description_hash: [u8; 32], not_after: Option<u64>| {
        PaydApi::PayChecked {
            bolt11: bolt11.to_string(),
            max_fee_msat: 1_000,
            timeout_secs: 10,
            amount_msat,
            payee: payee.to_string(),
            description_hash,
            not_after_secs: not_after,
        }
    };
    let stranger = format!("02{}", "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let (expired, expired_payee) = foreign_invoice(lightning_invoice::Currency::Regtest, 1_000_000, dh);
    let (mainnet, mainnet_payee) = foreign_invoice(lightning_invoice::Currency::Bitcoin, now, dh);
    let cases = [
        ("amount", checked(&bolt11, 41_999, &p.provider_id, dh, None), "invoice amount is 42000 msat but 41999"),
        ("payee", checked(&bolt11, 42_000, &stranger, dh, None), "invoice payee is"),
        ("description hash", checked(&bolt11, 42_000, &p.provider_id, [0x5b; 32], None), "description_hash is"),
        ("quote expiry", checked(&bolt11, 42_000, &p.provider_id, dh, Some(expires_at - 1)), "after the quote limit"),
        ("expired", checked(&expired, 10_000, &expired_payee, dh, None), "invoice expired at unix time 1000600"),
        ("network", checked(&mainnet, 10_000, &mainnet_payee, dh, None), "invoice is for currency \"bc\""),
    ];
    for (what, req, needle) in cases {
        let e = payd(&p.rc, req).await.unwrap_err().to_string();
        assert!(e.starts_with("failed_precondition:") && e.contains(needle), "{what}: {e}");
    }
    // A payee that is not a node id is a bad argument.
    let e = payd(&p.rc, checked(&bolt11, 42_000, "zz", dh, None)).await.unwrap_err().to_string();
    assert!(e.starts_with("invalid_argument: payee"), "{e}");
    // Nothing was paid or recorded.
    assert_eq!(payd(&p.rc, PaydApi::ListPayments).await.unwrap(), PaydApi::Payments(vec![]));
    assert_eq!(balance(&p.rc).await, before);
    match payd(&p.pc, PaydApi::LookupInvoice { payment_hash: hash }).await.unwrap() {
        PaydApi::InvoiceInfo(Some(i)) => assert_eq!(i.state, InvoiceState::Open),
        other => panic!("{other:?}"),
    }
    // What matches is paid.
    match payd(&p.rc, checked(&bolt11, 42_000, &p.provider_id, dh, Some(expires_at))).await.unwrap() {
        PaydApi::Paid { payment_hash, amount_msat, .. } => assert_eq!((payment_hash, amount_msat), (hash, 42_000)),
        other => panic!("{other:?}"),
    }
    assert_eq!(balance(&p.rc).await.payments_succeeded, 1);
    p.close();
}
