//! payd's runtime: `run(config, bus, shutdown)`.
//!
//! On devnet payd runs the embedded LDK engine and bridges it to peerd's sessions: every
//! `PeerConnected`, `Message` and `PeerDisconnected` from peerd goes to the engine in order, and
//! what the engine emits goes back to peerd as `Send` (or `DropSession`) on the same session.
//! LDK needs exactly-once, in-order delivery, so a gap in a session's sequence numbers (a message
//! lost on the bus) ends that session; LDK's channel reestablish repairs the rest. Messages to
//! peerd carry sequence numbers too (`ChannelSend`), checked by peerd. A lost *last* message
//! leaves no later number to reveal it, so when the bus broker restarts (a new epoch in its
//! `Welcome`) every session ends at once and peerd is asked to end them as well.

use super::backend::{
    ChannelBalance, ExpectedInvoice, InvoiceRecord, InvoiceStatus, PaidInvoice, PayParams, PaydError, PaydEvent,
    PaymentBackend, PaymentRecord, PaymentStatus,
};
use super::error::remote;
use super::ldk::{ChannelInfo, Dispatched, LdkConfig, LdkEngine, PeerOutput};
use super::lnd::{LndBackend, LndConfig};
use super::opts::PaydBackend;
use super::{PaydConfig, PaydServiceError};
use crate::bus::api::payd::{
    BalanceRow, ChannelRow, ClosedChannelRow, InvoiceRow, InvoiceState, PaydApi, PaymentRow, PaymentState,
};
use crate::bus::api::{Body, PeerdApi};
use crate::bus::{Bus, BusError, Corr, ErrorCode, Incoming, RemoteError, ServiceId};
use crate::config::Network;
use lightning::bitcoin::secp256k1::PublicKey;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Log target.
pub const TARGET: &str = "payd";
/// How long opening a devnet channel may take.
pub const OPEN_CHANNEL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long payd waits for peerd's list of sessions at start.
pub const PEERS_AT_START: Duration = Duration::from_secs(5);
/// Pause before asking peerd for its peer list again after no answer.
pub const PEERS_RETRY: Duration = Duration::from_secs(1);
/// How long closing a channel may take.
pub const CLOSE_CHANNEL_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs payd until `shutdown` fires.
pub async fn run(config: PaydConfig, bus: Bus, shutdown: CancellationToken) -> Result<(), PaydServiceError> {
    let dd = config.node.open_datadir()?;
    let key = dd.node_secret()?;
    let network = config.node.network;
    bus.set_info(Some(key.node_id_hex()), vec![("network".into(), network.to_string())]);
    if let PaydBackend::Lnd(lnd) = &config.backend {
        return run_lnd(lnd.clone(), key.node_id_hex(), bus, shutdown).await;
    }
    if network != Network::Devnet {
        // The embedded engine has no chain source: nothing can be paid on real networks with it.
        tracing::warn!(target: TARGET, %network, "the embedded engine runs on devnet only; no payment backend");
        let msg =
            format!("payd has no backend for {network}: the embedded engine runs on devnet only (use the lnd backend)");
        return crate::node::serve(
            &bus,
            &shutdown,
            |_| Err(RemoteError::new(ErrorCode::FailedPrecondition, msg.clone())),
            |_| {},
        )
        .await
        .map_err(Into::into);
    }
    let rx = bus.take_incoming().ok_or(BusError::Taken)?;
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let engine = LdkEngine::start(LdkConfig::devnet(dd.root().join("payd"), key.secret_bytes()), out_tx)
        .map_err(|e| PaydServiceError::Engine(e.to_string()))?;
    tracing::info!(target: TARGET, node_id = %key.node_id_hex(), %network, "payd ready (embedded LDK engine)");
    let backend: Arc<dyn PaymentBackend> = engine.clone();
    let st = Bridge {
        bus: bus.clone(),
        backend,
        ldk: Some(engine.clone()),
        next_seq: HashMap::new(),
        send_seq: HashMap::new(),
        stale: HashSet::new(),
    };
    let r = st.run(rx, Some(out_rx), &shutdown).await;
    if let Err(e) = engine.shutdown() {
        tracing::warn!(target: TARGET, "channel engine shutdown: {e}");
    }
    r
}

