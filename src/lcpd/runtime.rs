//! lcpd's runtime: `run(config, bus, shutdown)`. It feeds the LCP [`Engine`] with what arrives
//! (peer messages from peerd, settlements from payd, prices and output from jobd workers,
//! client requests) and carries out what the engine answers, in order: records first, then
//! messages, prices, invoices, dispatches and payments. Slow calls (a worker pricing a job,
//! payd making an invoice or paying) run as tasks whose outcome comes back to the loop.

use super::dispatch::{Dispatcher, Owner};
use super::engine::requester::{Accepted, PayOutcome, PaymentLookup, ReqError};
use super::engine::{
    Engine, EngineConfig, FailKind, Limits, Notice, Out, Outcome, PKey, ProviderRecord, RequesterRecord, RequesterState,
};
use super::store::{JobStore, JobStoreError};
use super::workers::{Need, PoolError};
use super::{LcpdConfig, LcpdError};
use crate::bus::api::jobd::JobSpec;
use crate::bus::api::lcpd::{
    JobEvent, JobOutcomeRow, JobRole, JobRow, LcpPeerRow, ManifestRow, QuoteRow, TaskRow, TestJob,
};
use crate::bus::api::payd::{InvoiceState, PaydApi, PaymentRow, PaymentState};
use crate::bus::api::peerd::{LastManifest, PeerInfo};
use crate::bus::api::{Body, JobdApi, LcpdApi, PeerdApi};
use crate::bus::{Bus, BusError, Corr, ErrorCode, Incoming, RemoteError, ServiceId, ToErrorCode};
use crate::wire::lcp::{LcpMessage, Manifest, Params};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Log target.
pub const TARGET: &str = "lcpd";

/// Schema of `lcpd.db`.
pub use super::store::MIGRATIONS;

/// How often the engine's clock ticks (quote expiry, deadlines, retries) and silent workers
/// are looked for.
pub const TICK_INTERVAL: Duration = Duration::from_millis(500);
/// Open invoices are looked up at payd this often (a fallback for a settlement event lost while
/// lcpd was away).
pub const INVOICE_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Finished jobs younger than this are loaded at start (a requester may ask for a result again).
pub const RESUME_FINISHED_SECS: u64 = 24 * 3600;
/// Timeout of a request to a worker or payd.
pub const SERVICE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long payd may take to pay before lcpd asks again.
pub const PAY_TIMEOUT_SECS: u32 = 30;
/// Routing fee limit of a payment (the reference's 10 000 sat).
pub const MAX_FEE_MSAT: u64 = 10_000_000;
/// How long lcpd keeps asking peerd for its peers at start.
pub const PEERS_PATIENCE: Duration = Duration::from_secs(120);
/// Size of the result pieces re-sent to a client from the store.
const REPLAY_CHUNK: usize = 64 * 1024;

/// Content type of OpenAI-kind inputs.
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

impl ToErrorCode for PoolError {
    fn code(&self) -> ErrorCode {
        match self {
            PoolError::NoWorker { .. } => ErrorCode::FailedPrecondition,
            PoolError::Full(_) => ErrorCode::ResourceExhausted,
            PoolError::Duplicate => ErrorCode::AlreadyExists,
        }
    }
}

impl ToErrorCode for JobStoreError {
    fn code(&self) -> ErrorCode {
        ErrorCode::Internal
    }
}

/// Outcomes of slow calls, back into the loop.
enum Feedback {
    Priced(PKey, Result<u64, (u16, String)>, Option<ServiceId>),
    Invoiced(PKey, Result<(String, [u8; 32]), String>),
    Paid([u8; 32], PayOutcome),
    LookedUp([u8; 32], PaymentLookup),
    Settled([u8; 32]),
    Peers(Vec<PeerInfo>, Vec<LastManifest>),
}

use crate::clock::now_secs;

