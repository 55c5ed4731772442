//! payd's runtime: `run(config, bus, shutdown)`.
//!
//! On devnet payd runs the embedded LDK engine and bridges it to peerd's sessions: every
//! `PeerConnected`, `Message` and `PeerDisconnected` from peerd goes to the engine in order, and
//! what the engine emits goes back to peerd as `Send` (or `DropSession`) on the same session.
//! LDK needs exactly-once, in-order delivery, so a gap in a session's sequence numbers (a message
//! lost on the bus) ends that session; LDK's channel reestablish repairs the rest.

use super::backend::{InvoiceRecord, InvoiceStatus, PayParams, PaydEvent, PaymentBackend};
use super::ldk::{ChannelInfo, Dispatched, LdkConfig, LdkEngine, PeerOutput};
use super::{PaydConfig, PaydServiceError};
use crate::bus::api::payd::{ChannelRow, InvoiceRow, InvoiceState, PaydApi};
use crate::bus::api::{Body, PeerdApi};
use crate::bus::{Bus, BusError, Corr, ErrorCode, Incoming, RemoteError, ServiceId};
use crate::config::Network;
use crate::datadir::Datadir;
use lightning::bitcoin::secp256k1::PublicKey;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Log target.
pub const TARGET: &str = "payd";
/// How long opening a devnet channel may take.
pub const OPEN_CHANNEL_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs payd until `shutdown` fires.
pub async fn run(config: PaydConfig, bus: Bus, shutdown: CancellationToken) -> Result<(), PaydServiceError> {
    let dd = Datadir::open(&config.node.datadir)?;
    let key = dd.node_secret()?;
    let network = config.node.network;
    bus.set_info(Some(key.node_id_hex()), vec![("network".into(), network.to_string())]);
    let mut rx = bus.take_incoming().ok_or(BusError::Taken)?;
    if network != Network::Devnet {
        // No chain source yet: nothing can be paid on real networks. Say so to every request.
        tracing::warn!(target: TARGET, %network, "no payment backend for this network yet (devnet only)");
        return crate::node::serve(
            &bus,
            &shutdown,
            |_| Err(RemoteError::new(ErrorCode::FailedPrecondition, format!("payd has no backend for {network} yet"))),
            |_| {},
        )
        .await
        .map_err(Into::into);
    }
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    let engine = LdkEngine::start(LdkConfig::devnet(dd.root().join("payd"), key.secret_bytes()), out_tx)
        .map_err(|e| PaydServiceError::Engine(e.to_string()))?;
    let mut events = engine.subscribe();
    let mut st = Bridge { bus: bus.clone(), engine, next_seq: HashMap::new() };
    tracing::info!(target: TARGET, node_id = %key.node_id_hex(), %network, "payd ready (embedded LDK engine)");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            m = rx.recv() => match m { Some(m) => st.on_bus(m), None => break },
            Some(out) = out_rx.recv() => st.on_engine(out),
            ev = events.recv() => match ev {
                Ok(ev) => st.on_payd_event(ev),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    // lcpd re-checks open invoices with LookupInvoice, so nothing is lost.
                    tracing::warn!(target: TARGET, missed = n, "settlement events lagged");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    if let Err(e) = st.engine.shutdown() {
        tracing::warn!(target: TARGET, "channel engine shutdown: {e}");
    }
    Ok(())
}

struct Bridge {
    bus: Bus,
    engine: Arc<LdkEngine>,
    /// Next expected sequence number per (peer, session).
    next_seq: HashMap<(String, u64), u64>,
}

fn parse_pk(hex_id: &str) -> Result<PublicKey, RemoteError> {
    let bytes = hex::decode(hex_id).map_err(|_| RemoteError::new(ErrorCode::InvalidArgument, "node id is not hex"))?;
    PublicKey::from_slice(&bytes).map_err(|e| RemoteError::new(ErrorCode::InvalidArgument, format!("node id: {e}")))
}

/// The bus form of an invoice record.
pub fn invoice_row(r: &InvoiceRecord) -> InvoiceRow {
    InvoiceRow {
        payment_hash: r.payment_hash,
        bolt11: r.bolt11.clone(),
        amount_msat: r.amount_msat,
        description_hash: r.description_hash,
        created_at: r.created_at,
        expires_at: r.expires_at,
        state: match r.status {
            InvoiceStatus::Open => InvoiceState::Open,
            InvoiceStatus::Settled => InvoiceState::Settled,
            InvoiceStatus::Expired => InvoiceState::Expired,
        },
        amount_received_msat: r.amount_received_msat,
        settled_at: r.settled_at,
    }
}

fn row(c: &ChannelInfo) -> ChannelRow {
    ChannelRow {
        channel_id: hex::encode(c.channel_id),
        counterparty: hex::encode(c.counterparty.serialize()),
        capacity_sat: c.capacity_sat,
        outbound_capacity_msat: c.outbound_capacity_msat,
        inbound_capacity_msat: c.inbound_capacity_msat,
        is_usable: c.is_usable,
        is_outbound: c.is_outbound,
    }
}

impl Bridge {
    fn drop_session(&mut self, node_id: &str, session: u64, reason: String) {
        tracing::warn!(target: TARGET, peer = %node_id, session, "ending session: {reason}");
        if let Ok(pk) = parse_pk(node_id) {
            self.engine.peer_disconnected(pk, session);
        }
        self.next_seq.remove(&(node_id.to_string(), session));
        let ev = PeerdApi::DropSession { node_id: node_id.to_string(), session, reason };
        if let Err(e) = self.bus.send_event(&ServiceId::Peerd, Body::Peerd(ev)) {
            tracing::warn!(target: TARGET, "could not ask peerd to end the session: {e}");
        }
    }

    fn on_payd_event(&mut self, ev: PaydEvent) {
        if let PaydEvent::InvoiceSettled { payment_hash, amount_msat } = ev {
            tracing::info!(target: TARGET, payment_hash = %hex::encode(payment_hash), amount_msat, "invoice settled");
            let body = Body::Payd(PaydApi::InvoiceSettled { payment_hash, amount_msat });
            if let Err(e) = self.bus.send_event(&ServiceId::Lcpd, body) {
                tracing::warn!(target: TARGET, "settlement not reported to lcpd (it will look it up): {e}");
            }
        }
    }

    fn on_engine(&mut self, out: PeerOutput) {
        let ev = match out {
            PeerOutput::Send { node_id, session_id, raw } => {
                PeerdApi::Send { node_id: hex::encode(node_id.serialize()), session: session_id, msg: raw }
            }
            PeerOutput::Disconnect { node_id, session_id, reason } => {
                let id = hex::encode(node_id.serialize());
                self.next_seq.remove(&(id.clone(), session_id));
                PeerdApi::DropSession { node_id: id, session: session_id, reason }
            }
        };
        if let Err(e) = self.bus.send_event(&ServiceId::Peerd, Body::Peerd(ev)) {
            tracing::warn!(target: TARGET, "channel message not handed to peerd: {e}");
        }
    }

    fn on_bus(&mut self, m: Incoming) {
        let from = m.from.clone();
        match (m.corr, m.body) {
            (Corr::Event, Body::Peerd(ev)) if from == ServiceId::Peerd => self.on_peer_event(ev),
            (Corr::Request(id), Body::Payd(req)) => self.request(from, id, req),
            (Corr::Request(id), other) => {
                let e = RemoteError::new(
                    ErrorCode::Unimplemented,
                    format!("payd does not implement {}", crate::bus::broker::body_name(&other)),
                );
                let _ = self.bus.reply_err(&from, id, e);
            }
            (_, _) => tracing::debug!(target: TARGET, %from, "event ignored"),
        }
    }

    fn on_peer_event(&mut self, ev: PeerdApi) {
        match ev {
            PeerdApi::PeerConnected { peer, their_init } => {
                let Ok(pk) = parse_pk(&peer.node_id) else { return };
                let engine = self.engine.clone();
                let res =
                    tokio::task::block_in_place(|| engine.peer_connected(pk, peer.session, &their_init, peer.inbound));
                match res {
                    Ok(()) => {
                        self.next_seq.insert((peer.node_id, peer.session), 0);
                    }
                    Err(e) => {
                        self.drop_session(&peer.node_id, peer.session, format!("channel engine refused the peer: {e}"))
                    }
                }
            }
            PeerdApi::PeerDisconnected { node_id, session, .. } => {
                if let Ok(pk) = parse_pk(&node_id) {
                    self.engine.peer_disconnected(pk, session);
                }
                self.next_seq.remove(&(node_id, session));
            }
            PeerdApi::Message { node_id, session, seq, msg } => {
                let key = (node_id.clone(), session);
                let Some(expected) = self.next_seq.get(&key).copied() else {
                    tracing::debug!(target: TARGET, peer = %node_id, session, "message for an unknown session dropped");
                    return;
                };
                if seq != expected {
                    return self.drop_session(
                        &node_id,
                        session,
                        format!("message {expected} lost on the bus (got {seq})"),
                    );
                }
                self.next_seq.insert(key, expected + 1);
                let Ok(pk) = parse_pk(&node_id) else { return };
                let engine = self.engine.clone();
                match tokio::task::block_in_place(|| engine.handle_message(pk, session, &msg)) {
                    Ok(Dispatched::DeliveredThenDisconnect(t)) => {
                        self.drop_session(&node_id, session, format!("peer sent a connection-wide error (type {t})"))
                    }
                    Ok(_) => {}
                    Err(e) => self.drop_session(&node_id, session, format!("bad channel message: {e}")),
                }
            }
            _ => {}
        }
    }

    fn request(&mut self, from: ServiceId, id: u64, req: PaydApi) {
        let (bus, engine) = (self.bus.clone(), self.engine.clone());
        let reply = move |answer: Result<PaydApi, RemoteError>| {
            let body = answer.map(Body::Payd).unwrap_or_else(Body::Error);
            if let Err(e) = bus.reply(&from, id, body) {
                tracing::debug!(target: TARGET, "reply failed: {e}");
            }
        };
        let fail = |code: ErrorCode, e: &dyn std::fmt::Display| RemoteError::new(code, e.to_string());
        match req {
            PaydApi::ListChannels => reply(Ok(PaydApi::Channels(engine.channels().iter().map(row).collect()))),
            PaydApi::OpenChannel { node_id, sats } => {
                let pk = match parse_pk(&node_id) {
                    Ok(pk) => pk,
                    Err(e) => return reply(Err(e)),
                };
                tokio::spawn(async move {
                    let r = engine.open_channel(pk, sats, OPEN_CHANNEL_TIMEOUT).await;
                    reply(r.map(|c| PaydApi::Channel(row(&c))).map_err(|e| fail(ErrorCode::FailedPrecondition, &e)));
                });
            }
            PaydApi::CreateInvoice { amount_msat, description_hash, expiry_secs } => {
                tokio::spawn(async move {
                    let r = engine.create_invoice(amount_msat, description_hash, expiry_secs).await;
                    reply(
                        r.map(|i| PaydApi::Invoice { bolt11: i.bolt11, payment_hash: i.payment_hash })
                            .map_err(|e| fail(ErrorCode::InvalidArgument, &e)),
                    );
                });
            }
            PaydApi::LookupInvoice { payment_hash } => {
                tokio::spawn(async move {
                    let r = engine.lookup_invoice(payment_hash).await;
                    reply(
                        r.map(|i| PaydApi::InvoiceInfo(i.as_ref().map(invoice_row)))
                            .map_err(|e| fail(ErrorCode::Internal, &e)),
                    );
                });
            }
            PaydApi::Pay { bolt11, max_fee_msat, timeout_secs } => {
                tokio::spawn(async move {
                    let params = PayParams {
                        max_fee_msat,
                        timeout: Duration::from_secs(u64::from(timeout_secs.max(1))),
                        expected: None,
                    };
                    let r = engine.pay(bolt11, params).await;
                    reply(
                        r.map(|p| PaydApi::Paid {
                            payment_hash: p.payment_hash,
                            preimage: p.preimage,
                            amount_msat: p.amount_msat,
                            fee_msat: p.fee_msat,
                        })
                        // A timeout leaves the payment pending: the caller must ask again (pay is
                        // idempotent), not treat it as failed.
                        .map_err(|e| match e {
                            super::backend::PaydError::Timeout { .. } => fail(ErrorCode::DeadlineExceeded, &e),
                            // No usable channel yet (e.g. just after a restart, before the channel
                            // is re-established): nothing was sent; try again later.
                            super::backend::PaydError::NoChannel { .. } => fail(ErrorCode::Unavailable, &e),
                            e => fail(ErrorCode::FailedPrecondition, &e),
                        }),
                    );
                });
            }
            _ => reply(Err(RemoteError::new(ErrorCode::InvalidArgument, "not a request"))),
        }
    }
}