/// First wait between two attempts to reach lnd at start.
pub const LND_RETRY: Duration = Duration::from_millis(500);
/// Longest wait between two attempts to reach lnd at start.
pub const LND_RETRY_MAX: Duration = Duration::from_secs(30);

/// Answers a request while no backend is ready.
fn refuse(bus: &Bus, m: Incoming, why: &str) {
    if let Corr::Request(id) = m.corr {
        let e = RemoteError::new(ErrorCode::Unavailable, format!("payd's lnd backend is not ready: {why}"));
        if let Err(e) = bus.reply_err(&m.from, id, e) {
            tracing::debug!(target: TARGET, "reply failed: {e}");
        }
    }
}

/// payd with the lnd backend: connect (answering every request with `unavailable` and the reason
/// until lnd answers), then serve.
async fn run_lnd(
    config: LndConfig,
    node_id: String,
    bus: Bus,
    shutdown: CancellationToken,
) -> Result<(), PaydServiceError> {
    let mut rx = bus.take_incoming().ok_or(BusError::Taken)?;
    let mut why = String::from("connecting to lnd");
    let mut retry = LND_RETRY;
    let backend = loop {
        let attempt = LndBackend::start(config.clone());
        tokio::pin!(attempt);
        let outcome = loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                r = &mut attempt => break r,
                m = rx.recv() => match m { Some(m) => refuse(&bus, m, &why), None => return Ok(()) },
            }
        };
        match outcome {
            Ok(b) => break b,
            Err(e) => {
                why = e.to_string();
                tracing::warn!(target: TARGET, url = %config.conn.rest_url, "lnd: {why}; trying again in {retry:?}");
                let wait = tokio::time::sleep(retry);
                tokio::pin!(wait);
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = &mut wait => break,
                        m = rx.recv() => match m { Some(m) => refuse(&bus, m, &why), None => return Ok(()) },
                    }
                }
                retry = (retry * 2).min(LND_RETRY_MAX);
            }
        }
    };
    let payee = hex::encode(backend.node_id().serialize());
    bus.set_info(
        Some(node_id),
        vec![
            ("network".into(), config.network.to_string()),
            ("backend".into(), "lnd".into()),
            ("lnd_node_id".into(), payee.clone()),
        ],
    );
    tracing::info!(target: TARGET, lnd_node_id = %payee, network = %config.network, "payd ready (lnd backend)");
    let st = Bridge {
        bus: bus.clone(),
        backend: backend.clone(),
        ldk: None,
        next_seq: HashMap::new(),
        send_seq: HashMap::new(),
        stale: HashSet::new(),
    };
    let r = st.run(rx, None, &shutdown).await;
    backend.shutdown();
    r
}

struct Bridge {
    bus: Bus,
    /// What answers invoice and payment requests.
    backend: Arc<dyn PaymentBackend>,
    /// The embedded engine, when it is the backend: channels and peerd's sessions.
    ldk: Option<Arc<LdkEngine>>,
    /// Next expected sequence number per (peer, session), from peerd.
    next_seq: HashMap<(String, u64), u64>,
    /// Sequence number of the next channel message to peerd per (peer, session).
    send_seq: HashMap<(String, u64), u64>,
    /// Sessions the engine never saw begin (payd restarted under them) that peerd was asked to end.
    stale: HashSet<(String, u64)>,
}

fn parse_pk(hex_id: &str) -> Result<PublicKey, RemoteError> {
    let bytes = hex::decode(hex_id).map_err(|_| RemoteError::new(ErrorCode::InvalidArgument, "node id is not hex"))?;
    PublicKey::from_slice(&bytes).map_err(|e| RemoteError::new(ErrorCode::InvalidArgument, format!("node id: {e}")))
}

fn parse_channel_id(hex_id: &str) -> Result<[u8; 32], RemoteError> {
    let bytes = hex::decode(hex_id.trim())
        .map_err(|_| RemoteError::new(ErrorCode::InvalidArgument, "channel id is not hex"))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        RemoteError::new(ErrorCode::InvalidArgument, format!("channel id has {} bytes, not 32", b.len()))
    })
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