/// Runs lcpd until `shutdown` fires.
pub async fn run(config: LcpdConfig, bus: Bus, shutdown: CancellationToken) -> Result<(), LcpdError> {
    let dd = config.node.open_datadir()?;
    let node_id = dd.node_secret()?.node_id_hex();
    let store = JobStore::open(&dd.db_path("lcpd")).map_err(|e| LcpdError::Jobs(e.to_string()))?;
    bus.set_info(
        Some(node_id.clone()),
        vec![
            ("network".into(), config.node.network.to_string()),
            ("max_inflight_jobs".into(), config.max_inflight_jobs.to_string()),
        ],
    );
    let mut rx = bus.take_incoming().ok_or(BusError::Taken)?;
    let (ex_tx, mut ex_rx) = mpsc::channel(1024);
    let (local_tx, mut local_rx) = mpsc::unbounded_channel();
    let (fb_tx, mut fb_rx) = mpsc::unbounded_channel();
    let ecfg = EngineConfig {
        limits: Limits { max_inflight_jobs: config.max_inflight_jobs, ..Limits::default() },
        network: config.node.network,
        quote_ttl_secs: config.quote_ttl_secs,
        ..EngineConfig::default()
    };
    let mut st = State {
        d: Dispatcher::new(bus.clone(), config.max_inflight_jobs as usize, ex_tx, local_tx),
        bus,
        engine: Engine::new(ecfg, node_id),
        store,
        sessions: HashMap::new(),
        quote_waiters: HashMap::new(),
        subscribers: HashMap::new(),
        quoted_by: HashMap::new(),
        fb: fb_tx,
        auto_channel_sats: if config.node.network == crate::config::Network::Devnet {
            config.auto_channel_sats
        } else {
            0
        },
    };
    st.resume()?;
    st.ask_peers();
    let mut tick = tokio::time::interval(TICK_INTERVAL);
    let mut poll = tokio::time::interval(INVOICE_POLL_INTERVAL);
    tracing::info!(target: TARGET, "lcpd ready");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            m = rx.recv() => match m {
                Some(m) => st.on_bus(m),
                None => break,
            },
            Some(ex) = ex_rx.recv() => st.d.on_executed(ex),
            Some((key, item)) = local_rx.recv() => st.engine.output(now_secs(), &key, item),
            Some(f) = fb_rx.recv() => st.on_feedback(f),
            _ = tick.tick() => {
                st.d.tick();
                st.refresh_offers();
                st.engine.tick(now_secs());
            }
            _ = poll.tick() => st.poll_invoices(),
        }
        st.flush();
    }
    Ok(())
}

struct State {
    bus: Bus,
    engine: Engine,
    store: JobStore,
    d: Dispatcher,
    /// Current session per connected peer.
    sessions: HashMap<String, u64>,
    /// Clients waiting for a quote: job id -> (client, request id).
    quote_waiters: HashMap<[u8; 32], (ServiceId, u64)>,
    /// Clients receiving a job's events.
    subscribers: HashMap<[u8; 32], ServiceId>,
    /// The worker that priced a job (it runs it too, when it can).
    quoted_by: HashMap<PKey, ServiceId>,
    fb: mpsc::UnboundedSender<Feedback>,
    /// On devnet a payment opens a channel of at least this many sats to the payee when none can
    /// carry it (0: never).
    auto_channel_sats: u64,
}

/// Devnet: opens a zero-conf channel to the invoice's payee when no channel to it could carry the
/// amount (a channel that exists but is being re-established counts: it will carry it).
async fn ensure_devnet_channel(bus: &Bus, bolt11: &str, min_sats: u64) {
    let Ok(inv) = crate::payd::backend::decode_bolt11(bolt11) else { return };
    let payee = hex::encode(inv.payee.serialize());
    let need = inv.amount_msat.unwrap_or(0);
    let channels = match bus.request(&ServiceId::Payd, Body::Payd(PaydApi::ListChannels), SERVICE_TIMEOUT).await {
        Ok(Body::Payd(PaydApi::Channels(c))) => c,
        _ => return,
    };
    let fits = |c: &crate::bus::api::payd::ChannelRow| {
        c.counterparty == payee
            && if c.is_usable { c.outbound_capacity_msat >= need } else { c.capacity_sat.saturating_mul(1000) > need }
    };
    if channels.iter().any(fits) {
        return;
    }
    let sats = min_sats.max((need / 1000).saturating_mul(10));
    tracing::info!(target: TARGET, peer = %payee, sats, "no channel can carry the payment: opening a devnet channel");
    let open = Body::Payd(PaydApi::OpenChannel { node_id: payee, sats });
    if let Err(e) = bus.request(&ServiceId::Payd, open, Duration::from_secs(40)).await {
        tracing::warn!(target: TARGET, "devnet channel not opened: {e}");
    }
}

fn manifest_row(m: &Manifest) -> ManifestRow {
    ManifestRow {
        protocol_version: m.protocol_version,
        max_payload_bytes: m.max_payload_bytes,
        max_stream_bytes: m.max_stream_bytes,
        max_job_bytes: m.max_job_bytes,
        max_inflight_jobs: m.max_inflight_jobs,
        tasks: m
            .supported_tasks
            .iter()
            .flatten()
            .map(|t| TaskRow {
                task_kind: t.task_kind.clone(),
                model: t.params_template.as_deref().and_then(|p| Params::decode(p).ok()).map(|p| p.model),
            })
            .collect(),
    }
}

/// How long lcpd waits for payd's answer to a payment lookup.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// What payd's payment record (`None`: payd never recorded it) says of a payment.
fn payment_lookup(payment_hash: [u8; 32], row: Option<PaymentRow>) -> PaymentLookup {
    let Some(row) = row else { return PaymentLookup::NoRecord };
    if row.payment_hash != payment_hash {
        return PaymentLookup::Unknown("payd answered for another payment".into());
    }
    match (row.state, row.preimage) {
        (PaymentState::Succeeded, Some(preimage)) => PaymentLookup::Paid(preimage),
        (PaymentState::Succeeded, None) => PaymentLookup::Unknown("payd reports success without a preimage".into()),
        (PaymentState::Failed, _) => PaymentLookup::NotPaid(row.failure.unwrap_or_else(|| "payment failed".into())),
        (PaymentState::Pending, _) => PaymentLookup::Pending,
        (PaymentState::Stranded, _) => {
            PaymentLookup::Stranded(row.failure.unwrap_or_else(|| "stranded on a closed channel".into()))
        }
    }
}

