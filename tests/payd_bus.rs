//! payd over the bus: two whole nodes, their peerds connected over BOLT #8, open a devnet channel
//! and pay an invoice with a description hash. Channel messages travel peerd -> bus -> payd and
//! back, with per-session sequence numbers.

use lcp::bus::api::payd::PaydApi;
use lcp::bus::api::{Body, PeerdApi};
use lcp::bus::{Bus, ServiceId};
use lcp::testkit::{poll_until, services, InProcessNode, PATIENCE};
use sha2::{Digest, Sha256};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

async fn payd(c: &Bus, req: PaydApi) -> Result<PaydApi, lcp::bus::BusError> {
    match c.request(&ServiceId::Payd, Body::Payd(req), T).await? {
        Body::Payd(p) => Ok(p),
        other => panic!("{other:?}"),
    }
}

async fn peerd_info(c: &Bus) -> (String, String) {
    poll_until(PATIENCE, "peerd", || async {
        let p = services(c).await.ok()?.into_iter().find(|s| s.id == ServiceId::Peerd)?;
        Some((p.info.node_id?, p.info.details.iter().find(|(k, _)| k == "listen")?.1.clone()))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_open_a_devnet_channel_and_pay_over_peerd_and_the_bus() {
    let requester = InProcessNode::start().unwrap();
    let provider = InProcessNode::start().unwrap();
    let (rc, pc) = (requester.client().await.unwrap(), provider.client().await.unwrap());
    let (provider_id, provider_listen) = peerd_info(&pc).await;
    lcp::testkit::wait_services(&rc, &[ServiceId::Payd]).await.unwrap();
    lcp::testkit::wait_services(&pc, &[ServiceId::Payd]).await.unwrap();
    let req = PeerdApi::Connect { node_id: provider_id.clone(), addr: provider_listen, persistent: false };
    assert!(matches!(
        rc.request(&ServiceId::Peerd, Body::Peerd(req), T).await.unwrap(),
        Body::Peerd(PeerdApi::Connected(_))
    ));
    // payd learns of the peer through peerd's event; opening waits until then.
    let ch = poll_until(PATIENCE, "channel open", || async {
        match payd(&rc, PaydApi::OpenChannel { node_id: provider_id.clone(), sats: 100_000 }).await {
            Ok(PaydApi::Channel(c)) => Some(c),
            _ => None,
        }
    })
    .await
    .unwrap();
    assert_eq!(ch.counterparty, provider_id);
    assert!(ch.is_outbound && ch.capacity_sat == 100_000);
    // The provider sees the channel too.
    poll_until(PATIENCE, "provider's channel usable", || async {
        match payd(&pc, PaydApi::ListChannels).await.ok()? {
            PaydApi::Channels(c) if c.iter().any(|c| c.is_usable) => Some(()),
            _ => None,
        }
    })
    .await
    .unwrap();
    // lcp-cli shows the channel on both sides.
    for (dir, outbound) in [(requester.dir.path().to_path_buf(), true), (provider.dir.path().to_path_buf(), false)] {
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(lcp::testkit::bin_path("lcp-cli"))
                .arg("--datadir")
                .arg(&dir)
                .args(["channel", "list", "--json"])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v[0]["channel_id"], ch.channel_id);
        assert_eq!(v[0]["is_outbound"], outbound);
    }
    // The provider invoices with a description hash; the requester pays it.
    let terms_hash = [0x3d; 32];
    let (bolt11, payment_hash) =
        match payd(&pc, PaydApi::CreateInvoice { amount_msat: 21_000, description_hash: terms_hash, expiry_secs: 300 })
            .await
            .unwrap()
        {
            PaydApi::Invoice { bolt11, payment_hash } => (bolt11, payment_hash),
            other => panic!("{other:?}"),
        };
    assert!(bolt11.starts_with("lnbcrt"), "{bolt11}");
    let decoded = lcp::payd::backend::decode_bolt11(&bolt11).unwrap();
    assert_eq!(decoded.description_hash, Some(terms_hash));
    let paid = poll_until(PATIENCE, "payment", || async {
        payd(&rc, PaydApi::Pay { bolt11: bolt11.clone(), max_fee_msat: 1000, timeout_secs: 20 }).await.ok()
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
    rc.close();
    pc.close();
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
    assert!(e.starts_with("failed_precondition:"), "{e}");
    c.close();
}