/// The bus form of a payment record.
pub fn payment_row(r: &PaymentRecord) -> PaymentRow {
    PaymentRow {
        payment_hash: r.payment_hash,
        bolt11: r.bolt11.clone(),
        amount_msat: r.amount_msat,
        payee: hex::encode(r.payee.serialize()),
        state: match r.status {
            PaymentStatus::Pending => PaymentState::Pending,
            PaymentStatus::Succeeded => PaymentState::Succeeded,
            PaymentStatus::Failed => PaymentState::Failed,
            PaymentStatus::Stranded => PaymentState::Stranded,
        },
        preimage: r.preimage,
        fee_msat: r.fee_msat,
        failure: r.failure.clone(),
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

/// The balance payd reports: channel totals, and counts and sums over payments and invoices.
pub fn balance_row(channels: ChannelBalance, payments: &[PaymentRecord], invoices: &[InvoiceRecord]) -> BalanceRow {
    let mut b = BalanceRow {
        channels: channels.channels,
        usable_channels: channels.usable_channels,
        outbound_msat: channels.outbound_msat,
        inbound_msat: channels.inbound_msat,
        ..BalanceRow::default()
    };
    for p in payments {
        match p.status {
            PaymentStatus::Pending => b.payments_pending += 1,
            // Ended without succeeding (stranded: with an outcome nobody will learn).
            PaymentStatus::Failed | PaymentStatus::Stranded => b.payments_failed += 1,
            PaymentStatus::Succeeded => {
                b.payments_succeeded += 1;
                b.sent_msat = b.sent_msat.saturating_add(p.amount_msat);
                b.fees_msat = b.fees_msat.saturating_add(p.fee_msat.unwrap_or(0));
            }
        }
    }
    for i in invoices {
        match i.status {
            InvoiceStatus::Open => b.invoices_open += 1,
            InvoiceStatus::Expired => {}
            InvoiceStatus::Settled => {
                b.invoices_settled += 1;
                b.received_msat = b.received_msat.saturating_add(i.amount_received_msat.unwrap_or(0));
            }
        }
    }
    b
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

fn paid(p: PaidInvoice) -> PaydApi {
    PaydApi::Paid {
        payment_hash: p.payment_hash,
        preimage: p.preimage,
        amount_msat: p.amount_msat,
        fee_msat: p.fee_msat,
    }
}

/// The answer to `Pay`/`PayChecked`: a stranded payment is a definite answer of its own, not an
/// error whose code would say "nothing was paid" (`failed_precondition`) or "ask again"
/// (`deadline_exceeded`).
fn pay_answer(r: Result<PaidInvoice, PaydError>) -> Result<PaydApi, RemoteError> {
    match r {
        Ok(p) => Ok(paid(p)),
        Err(PaydError::PaymentStranded { payment_hash, reason }) => match hex::decode(&payment_hash) {
            Ok(h) if h.len() == 32 => {
                let mut hash = [0u8; 32];
                hash.copy_from_slice(&h);
                Ok(PaydApi::PaymentStranded { payment_hash: hash, reason })
            }
            _ => Err(remote(&PaydError::PaymentStranded { payment_hash, reason })),
        },
        Err(e) => Err(remote(&e)),
    }
}

fn closed_row(c: &super::ldk::ClosedChannelRecord) -> ClosedChannelRow {
    ClosedChannelRow {
        channel_id: hex::encode(c.channel_id),
        counterparty: c.counterparty.clone(),
        capacity_sat: c.capacity_sat,
        closed_at: c.closed_at,
        reason: c.reason.clone(),
        stranded_htlcs: c.stranded_htlcs,
        stranded_msat: c.stranded_msat,
    }
}

fn pay_timeout(timeout_secs: u32) -> Duration {
    Duration::from_secs(u64::from(timeout_secs.max(1)))
}

async fn recv_opt<T>(rx: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Asks peerd for its sessions until it answers (the bus host or peerd may be down meanwhile).
/// The receiver gets nothing if peerd answers with something else.
fn spawn_session_check(bus: Bus) -> tokio::sync::oneshot::Receiver<Vec<crate::bus::api::peerd::PeerInfo>> {
    let (peers_tx, peers_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        while !peers_tx.is_closed() {
            let req = Body::Peerd(PeerdApi::ListPeers);
            match bus.request(&ServiceId::Peerd, req, PEERS_AT_START).await {
                Ok(Body::Peerd(PeerdApi::Peers(peers))) => {
                    let _ = peers_tx.send(peers);
                    return;
                }
                Ok(other) => {
                    tracing::warn!(target: TARGET, "peerd answered its peer list with {other:?}");
                    return;
                }
                Err(e) => tracing::debug!(target: TARGET, "peer list not available yet ({e}); asking again"),
            }
            tokio::time::sleep(PEERS_RETRY).await;
        }
    });
    peers_rx
}

impl Bridge {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Incoming>,
        mut out_rx: Option<mpsc::UnboundedReceiver<PeerOutput>>,
        shutdown: &CancellationToken,
    ) -> Result<(), PaydServiceError> {
        let mut events = self.backend.subscribe();
        // Sessions peerd opened before this payd started never reached the engine (a restart of
        // payd under a running peerd): end them, so the peers reconnect and reestablish.
        let mut check = self.ldk.as_ref().map(|_| spawn_session_check(self.bus.clone()));
        let mut epoch = self.bus.watch_epoch();
        let mut seen_epoch = *epoch.borrow_and_update();
        let mut epoch_open = true;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = async { match check.as_mut() { Some(c) => c.await, None => std::future::pending().await } } => {
                    check = None;
                    // peerd announced every session it lists before answering, and the bus
                    // queues the announcements before it hands over the answer: handle them
                    // first, so only sessions from before this payd (or before the bus host
                    // restarted) are ended.
                    while let Ok(m) = rx.try_recv() {
                        self.on_bus(m);
                    }
                    for p in r.unwrap_or_default() {
                        if !self.next_seq.contains_key(&(p.node_id.clone(), p.session)) {
                            self.end_stale_session(p.node_id, p.session);
                        }
                    }
                }
                changed = epoch.changed(), if epoch_open => {
                    if changed.is_err() {
                        epoch_open = false;
                        continue;
                    }
                    let now = *epoch.borrow_and_update();
                    let restarted = seen_epoch != 0 && now != seen_epoch;
                    seen_epoch = now;
                    if restarted && self.ldk.is_some() {
                        self.bus_host_restarted();
                        check = Some(spawn_session_check(self.bus.clone()));
                    }
                }
                m = rx.recv() => match m { Some(m) => self.on_bus(m), None => break },
                Some(out) = recv_opt(&mut out_rx) => self.on_engine(out),
                ev = events.recv() => match ev {
                    Ok(ev) => self.on_payd_event(ev),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        // lcpd re-checks open invoices with LookupInvoice, so nothing is lost.
                        tracing::warn!(target: TARGET, missed = n, "settlement events lagged");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
            }
        }
        Ok(())
    }

    /// The bus broker restarted (its host, lcpd, crashed or was restarted): channel messages that
    /// were on the bus in either direction may be lost, and a lost last message leaves no later
    /// sequence number to reveal it. Every session the engine holds ends at once (LDK sees the
    /// peer disconnect), and the session check that follows asks peerd to end them too, so the
    /// peers reconnect and LDK reestablishes the channels now rather than when the peer times out.
    fn bus_host_restarted(&mut self) {
        let sessions: Vec<(String, u64)> = self.next_seq.keys().cloned().collect();
        tracing::warn!(target: TARGET, sessions = sessions.len(), "the bus broker restarted: messages on the bus may be lost; starting the channel sessions over");
        if let Some(engine) = &self.ldk {
            for (node_id, session) in &sessions {
                if let Ok(pk) = parse_pk(node_id) {
                    engine.peer_disconnected(pk, *session);
                }
            }
        }
        self.next_seq.clear();
        self.send_seq.clear();
        // Asked again: a DropSession sent while peerd was not yet back on the bus may be lost.
        self.stale.clear();
    }

    fn drop_session(&mut self, node_id: &str, session: u64, reason: String) {
        tracing::warn!(target: TARGET, peer = %node_id, session, "ending session: {reason}");
        if let (Ok(pk), Some(engine)) = (parse_pk(node_id), &self.ldk) {
            engine.peer_disconnected(pk, session);
        }
        self.next_seq.remove(&(node_id.to_string(), session));
        self.send_seq.remove(&(node_id.to_string(), session));
        let ev = PeerdApi::DropSession { node_id: node_id.to_string(), session, reason };
        if let Err(e) = self.bus.send_event(&ServiceId::Peerd, Body::Peerd(ev)) {
            tracing::warn!(target: TARGET, "could not ask peerd to end the session: {e}");
        }
    }

    /// Asks peerd, once per session, to end a session the engine never saw begin.
    fn end_stale_session(&mut self, node_id: String, session: u64) {
        if !self.stale.insert((node_id.clone(), session)) {
            return;
        }
        tracing::info!(target: TARGET, peer = %node_id, session, "session from before payd started: asking peerd to end it");
        let reason = "payd's channel engine did not see this session begin (payd restarted); reconnect".to_string();
        let ev = PeerdApi::DropSession { node_id, session, reason };
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
                let id = hex::encode(node_id.serialize());
                // Counted even if the hand-over below fails: peerd then sees the gap.
                let n = self.send_seq.entry((id.clone(), session_id)).or_insert(0);
                let seq = *n;
                *n += 1;
                PeerdApi::ChannelSend { node_id: id, session: session_id, seq, msg: raw }
            }
            PeerOutput::Disconnect { node_id, session_id, reason } => {
                let id = hex::encode(node_id.serialize());
                self.next_seq.remove(&(id.clone(), session_id));
                self.send_seq.remove(&(id.clone(), session_id));
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
        // Channel traffic exists only for the embedded engine; another backend has its own peers.
        let Some(engine) = self.ldk.clone() else { return };
        match ev {
            PeerdApi::PeerConnected { peer, their_init } => {
                let Ok(pk) = parse_pk(&peer.node_id) else { return };
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
                    engine.peer_disconnected(pk, session);
                }
                self.stale.remove(&(node_id.clone(), session));
                self.send_seq.remove(&(node_id.clone(), session));
                self.next_seq.remove(&(node_id, session));
            }
            PeerdApi::Message { node_id, session, seq, msg } => {
                let key = (node_id.clone(), session);
                let Some(expected) = self.next_seq.get(&key).copied() else {
                    tracing::debug!(target: TARGET, peer = %node_id, session, "message for an unknown session dropped");
                    return self.end_stale_session(node_id, session);
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
        let bus = self.bus.clone();
        let reply = move |answer: Result<PaydApi, RemoteError>| {
            let body = answer.map(Body::Payd).unwrap_or_else(Body::Error);
            if let Err(e) = bus.reply(&from, id, body) {
                tracing::debug!(target: TARGET, "reply failed: {e}");
            }
        };
        let backend = self.backend.clone();
        let ldk = self.ldk.clone();
        let no_channels = || {
            RemoteError::new(
                ErrorCode::Unimplemented,
                "channels are managed by the payment backend's own node, not by payd",
            )
        };
        match req {
            PaydApi::ListChannels => match ldk {
                Some(engine) => reply(Ok(PaydApi::Channels(engine.channels().iter().map(row).collect()))),
                None => reply(Err(no_channels())),
            },
            PaydApi::OpenChannel { node_id, sats } => {
                let Some(engine) = ldk else { return reply(Err(no_channels())) };
                let pk = match parse_pk(&node_id) {
                    Ok(pk) => pk,
                    Err(e) => return reply(Err(e)),
                };
                tokio::spawn(async move {
                    let r = engine.open_channel(pk, sats, OPEN_CHANNEL_TIMEOUT).await;
                    reply(r.map(|c| PaydApi::Channel(row(&c))).map_err(|e| remote(&e)));
                });
            }
            PaydApi::CloseChannel { channel_id } => {
                let Some(engine) = ldk else { return reply(Err(no_channels())) };
                let cid = match parse_channel_id(&channel_id) {
                    Ok(c) => c,
                    Err(e) => return reply(Err(e)),
                };
                tokio::spawn(async move {
                    let r = engine.close_channel_and_wait(cid, CLOSE_CHANNEL_TIMEOUT).await;
                    if let Ok(reason) = &r {
                        tracing::info!(target: TARGET, channel_id = %hex::encode(cid), "channel closed: {reason}");
                    }
                    reply(
                        r.map(|reason| PaydApi::ChannelClosed { channel_id: hex::encode(cid), reason })
                            .map_err(|e| remote(&e)),
                    );
                });
            }
            PaydApi::ForceCloseChannel { channel_id } => {
                let Some(engine) = ldk else { return reply(Err(no_channels())) };
                let cid = match parse_channel_id(&channel_id) {
                    Ok(c) => c,
                    Err(e) => return reply(Err(e)),
                };
                tokio::spawn(async move {
                    let r = engine.force_close_channel_and_wait(cid, CLOSE_CHANNEL_TIMEOUT).await;
                    if let Ok(reason) = &r {
                        tracing::warn!(target: TARGET, channel_id = %hex::encode(cid), "channel closed by force: {reason}");
                    }
                    reply(
                        r.map(|reason| PaydApi::ChannelClosed { channel_id: hex::encode(cid), reason })
                            .map_err(|e| remote(&e)),
                    );
                });
            }
            PaydApi::ListClosedChannels => match ldk {
                Some(engine) => reply(
                    engine
                        .closed_channels()
                        .map(|v| PaydApi::ClosedChannels(v.iter().map(closed_row).collect()))
                        .map_err(|e| remote(&e)),
                ),
                None => reply(Err(no_channels())),
            },
            PaydApi::CreateInvoice { amount_msat, description_hash, expiry_secs } => {
                tokio::spawn(async move {
                    let r = backend.create_invoice(amount_msat, description_hash, expiry_secs).await;
                    reply(
                        r.map(|i| PaydApi::Invoice { bolt11: i.bolt11, payment_hash: i.payment_hash })
                            .map_err(|e| remote(&e)),
                    );
                });
            }
            PaydApi::LookupInvoice { payment_hash } => {
                tokio::spawn(async move {
                    let r = backend.lookup_invoice(payment_hash).await;
                    reply(r.map(|i| PaydApi::InvoiceInfo(i.as_ref().map(invoice_row))).map_err(|e| remote(&e)));
                });
            }
            PaydApi::Pay { bolt11, max_fee_msat, timeout_secs } => {
                tokio::spawn(async move {
                    let params = PayParams { max_fee_msat, timeout: pay_timeout(timeout_secs), expected: None };
                    reply(pay_answer(backend.pay(bolt11, params).await));
                });
            }
            PaydApi::PayChecked {
                bolt11,
                max_fee_msat,
                timeout_secs,
                amount_msat,
                payee,
                description_hash,
                not_after_secs,
            } => {
                let payee = match parse_pk(&payee) {
                    Ok(pk) => pk,
                    Err(e) => return reply(Err(RemoteError::new(e.code, format!("payee: {}", e.message)))),
                };
                let expected = ExpectedInvoice { amount_msat, payee, description_hash, not_after_secs };
                tokio::spawn(async move {
                    let params =
                        PayParams { max_fee_msat, timeout: pay_timeout(timeout_secs), expected: Some(expected) };
                    reply(pay_answer(backend.pay(bolt11, params).await));
                });
            }
            PaydApi::ListInvoices => {
                tokio::spawn(async move {
                    let r = backend.list_invoices().await;
                    reply(r.map(|v| PaydApi::Invoices(v.iter().map(invoice_row).collect())).map_err(|e| remote(&e)));
                });
            }
            PaydApi::LookupPayment { payment_hash } => {
                tokio::spawn(async move {
                    let r = backend.lookup_payment(payment_hash).await;
                    reply(r.map(|p| PaydApi::PaymentInfo(p.as_ref().map(payment_row))).map_err(|e| remote(&e)));
                });
            }
            PaydApi::ListPayments => {
                tokio::spawn(async move {
                    let r = backend.list_payments().await;
                    reply(r.map(|v| PaydApi::Payments(v.iter().map(payment_row).collect())).map_err(|e| remote(&e)));
                });
            }
            PaydApi::Balance => {
                tokio::spawn(async move {
                    let r = async {
                        let channels = backend.channel_balance().await?;
                        let payments = backend.list_payments().await?;
                        let invoices = backend.list_invoices().await?;
                        Ok::<_, PaydError>(balance_row(channels, &payments, &invoices))
                    }
                    .await;
                    reply(r.map(PaydApi::BalanceInfo).map_err(|e| remote(&e)));
                });
            }
            _ => reply(Err(RemoteError::new(ErrorCode::InvalidArgument, "not a request"))),
        }
    }
}