fn provider_row(r: &ProviderRecord) -> JobRow {
    JobRow {
        role: JobRole::Provider,
        peer: r.peer.clone(),
        job_id: r.job_id,
        state: r.state.as_str().into(),
        task_kind: r.task_kind.clone(),
        model: r.model.clone(),
        price_msat: r.price_msat,
        quote_expiry: r.quote_expiry,
        terms_hash: r.terms_hash,
        payment_hash: r.payment_hash,
        preimage: None,
        payment_unresolved: false,
        result_len: r.result_len,
        result_content_type: r.result_content_type.clone(),
        result_hash: r.result_hash,
        error: r.error.as_ref().map(|(c, m)| if *c == 0 { m.clone() } else { format!("code {c}: {m}") }),
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

fn requester_row(r: &RequesterRecord) -> JobRow {
    JobRow {
        role: JobRole::Requester,
        peer: r.peer.clone(),
        job_id: r.job_id,
        state: r.state.as_str().into(),
        task_kind: r.task_kind.clone(),
        model: r.model.clone(),
        price_msat: r.price_msat,
        quote_expiry: r.quote_expiry,
        terms_hash: r.terms_hash,
        payment_hash: r.payment_hash,
        preimage: r.preimage,
        payment_unresolved: r.payment_unresolved,
        result_len: r.result_len,
        result_content_type: r.result_content_type.clone(),
        result_hash: r.result_hash,
        error: r.error.clone(),
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

fn fail_code(kind: FailKind) -> ErrorCode {
    match kind {
        FailKind::FailedPrecondition | FailKind::PaymentFailed => ErrorCode::FailedPrecondition,
        FailKind::ResourceExhausted => ErrorCode::ResourceExhausted,
        FailKind::DeadlineExceeded => ErrorCode::DeadlineExceeded,
        FailKind::Internal => ErrorCode::Internal,
    }
}

fn outcome_row(o: Outcome) -> JobOutcomeRow {
    match o {
        Outcome::Ok { content_type, len, sha256 } => JobOutcomeRow::Ok { content_type, len, sha256 },
        Outcome::Failed { kind, lcp_code, message } => {
            JobOutcomeRow::Failed { lcp_code, message, nothing_paid: kind == FailKind::PaymentFailed }
        }
        Outcome::Cancelled => JobOutcomeRow::Cancelled,
    }
}

fn req_err(e: ReqError) -> RemoteError {
    RemoteError::new(e.code, e.message)
}

impl State {
    fn reply(&self, to: &ServiceId, id: u64, answer: Result<Body, RemoteError>) {
        if let Err(e) = self.bus.reply(to, id, answer.unwrap_or_else(Body::Error)) {
            tracing::debug!(target: TARGET, %to, "reply failed: {e}");
        }
    }

    /// Loads the jobs to resume and looks up the invoices of open quotes.
    fn resume(&mut self) -> Result<(), LcpdError> {
        let now = now_secs();
        let since = now.saturating_sub(RESUME_FINISHED_SECS);
        let prov = self.store.provider_to_resume(since).map_err(|e| LcpdError::Jobs(e.to_string()))?;
        let req = self.store.requester_to_resume(since).map_err(|e| LcpdError::Jobs(e.to_string()))?;
        let (np, nr) = (prov.len(), req.len());
        for (rec, input) in prov {
            self.engine.restore_provider(now, rec, input);
        }
        for (rec, input) in req {
            self.engine.restore_requester(now, rec, input);
        }
        if np + nr > 0 {
            tracing::info!(target: TARGET, provider = np, requester = nr, "jobs resumed from lcpd.db");
        }
        self.poll_invoices();
        self.flush();
        Ok(())
    }

    /// Asks peerd who is connected (lcpd may start after the connections did), polling until
    /// peerd answers or [`PEERS_PATIENCE`] passes.
    fn ask_peers(&self) {
        let (bus, fb) = (self.bus.clone(), self.fb.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(TICK_INTERVAL);
            let deadline = tokio::time::Instant::now() + PEERS_PATIENCE;
            while tokio::time::Instant::now() < deadline {
                every.tick().await;
                match bus.request(&ServiceId::Peerd, Body::Peerd(PeerdApi::ListPeers), Duration::from_secs(2)).await {
                    Ok(Body::Peerd(PeerdApi::Peers(p))) => {
                        // The manifests peerd kept: a peer that follows the reference's rules
                        // does not send its manifest again on a connection that stayed up.
                        let body = Body::Peerd(PeerdApi::LcpManifests);
                        let kept = match bus.request(&ServiceId::Peerd, body, Duration::from_secs(2)).await {
                            Ok(Body::Peerd(PeerdApi::Manifests(m))) => m,
                            other => {
                                tracing::warn!(target: TARGET, "peerd did not hand over the manifests it kept: {other:?}");
                                Vec::new()
                            }
                        };
                        let _ = fb.send(Feedback::Peers(p, kept));
                        return;
                    }
                    Ok(_) => return,
                    Err(e) => tracing::debug!(target: TARGET, "peerd not answering yet: {e}"),
                }
            }
            tracing::warn!(target: TARGET, "peerd did not list its peers; they will be learnt from their messages");
        });
    }

    fn poll_invoices(&self) {
        for hash in self.engine.open_invoices() {
            let (bus, fb) = (self.bus.clone(), self.fb.clone());
            tokio::spawn(async move {
                let body = Body::Payd(PaydApi::LookupInvoice { payment_hash: hash });
                if let Ok(Body::Payd(PaydApi::InvoiceInfo(Some(row)))) =
                    bus.request(&ServiceId::Payd, body, SERVICE_TIMEOUT).await
                {
                    if row.state == InvoiceState::Settled {
                        let _ = fb.send(Feedback::Settled(hash));
                    }
                }
            });
        }
    }

    fn refresh_offers(&mut self) {
        let offers = self.d.pool().offers();
        if offers != self.engine.offers() {
            tracing::info!(target: TARGET, offers = offers.len(), "offers changed; manifests re-sent");
            self.engine.set_offers(offers);
            self.engine.announce_manifest();
        }
    }

    fn on_bus(&mut self, m: Incoming) {
        let from = m.from;
        match (m.corr, m.body) {
            (Corr::Event, Body::Peerd(ev)) if from == ServiceId::Peerd => self.on_peer_event(ev),
            (Corr::Event, Body::Payd(PaydApi::InvoiceSettled { payment_hash, .. })) if from == ServiceId::Payd => {
                if !self.engine.settled(now_secs(), payment_hash) {
                    tracing::debug!(target: TARGET, "settlement of an invoice that is not a job's");
                }
            }
            (Corr::Event, Body::Jobd(JobdApi::Announce(a))) if matches!(from, ServiceId::Jobd(_)) => {
                self.d.on_announce(from, a);
                self.refresh_offers();
            }
            (Corr::Event, Body::Jobd(JobdApi::Output { job_id, item })) => self.d.on_output(&from, job_id, item),
            (Corr::Request(id), body) => self.request(from, id, body),
            (_, body) => tracing::debug!(target: TARGET, %from, "ignored: {}", crate::bus::broker::body_name(&body)),
        }
    }

    fn on_peer_event(&mut self, ev: PeerdApi) {
        let now = now_secs();
        match ev {
            PeerdApi::PeerConnected { peer, .. } => {
                self.sessions.insert(peer.node_id.clone(), peer.session);
                self.engine.peer_connected(now, &peer.node_id);
            }
            PeerdApi::PeerDisconnected { node_id, session, .. } if self.sessions.get(&node_id) == Some(&session) => {
                self.sessions.remove(&node_id);
                self.engine.peer_disconnected(now, &node_id);
            }
            PeerdApi::Message { node_id, session, msg, .. } => {
                if self.sessions.get(&node_id) != Some(&session) {
                    // A session we were not told about (lcpd started after it): adopt it.
                    if self.sessions.insert(node_id.clone(), session).is_some() {
                        self.engine.peer_disconnected(now, &node_id);
                    }
                    self.engine.peer_connected(now, &node_id);
                }
                if msg.len() < 2 {
                    return;
                }
                let t = u16::from_be_bytes([msg[0], msg[1]]);
                match LcpMessage::decode(t, &msg[2..]) {
                    Ok(m) => self.engine.on_message(now, &node_id, m),
                    Err(e) => {
                        tracing::debug!(target: TARGET, peer = %node_id, msg_type = t, "undecodable LCP message dropped: {e}")
                    }
                }
            }
            _ => {}
        }
    }

    fn on_feedback(&mut self, f: Feedback) {
        let now = now_secs();
        match f {
            Feedback::Priced(key, r, worker) => {
                if let Some(w) = worker {
                    self.quoted_by.insert(key.clone(), w);
                }
                self.engine.priced(now, &key, r);
            }
            Feedback::Invoiced(key, r) => self.engine.invoiced(now, &key, r),
            Feedback::Paid(job_id, o) => self.engine.paid(now, job_id, o),
            Feedback::LookedUp(job_id, l) => self.engine.payment_looked_up(now, job_id, l),
            Feedback::Settled(hash) => {
                self.engine.settled(now, hash);
            }
            Feedback::Peers(peers, kept) => {
                for p in peers {
                    if !self.sessions.contains_key(&p.node_id) {
                        self.sessions.insert(p.node_id.clone(), p.session);
                        self.engine.peer_connected(now, &p.node_id);
                    }
                }
                for k in kept {
                    if self.sessions.get(&k.node_id) != Some(&k.session) || k.msg.len() < 2 {
                        continue;
                    }
                    let t = u16::from_be_bytes([k.msg[0], k.msg[1]]);
                    match LcpMessage::decode(t, &k.msg[2..]) {
                        Ok(LcpMessage::Manifest(m)) => {
                            tracing::info!(target: TARGET, peer = %k.node_id, "manifest kept by peerd restored");
                            self.engine.restore_manifest(now, &k.node_id, m);
                        }
                        _ => tracing::debug!(target: TARGET, peer = %k.node_id, "kept manifest unreadable"),
                    }
                }
            }
        }
    }

    /// Carries out the engine's outputs until it has nothing more to say.
    fn flush(&mut self) {
        for _ in 0..10_000 {
            let outs = self.engine.drain();
            if outs.is_empty() {
                return;
            }
            for o in outs {
                self.execute(o);
            }
        }
        tracing::error!(target: TARGET, "the engine kept producing work; flush stopped");
    }

    fn execute(&mut self, o: Out) {
        let now = now_secs();
        match o {
            Out::Send { peer, msg } => self.send(&peer, &msg),
            Out::Price { key, spec } => self.price(key, spec),
            Out::CreateInvoice { key, amount_msat, description_hash, expiry_secs } => {
                let (bus, fb) = (self.bus.clone(), self.fb.clone());
                tokio::spawn(async move {
                    let body = Body::Payd(PaydApi::CreateInvoice { amount_msat, description_hash, expiry_secs });
                    let r = match bus.request(&ServiceId::Payd, body, SERVICE_TIMEOUT).await {
                        Ok(Body::Payd(PaydApi::Invoice { bolt11, payment_hash })) => Ok((bolt11, payment_hash)),
                        Ok(other) => Err(format!("unexpected answer {}", crate::bus::broker::body_name(&other))),
                        Err(e) => Err(e.to_string()),
                    };
                    let _ = fb.send(Feedback::Invoiced(key, r));
                });
            }
            Out::Dispatch { key, spec } => {
                let prefer = self.quoted_by.get(&key).cloned();
                let r = match self.d.submit(key.clone(), Owner::Lcp, spec, prefer.as_ref()) {
                    Ok(_) | Err(PoolError::Duplicate) => Ok(()),
                    Err(e) => Err(e.to_string()),
                };
                self.engine.dispatched(now, &key, r);
            }
            Out::CancelRun { key } => {
                self.d.cancel(&key);
                self.quoted_by.remove(&key);
            }
            Out::LoadResult { key } => {
                let r = self.store.provider_result(&key.0, &key.1).unwrap_or_else(|e| {
                    tracing::error!(target: TARGET, "result not readable: {e}");
                    None
                });
                self.engine.result_loaded(now, &key, r);
            }
            Out::SaveProvider { rec, input, result } => {
                if let Err(e) = self.store.save_provider(&rec, input.as_deref(), result.as_deref()) {
                    tracing::error!(target: TARGET, job = %hex::encode(&rec.job_id[..8]), "job record not written: {e}");
                }
                if rec.state.is_terminal() {
                    self.quoted_by.remove(&(rec.peer, rec.job_id));
                }
            }
            Out::SaveRequester { rec, input, result } => {
                if let Err(e) = self.store.save_requester(&rec, input.as_deref(), result.as_deref()) {
                    tracing::error!(target: TARGET, job = %hex::encode(&rec.job_id[..8]), "job record not written: {e}");
                }
            }
            Out::Pay { job_id, bolt11 } => {
                let (bus, fb, auto) = (self.bus.clone(), self.fb.clone(), self.auto_channel_sats);
                tokio::spawn(async move {
                    if auto > 0 {
                        ensure_devnet_channel(&bus, &bolt11, auto).await;
                    }
                    let body =
                        Body::Payd(PaydApi::Pay { bolt11, max_fee_msat: MAX_FEE_MSAT, timeout_secs: PAY_TIMEOUT_SECS });
                    let wait = Duration::from_secs(u64::from(PAY_TIMEOUT_SECS) + 10);
                    let o = match bus.request(&ServiceId::Payd, body, wait).await {
                        Ok(Body::Payd(PaydApi::Paid { preimage, .. })) => PayOutcome::Paid(preimage),
                        Ok(Body::Payd(PaydApi::PaymentStranded { reason, .. })) => PayOutcome::Stranded(reason),
                        Ok(other) => {
                            PayOutcome::Unknown(format!("unexpected answer {}", crate::bus::broker::body_name(&other)))
                        }
                        Err(BusError::Remote(e))
                            if matches!(e.code, ErrorCode::FailedPrecondition | ErrorCode::InvalidArgument) =>
                        {
                            PayOutcome::Failed(e.message)
                        }
                        Err(e) => PayOutcome::Unknown(e.to_string()),
                    };
                    let _ = fb.send(Feedback::Paid(job_id, o));
                });
            }
            Out::LookupPayment { job_id, payment_hash } => {
                let (bus, fb) = (self.bus.clone(), self.fb.clone());
                tokio::spawn(async move {
                    let body = Body::Payd(PaydApi::LookupPayment { payment_hash });
                    let l = match bus.request(&ServiceId::Payd, body, LOOKUP_TIMEOUT).await {
                        Ok(Body::Payd(PaydApi::PaymentInfo(row))) => payment_lookup(payment_hash, row),
                        Ok(other) => PaymentLookup::Unknown(format!(
                            "unexpected answer {}",
                            crate::bus::broker::body_name(&other)
                        )),
                        Err(e) => PaymentLookup::Unknown(e.to_string()),
                    };
                    let _ = fb.send(Feedback::LookedUp(job_id, l));
                });
            }
            Out::Notify { job_id, notice } => self.notify(job_id, notice),
            Out::Reconnect { peer, reason } => {
                let Some(&session) = self.sessions.get(&peer) else { return };
                let ev = PeerdApi::Reconnect { node_id: peer.clone(), session, reason };
                if let Err(e) = self.bus.send_event(&ServiceId::Peerd, Body::Peerd(ev)) {
                    tracing::warn!(target: TARGET, %peer, "connection cycle not asked of peerd: {e}");
                }
            }
        }
    }

    fn send(&self, peer: &str, msg: &LcpMessage) {
        let Some(&session) = self.sessions.get(peer) else {
            tracing::debug!(target: TARGET, %peer, "{} not sent: peer not connected", msg.name());
            return;
        };
        let bytes = match msg.encode() {
            Ok((t, payload)) => {
                let mut b = Vec::with_capacity(payload.len() + 2);
                b.extend_from_slice(&t.to_be_bytes());
                b.extend_from_slice(&payload);
                b
            }
            Err(e) => {
                tracing::error!(target: TARGET, "{} does not encode: {e}", msg.name());
                return;
            }
        };
        let ev = PeerdApi::Send { node_id: peer.to_string(), session, msg: bytes };
        if let Err(e) = self.bus.send_event(&ServiceId::Peerd, Body::Peerd(ev)) {
            tracing::warn!(target: TARGET, %peer, "{} not handed to peerd: {e}", msg.name());
        }
    }

    fn price(&mut self, key: PKey, spec: JobSpec) {
        let need = Need { task_kind: spec.task_kind.clone(), model: spec.model.clone() };
        let Some(worker) = self.d.pool().candidates(&need).into_iter().next() else {
            let msg = format!("no worker serves {} with model {}", need.task_kind, need.model.unwrap_or_default());
            self.engine.priced(now_secs(), &key, Err((2, msg)));
            return;
        };
        let (bus, fb) = (self.bus.clone(), self.fb.clone());
        tokio::spawn(async move {
            let r = match bus.request(&worker, Body::Jobd(JobdApi::Quote(spec)), SERVICE_TIMEOUT).await {
                Ok(Body::Jobd(JobdApi::Priced { price_msat })) => Ok(price_msat),
                Ok(Body::Jobd(JobdApi::Refused { lcp_code, message })) => Err((lcp_code, message)),
                Ok(other) => Err((7, format!("worker answered {}", crate::bus::broker::body_name(&other)))),
                Err(e) => Err((7, format!("worker unavailable: {e}"))),
            };
            let _ = fb.send(Feedback::Priced(key, r, Some(worker)));
        });
    }

    fn notify(&mut self, job_id: [u8; 32], notice: Notice) {
        match notice {
            Notice::Quoted => {
                if let Some((to, id)) = self.quote_waiters.remove(&job_id) {
                    let row = self.engine.requester_job(&job_id).map(|r| QuoteRow {
                        peer: r.peer.clone(),
                        job_id,
                        price_msat: r.price_msat,
                        quote_expiry: r.quote_expiry,
                        terms_hash: r.terms_hash,
                        payment_request: r.bolt11.clone(),
                        payment_hash: r.payment_hash,
                    });
                    let answer = row
                        .map(|r| Body::Lcpd(LcpdApi::Quote(r)))
                        .ok_or_else(|| RemoteError::new(ErrorCode::Internal, "quoted job vanished"));
                    self.reply(&to, id, answer);
                }
            }
            Notice::QuoteFailed { kind, message } => {
                if let Some((to, id)) = self.quote_waiters.remove(&job_id) {
                    self.reply(&to, id, Err(RemoteError::new(fail_code(kind), message)));
                }
            }
            Notice::Paid { preimage } => {
                let (hash, price) =
                    self.engine.requester_job(&job_id).map(|r| (r.payment_hash, r.price_msat)).unwrap_or_default();
                self.event(job_id, JobEvent::Paid { payment_hash: hash, preimage, price_msat: price });
            }
            Notice::Begin { content_type, content_encoding } => {
                self.event(job_id, JobEvent::Begin { content_type, content_encoding })
            }
            Notice::Chunk(data) => self.event(job_id, JobEvent::Chunk(data)),
            Notice::End { len, sha256 } => self.event(job_id, JobEvent::End { len, sha256 }),
            Notice::Finished(o) => {
                self.event(job_id, JobEvent::Result(outcome_row(o)));
                self.subscribers.remove(&job_id);
            }
        }
    }

    fn event(&self, job_id: [u8; 32], event: JobEvent) {
        let Some(to) = self.subscribers.get(&job_id) else { return };
        if let Err(e) = self.bus.send_event(to, Body::Lcpd(LcpdApi::JobEvent { job_id, event })) {
            tracing::debug!(target: TARGET, %to, "job event not delivered: {e}");
        }
    }

    fn request(&mut self, from: ServiceId, id: u64, body: Body) {
        let now = now_secs();
        let answer = match body {
            Body::Lcpd(LcpdApi::ListWorkers) => Ok(Body::Lcpd(LcpdApi::Workers(self.d.worker_rows()))),
            Body::Lcpd(LcpdApi::RunTestJob(t)) => self.run_test_job(&from, t),
            Body::Lcpd(LcpdApi::ListLcpPeers) => {
                let rows = self
                    .engine
                    .lcp_peers()
                    .iter()
                    .map(|(id, m)| LcpPeerRow { node_id: id.clone(), manifest: manifest_row(m) })
                    .collect();
                Ok(Body::Lcpd(LcpdApi::LcpPeers(rows)))
            }
            Body::Lcpd(LcpdApi::GetLocalInfo) => Ok(Body::Lcpd(LcpdApi::LocalInfo {
                node_id: self.engine.node_id().to_string(),
                manifest: manifest_row(&self.engine.manifest()),
            })),
            Body::Lcpd(LcpdApi::RequestQuote(args)) => match self.engine.request_quote(now, args) {
                Ok(job_id) => {
                    self.quote_waiters.insert(job_id, (from, id));
                    return;
                }
                Err(e) => Err(req_err(e)),
            },
            Body::Lcpd(LcpdApi::Execute { job_id, max_price_msat, timeout_secs }) => {
                return self.execute_job(from, id, job_id, max_price_msat, timeout_secs);
            }
            Body::Lcpd(LcpdApi::CancelJob { job_id, reason }) => {
                self.engine.cancel(now, job_id, reason).map(|()| Body::Lcpd(LcpdApi::Done)).map_err(req_err)
            }
            Body::Lcpd(LcpdApi::ListJobs { limit }) => self.list_jobs(limit.clamp(1, 10_000)),
            Body::Lcpd(LcpdApi::GetJob { job_id, with_result }) => self.get_job(job_id, with_result),
            other => Err(RemoteError::new(
                ErrorCode::Unimplemented,
                format!("lcpd does not implement {}", crate::bus::broker::body_name(&other)),
            )),
        };
        self.reply(&from, id, answer);
    }

    fn execute_job(
        &mut self,
        from: ServiceId,
        id: u64,
        job_id: [u8; 32],
        max_price_msat: Option<u64>,
        timeout_secs: Option<u32>,
    ) {
        let now = now_secs();
        let stored = match self.engine.requester_job(&job_id) {
            Some(_) => None,
            None => self.store.requester_job(&job_id).ok().flatten(),
        };
        let accepted = match stored {
            Some(r) if r.state == RequesterState::Done => Ok(Accepted::AlreadyFinished(RequesterState::Done)),
            Some(r) => Err(RemoteError::new(ErrorCode::FailedPrecondition, format!("job {}", r.state.as_str()))),
            None => self.engine.accept(now, job_id, max_price_msat).map_err(req_err),
        };
        match accepted {
            Ok(Accepted::AlreadyFinished(_)) => {
                self.reply(&from, id, Ok(Body::Lcpd(LcpdApi::Executing { job_id })));
                self.replay_result(&from, job_id);
            }
            Ok(_) => {
                let secs = timeout_secs.map_or(self.engine.config().default_deadline_secs, u64::from).max(1);
                self.engine.set_deadline(&job_id, now, secs);
                self.subscribers.insert(job_id, from.clone());
                self.reply(&from, id, Ok(Body::Lcpd(LcpdApi::Executing { job_id })));
            }
            Err(e) => self.reply(&from, id, Err(e)),
        }
    }

    /// Sends a stored result to a client as events.
    fn replay_result(&self, to: &ServiceId, job_id: [u8; 32]) {
        let rec = self.store.requester_job(&job_id).ok().flatten();
        let result = self.store.requester_result(&job_id).ok().flatten();
        let (Some(rec), Some(data)) = (rec, result) else {
            let ev = JobEvent::Result(JobOutcomeRow::Failed {
                lcp_code: None,
                message: "stored result missing".into(),
                nothing_paid: false,
            });
            let _ = self.bus.send_event(to, Body::Lcpd(LcpdApi::JobEvent { job_id, event: ev }));
            return;
        };
        let ct = rec.result_content_type.clone().unwrap_or_else(|| JSON_CONTENT_TYPE.into());
        let sha256 = rec.result_hash.unwrap_or_default();
        let mut events = vec![JobEvent::Begin { content_type: ct.clone(), content_encoding: "identity".into() }];
        events.extend(data.chunks(REPLAY_CHUNK).map(|c| JobEvent::Chunk(c.to_vec())));
        events.push(JobEvent::End { len: data.len() as u64, sha256 });
        events.push(JobEvent::Result(JobOutcomeRow::Ok { content_type: ct, len: data.len() as u64, sha256 }));
        for event in events {
            if self.bus.send_event(to, Body::Lcpd(LcpdApi::JobEvent { job_id, event })).is_err() {
                return;
            }
        }
    }

    fn list_jobs(&self, limit: u32) -> Result<Body, RemoteError> {
        let e = |e: JobStoreError| RemoteError::from_err(&e);
        let mut rows: Vec<JobRow> = self.store.provider_jobs(limit).map_err(e)?.iter().map(provider_row).collect();
        rows.extend(self.store.requester_jobs(limit).map_err(e)?.iter().map(requester_row));
        for r in self.engine.requester_jobs() {
            if !rows.iter().any(|x| x.role == JobRole::Requester && x.job_id == r.job_id) {
                rows.push(requester_row(&r));
            }
        }
        rows.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        Ok(Body::Lcpd(LcpdApi::Jobs(rows)))
    }

    fn get_job(&self, job_id: [u8; 32], with_result: bool) -> Result<Body, RemoteError> {
        let e = |e: JobStoreError| RemoteError::from_err(&e);
        let mut rows: Vec<JobRow> = self.store.provider_job(&job_id).map_err(e)?.iter().map(provider_row).collect();
        match self.engine.requester_job(&job_id) {
            Some(r) => rows.push(requester_row(r)),
            None => rows.extend(self.store.requester_job(&job_id).map_err(e)?.as_ref().map(requester_row)),
        }
        if rows.is_empty() {
            return Err(RemoteError::new(ErrorCode::NotFound, "no such job"));
        }
        let result = if with_result {
            match self.store.requester_result(&job_id).map_err(e)? {
                Some(r) => Some(r),
                None => match rows.iter().find(|r| r.role == JobRole::Provider) {
                    Some(p) => self.store.provider_result(&p.peer, &job_id).map_err(e)?,
                    None => None,
                },
            }
        } else {
            None
        };
        Ok(Body::Lcpd(LcpdApi::Job { rows, result }))
    }

    /// A test job from an operator's client: run on a worker without LCP or payment.
    fn run_test_job(&mut self, from: &ServiceId, t: TestJob) -> Result<Body, RemoteError> {
        if !matches!(from, ServiceId::Client(_)) {
            return Err(RemoteError::new(ErrorCode::PermissionDenied, "test jobs are for clients"));
        }
        let job_id: [u8; 32] = rand::random();
        let spec = JobSpec {
            job_id,
            task_kind: t.task_kind,
            model: Some(t.model),
            params: Vec::new(),
            input: t.input,
            input_content_type: JSON_CONTENT_TYPE.into(),
            max_output_bytes: None,
        };
        let key = (format!("test:{from}"), job_id);
        let queued = self
            .d
            .submit(key, Owner::Client { id: from.clone(), job_id }, spec, None)
            .map_err(|e| RemoteError::from_err(&e))?;
        Ok(Body::Lcpd(LcpdApi::JobAccepted { job_id, queued }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: PaymentState, preimage: Option<[u8; 32]>, failure: Option<&str>) -> PaymentRow {
        PaymentRow {
            payment_hash: [1; 32],
            bolt11: "lnbcrt1".into(),
            amount_msat: 5,
            payee: "02aa".into(),
            state,
            preimage,
            fee_msat: None,
            failure: failure.map(String::from),
            created_at: 1,
            updated_at: 1,
        }
    }

    #[test]
    fn payd_records_map_to_lookup_outcomes() {
        let h = [1; 32];
        assert_eq!(
            payment_lookup(h, Some(row(PaymentState::Succeeded, Some([9; 32]), None))),
            PaymentLookup::Paid([9; 32])
        );
        assert_eq!(payment_lookup(h, Some(row(PaymentState::Pending, None, None))), PaymentLookup::Pending);
        assert_eq!(
            payment_lookup(h, Some(row(PaymentState::Failed, None, Some("no route")))),
            PaymentLookup::NotPaid("no route".into())
        );
        assert_eq!(payment_lookup(h, None), PaymentLookup::NoRecord);
        assert_eq!(
            payment_lookup(h, Some(row(PaymentState::Stranded, None, Some("channel closed")))),
            PaymentLookup::Stranded("channel closed".into())
        );
        // Answers that cannot settle it keep the question open.
        assert!(matches!(payment_lookup(h, Some(row(PaymentState::Succeeded, None, None))), PaymentLookup::Unknown(_)));
        assert!(matches!(
            payment_lookup([2; 32], Some(row(PaymentState::Failed, None, None))),
            PaymentLookup::Unknown(_)
        ));
    }
}
