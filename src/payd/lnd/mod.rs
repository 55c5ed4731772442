//! The lnd backend: [`PaymentBackend`] over lnd's REST API.
//!
//! Every request carries the macaroon (`Grpc-Metadata-macaroon`, hex) and TLS trusts exactly
//! lnd's certificate file ([`rest`]). Calls, as lnd documents them ([`wire`]):
//! - identity and network: `GET /v1/getinfo` (at start; the network must match payd's);
//! - invoices: `POST /v1/invoices` with `description_hash`; the returned BOLT11 is decoded and
//!   checked (payee, amount, hash) before it is recorded and returned;
//! - settlement: `GET /v1/invoices/subscribe` (a stream of invoices); until the stream has
//!   delivered its first message, and whenever it is down, open invoices are polled with
//!   `GET /v2/invoices/lookup` every `poll_interval`; lookups refresh open invoices too;
//! - paying: `GET /v1/payreq/{bolt11}` (lnd must decode the invoice as we do), `GET /v1/channels`
//!   (capacity), then `POST /v2/router/send` (fee limit, timeout, a stream of `Payment`);
//! - after a restart, or when a stream breaks: `GET /v2/router/track/{hash}`.
//!
//! Records (payd's own SQLite file, `lnd.sqlite`) follow the same rules as the embedded engine:
//! an invoice is recorded before it is returned, a payment attempt before it is sent; an attempt
//! lnd never started (no connection, or lnd refused it and does not know the payment) is
//! forgotten, so nothing is recorded for a payment that was not made. lnd refuses a second
//! payment for a hash it knows, so a payment is never sent twice.

pub mod rest;
pub mod wire;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::Method;
use lightning::bitcoin::secp256k1::PublicKey;
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::lnd::{Identity, IdentityError, LndConnection, SetupError};
use crate::payd::backend::{
    check_before_pay, decode_bolt11, BoxFuture, ChannelBalance, CreatedInvoice, DecodedInvoice, InvoiceRecord,
    InvoiceStatus, Network, PaidInvoice, PayParams, PaydError, PaydEvent, PaymentBackend, PaymentRecord, PaymentStatus,
};
use crate::payd::ldk::Store;
use rest::{LineStream, LndRest, RestError};
use wire::{b64_32, b64_encode, url_escape, CODE_ALREADY_EXISTS, CODE_NOT_FOUND};

/// Default interval of the settlement poll (while the subscription is not live).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);
/// File name of the backend's records inside payd's state directory.
pub const DB_FILE: &str = "lnd.sqlite";
/// Longest wait between two attempts to reach lnd again while tracking a payment.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Configuration of the lnd backend.
#[derive(Clone, Debug)]
pub struct LndConfig {
    /// The network; lnd must run on it. Devnet is refused (it is the embedded engine's).
    pub network: Network,
    /// How to reach lnd (shared with peerd's lnd transport). The macaroon needs
    /// invoices:read/write, offchain:read/write and info:read.
    pub conn: LndConnection,
    /// Directory of payd's records (created if missing).
    pub state_dir: PathBuf,
    /// Interval of the settlement poll.
    pub poll_interval: Duration,
}

use crate::clock::now_secs;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A REST failure as a backend error: no answer is "unavailable", an answer is a refusal.
fn backend_err(op: &'static str, e: RestError) -> PaydError {
    match e {
        RestError::Connect { .. } | RestError::Transport { .. } => {
            PaydError::BackendUnavailable { reason: e.to_string() }
        }
        RestError::Status { .. } | RestError::Decode { .. } => PaydError::BackendRefused { op, reason: e.to_string() },
    }
}

/// A payment attempt that never reached lnd's router, for the callers waiting on it.
#[derive(Clone, Debug)]
struct NotSent {
    hash: [u8; 32],
    /// lnd could not be reached (else: lnd refused the payment).
    unavailable: bool,
    reason: String,
}

impl NotSent {
    fn error(&self) -> PaydError {
        if self.unavailable {
            PaydError::BackendUnavailable { reason: self.reason.clone() }
        } else {
            PaydError::PaymentFailed { payment_hash: hex::encode(self.hash), reason: self.reason.clone() }
        }
    }
}

/// How a payment's follower task begins.
#[derive(Clone, Debug)]
enum Start {
    /// Send it: `POST /v2/router/send`.
    Send(SendArgs),
    /// Ask lnd first; send it if lnd does not know it (recorded but never sent).
    Resume(SendArgs),
    /// Only follow it (after a restart); leave it pending if lnd does not know it.
    Track,
}

#[derive(Clone, Debug)]
struct SendArgs {
    bolt11: String,
    max_fee_msat: u64,
    timeout: Duration,
}

/// How following one payment stream ended.
enum Followed {
    /// Nothing more to do: the final state is recorded (or the attempt was forgotten).
    Done,
    /// lnd does not know the payment (it never started it).
    Unknown,
    /// lnd answered with an error before any payment state.
    Refused(wire::Status),
    /// lnd could not be reached.
    Unreachable(String),
    /// The stream ended or broke without a final state.
    Broken(String),
}

struct Inner {
    rest: LndRest,
    node_id: PublicKey,
    network: Network,
    store: Mutex<Store>,
    events: broadcast::Sender<PaydEvent>,
    not_sent: broadcast::Sender<NotSent>,
    pay_lock: tokio::sync::Mutex<()>,
    /// Payments with a follower task.
    followed: Mutex<HashSet<[u8; 32]>>,
    poll_interval: Duration,
    request_timeout: Duration,
    shutdown: CancellationToken,
}

/// The lnd backend (see the module documentation).
pub struct LndBackend {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LndBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LndBackend")
            .field("rest", &self.inner.rest)
            .field("node_id", &self.inner.node_id)
            .field("network", &self.inner.network)
            .finish_non_exhaustive()
    }
}

impl Drop for LndBackend {
    fn drop(&mut self) {
        self.inner.shutdown.cancel();
    }
}

/// Builds the REST client from the configuration: reads the certificate and macaroon files.
pub fn client(config: &LndConfig) -> Result<LndRest, PaydError> {
    config.conn.client().map_err(|e| match e {
        SetupError::Io { path, source } => PaydError::Io { path, source },
        SetupError::Invalid { field, reason } => PaydError::InvalidArgument { field, reason },
    })
}

impl LndBackend {
    /// Connects to lnd (`GET /v1/getinfo`), checks its network, opens the records and starts
    /// the settlement watcher and a follower for every pending payment.
    ///
    /// Fails with [`PaydError::BackendUnavailable`] when lnd cannot be reached (or its certificate
    /// is not the pinned one); the caller may try again.
    pub async fn start(config: LndConfig) -> Result<Arc<LndBackend>, PaydError> {
        if config.network == Network::Devnet {
            return Err(PaydError::InvalidArgument {
                field: "network",
                reason: "the lnd backend does not run on devnet (devnet is the embedded engine only)".into(),
            });
        }
        let rest = client(&config)?;
        let Identity { node_id, synced_to_chain } =
            crate::lnd::identity(&rest, config.network).await.map_err(|e| match e {
                IdentityError::Rest(e) => backend_err("getinfo", e),
                IdentityError::Refused(reason) => PaydError::BackendRefused { op: "getinfo", reason },
            })?;
        if !synced_to_chain {
            tracing::warn!(target: "payd::lnd", "lnd is not synced to the chain yet");
        }
        std::fs::create_dir_all(&config.state_dir)
            .map_err(|source| PaydError::Io { path: config.state_dir.display().to_string(), source })?;
        let store = Store::open(&config.state_dir.join(DB_FILE))?;
        let pending: Vec<[u8; 32]> = store
            .payments()?
            .into_iter()
            .filter(|p| p.status == PaymentStatus::Pending)
            .map(|p| p.payment_hash)
            .collect();
        let inner = Arc::new(Inner {
            rest,
            node_id,
            network: config.network,
            store: Mutex::new(store),
            events: broadcast::channel(crate::payd::ldk::EVENT_CAPACITY).0,
            not_sent: broadcast::channel(crate::payd::ldk::EVENT_CAPACITY).0,
            pay_lock: tokio::sync::Mutex::new(()),
            followed: Mutex::new(HashSet::new()),
            poll_interval: config.poll_interval,
            request_timeout: config.conn.request_timeout,
            shutdown: CancellationToken::new(),
        });
        tracing::info!(target: "payd::lnd", url = %inner.rest.base(), node_id = %node_id, pending = pending.len(), "connected to lnd");
        tokio::spawn(watch_invoices(inner.clone()));
        for hash in pending {
            inner.follow(hash, Start::Track);
        }
        Ok(Arc::new(LndBackend { inner }))
    }

    /// Stops the settlement watcher and every follower.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    async fn pay_inner(&self, bolt11: String, params: PayParams) -> Result<PaidInvoice, PaydError> {
        let inner = &self.inner;
        if inner.shutdown.is_cancelled() {
            return Err(PaydError::BackendUnavailable { reason: "the lnd backend was shut down".into() });
        }
        let invoice = decode_bolt11(&bolt11)?;
        let hash = invoice.payment_hash;
        let recorded = lock(&inner.store).payment(&hash)?.is_some();
        check_before_pay(&invoice, params.expected.as_ref(), inner.network, recorded, now_secs())?;
        let amount = invoice.amount_msat.ok_or(PaydError::MissingAmount)?;
        let deadline = tokio::time::Instant::now() + params.timeout;
        let mut events = inner.events.subscribe();
        let mut not_sent = inner.not_sent.subscribe();
        let args =
            SendArgs { bolt11: invoice.bolt11.clone(), max_fee_msat: params.max_fee_msat, timeout: params.timeout };
        {
            let _g = inner.pay_lock.lock().await;
            let existing = lock(&inner.store).payment(&hash)?;
            match existing {
                Some(rec) if rec.status == PaymentStatus::Succeeded => return paid_from(&rec),
                Some(rec) if rec.status == PaymentStatus::Failed => return Err(failed_from(&rec)),
                Some(_) => inner.follow(hash, Start::Resume(args)),
                None => {
                    inner.cross_check(&invoice).await?;
                    inner.capacity_check(amount).await?;
                    lock(&inner.store).insert_pending_payment(&PaymentRecord::pending(&invoice, amount, now_secs()))?;
                    inner.follow(hash, Start::Send(args));
                }
            }
        }
        let wait = async {
            loop {
                match lock(&inner.store).payment(&hash)? {
                    Some(rec) if rec.status == PaymentStatus::Succeeded => return paid_from(&rec),
                    Some(rec) if rec.status == PaymentStatus::Failed => return Err(failed_from(&rec)),
                    // Pending, or forgotten because it never reached lnd's router (the reason
                    // comes on `not_sent`, subscribed before the attempt).
                    Some(_) | None => {}
                }
                tokio::select! {
                    ev = events.recv() => match ev {
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => {
                            return Err(PaydError::BackendUnavailable { reason: "backend stopped".into() })
                        }
                    },
                    n = not_sent.recv() => match n {
                        Ok(n) if n.hash == hash => return Err(n.error()),
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => {
                            return Err(PaydError::BackendUnavailable { reason: "backend stopped".into() })
                        }
                    },
                }
            }
        };
        tokio::time::timeout_at(deadline, wait)
            .await
            .map_err(|_| PaydError::Timeout { payment_hash: hex::encode(hash), after: params.timeout })?
    }
}

fn paid_from(rec: &PaymentRecord) -> Result<PaidInvoice, PaydError> {
    let preimage = rec.preimage.ok_or_else(|| PaydError::CorruptState {
        what: format!("payment {}", hex::encode(rec.payment_hash)),
        reason: "succeeded without a preimage".into(),
    })?;
    Ok(PaidInvoice {
        payment_hash: rec.payment_hash,
        preimage,
        amount_msat: rec.amount_msat,
        fee_msat: rec.fee_msat.unwrap_or(0),
    })
}

fn failed_from(rec: &PaymentRecord) -> PaydError {
    PaydError::PaymentFailed {
        payment_hash: hex::encode(rec.payment_hash),
        reason: rec.failure.clone().unwrap_or_else(|| "unknown".into()),
    }
}

fn invoice_path(hash: &[u8; 32]) -> String {
    format!("/v2/invoices/lookup?payment_hash={}", url_escape(&b64_encode(hash, true)))
}

fn track_path(hash: &[u8; 32]) -> String {
    format!("/v2/router/track/{}?no_inflight_updates=true", url_escape(&b64_encode(hash, true)))
}

impl Inner {
    /// lnd must read the invoice as we do (and be reachable) before anything is recorded.
    async fn cross_check(&self, invoice: &DecodedInvoice) -> Result<(), PaydError> {
        let path = format!("/v1/payreq/{}", url_escape(&invoice.bolt11));
        let d: wire::PayReq = self.rest.call(Method::GET, &path, None).await.map_err(|e| match e {
            RestError::Status { status, .. } => {
                PaydError::InvalidInvoice { reason: format!("lnd cannot decode it: {}", status.message) }
            }
            other => backend_err("decodepayreq", other),
        })?;
        let mut differs = Vec::new();
        if !d.destination.eq_ignore_ascii_case(&hex::encode(invoice.payee.serialize())) {
            differs.push(format!("destination {}", d.destination));
        }
        if !d.payment_hash.eq_ignore_ascii_case(&hex::encode(invoice.payment_hash)) {
            differs.push(format!("payment_hash {}", d.payment_hash));
        }
        if Some(d.num_msat) != invoice.amount_msat {
            differs.push(format!("num_msat {}", d.num_msat));
        }
        let dh = invoice.description_hash.map(hex::encode).unwrap_or_default();
        if !d.description_hash.eq_ignore_ascii_case(&dh) {
            differs.push(format!("description_hash {:?}", d.description_hash));
        }
        if !differs.is_empty() {
            return Err(PaydError::InvalidInvoice {
                reason: format!("lnd decodes it differently: {}", differs.join(", ")),
            });
        }
        Ok(())
    }

    async fn channels(&self) -> Result<Vec<wire::Channel>, PaydError> {
        let list: wire::ListChannels =
            self.rest.call(Method::GET, "/v1/channels", None).await.map_err(|e| backend_err("listchannels", e))?;
        Ok(list.channels)
    }

    /// Refuses, before anything is recorded, what no channel of ours can carry.
    async fn capacity_check(&self, amount_msat: u64) -> Result<(), PaydError> {
        let active: Vec<_> = self.channels().await?.into_iter().filter(|c| c.active).collect();
        if active.is_empty() {
            return Err(PaydError::NoChannel { peer: None });
        }
        let available: u64 = active.iter().map(spendable_msat).sum();
        if available < amount_msat {
            return Err(PaydError::InsufficientCapacity { needed_msat: amount_msat, available_msat: available });
        }
        Ok(())
    }

    /// Refreshes an invoice from lnd; records (and reports once) its settlement.
    async fn refresh_invoice(&self, hash: [u8; 32]) -> Result<(), PaydError> {
        let inv: wire::Invoice = self
            .rest
            .call(Method::GET, &invoice_path(&hash), None)
            .await
            .map_err(|e| backend_err("lookupinvoice", e))?;
        self.on_invoice(hash, &inv);
        Ok(())
    }

    fn on_invoice(&self, hash: [u8; 32], inv: &wire::Invoice) {
        if inv.state != "SETTLED" {
            return;
        }
        let at = if inv.settle_date > 0 { inv.settle_date } else { now_secs() };
        match lock(&self.store).settle_invoice(&hash, inv.amt_paid_msat, at) {
            Ok(true) => {
                tracing::info!(target: "payd::lnd", payment_hash = %hex::encode(hash), amount_msat = inv.amt_paid_msat, "invoice settled");
                let _ =
                    self.events.send(PaydEvent::InvoiceSettled { payment_hash: hash, amount_msat: inv.amt_paid_msat });
            }
            Ok(false) => {}
            Err(e) => tracing::error!(target: "payd::lnd", "cannot record a settlement: {e}"),
        }
    }

    /// One pass over our open invoices.
    async fn poll_open(&self) {
        let open: Vec<[u8; 32]> = match lock(&self.store).invoices(now_secs()) {
            Ok(v) => v.into_iter().filter(|i| i.status == InvoiceStatus::Open).map(|i| i.payment_hash).collect(),
            Err(e) => {
                tracing::error!(target: "payd::lnd", "cannot list invoices: {e}");
                return;
            }
        };
        for hash in open {
            if let Err(e) = self.refresh_invoice(hash).await {
                tracing::debug!(target: "payd::lnd", payment_hash = %hex::encode(hash), "poll: {e}");
                return;
            }
        }
    }

    /// Starts the follower task of a payment unless one runs.
    fn follow(self: &Arc<Self>, hash: [u8; 32], start: Start) {
        if !lock(&self.followed).insert(hash) {
            return;
        }
        let inner = self.clone();
        tokio::spawn(async move {
            inner.drive(hash, start).await;
            lock(&inner.followed).remove(&hash);
        });
    }

    fn forget(&self, hash: [u8; 32], unavailable: bool, reason: String) {
        match lock(&self.store).forget_unsent_payment(&hash) {
            Ok(_) => {
                tracing::info!(target: "payd::lnd", payment_hash = %hex::encode(hash), "payment not sent: {reason}");
                let _ = self.not_sent.send(NotSent { hash, unavailable, reason });
            }
            Err(e) => tracing::error!(target: "payd::lnd", "cannot forget an unsent payment: {e}"),
        }
    }

    async fn drive(&self, hash: [u8; 32], start: Start) {
        let shutdown = self.shutdown.clone();
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = self.drive_inner(hash, start) => {}
        }
    }

    async fn drive_inner(&self, hash: [u8; 32], start: Start) {
        let first = match start {
            Start::Send(args) => self.send(hash, &args).await,
            Start::Resume(args) => match self.track(hash, Some(self.request_timeout)).await {
                // Recorded but never reached lnd (a crash in between): send it now.
                Followed::Unknown => self.send(hash, &args).await,
                Followed::Unreachable(reason) => {
                    // Still pending, for a later call or restart; the caller learns why.
                    let _ = self.not_sent.send(NotSent { hash, unavailable: true, reason });
                    return;
                }
                other => other,
            },
            Start::Track => Followed::Broken("resuming after a restart".into()),
        };
        match first {
            Followed::Done => return,
            Followed::Refused(status) if status.code != CODE_ALREADY_EXISTS => {
                // lnd refused before any payment state: if it does not know the payment, it never
                // sent it.
                match self.track(hash, Some(self.request_timeout)).await {
                    Followed::Unknown => {
                        return self.forget(hash, false, format!("lnd refused it: {}", status.message))
                    }
                    Followed::Done => return,
                    _ => {}
                }
            }
            _ => {}
        }
        self.track_until_final(hash).await;
    }

    /// `POST /v2/router/send` and read its stream.
    async fn send(&self, hash: [u8; 32], args: &SendArgs) -> Followed {
        let body = serde_json::to_value(wire::SendPayment {
            payment_request: args.bolt11.clone(),
            timeout_seconds: i32::try_from(args.timeout.as_secs().max(1)).unwrap_or(i32::MAX),
            fee_limit_msat: args.max_fee_msat.to_string(),
            no_inflight_updates: true,
        })
        .unwrap_or_default();
        // The head may come only with the final state: allow the router's timeout and a margin.
        let wait = args.timeout + self.request_timeout;
        match self.rest.stream(Method::POST, "/v2/router/send", Some(&body), Some(wait)).await {
            Ok(s) => self.read_payment(hash, s).await,
            Err(e @ RestError::Connect { .. }) => {
                self.forget(hash, true, e.to_string());
                Followed::Done
            }
            Err(RestError::Status { status, .. }) => Followed::Refused(status),
            Err(e) => Followed::Broken(e.to_string()),
        }
    }

    /// `GET /v2/router/track/{hash}` and read its stream.
    async fn track(&self, hash: [u8; 32], wait: Option<Duration>) -> Followed {
        match self.rest.stream(Method::GET, &track_path(&hash), None, wait).await {
            Ok(s) => self.read_payment(hash, s).await,
            Err(RestError::Status { status, .. }) if status.code == CODE_NOT_FOUND => Followed::Unknown,
            Err(RestError::Status { status, .. }) => Followed::Refused(status),
            Err(e @ RestError::Connect { .. }) => Followed::Unreachable(e.to_string()),
            Err(e) => Followed::Broken(e.to_string()),
        }
    }

    /// Reads `Payment` states until a final one, and records it.
    async fn read_payment(&self, hash: [u8; 32], mut s: LineStream) -> Followed {
        let mut seen = false;
        loop {
            match s.next::<wire::Payment>().await {
                Ok(Some(line)) => {
                    if let Some(p) = line.result {
                        seen = true;
                        if self.record_payment(hash, &p) {
                            return Followed::Done;
                        }
                    } else if let Some(e) = line.error {
                        return match (seen, e.code) {
                            (true, _) => Followed::Broken(e.message),
                            (false, CODE_NOT_FOUND) => Followed::Unknown,
                            (false, _) => Followed::Refused(e),
                        };
                    }
                }
                Ok(None) => return Followed::Broken("stream ended without a final state".into()),
                Err(e) => return Followed::Broken(e.to_string()),
            }
        }
    }

    /// Records a final payment state; `false` for a state that is not final (or not usable).
    fn record_payment(&self, hash: [u8; 32], p: &wire::Payment) -> bool {
        let now = now_secs();
        match p.status.as_str() {
            "SUCCEEDED" => {
                let preimage: Option<[u8; 32]> = hex::decode(&p.payment_preimage).ok().and_then(|b| b.try_into().ok());
                let Some(preimage) = preimage.filter(|pre| <[u8; 32]>::from(Sha256::digest(pre)) == hash) else {
                    tracing::error!(target: "payd::lnd", payment_hash = %hex::encode(hash), "lnd reported success without a valid preimage");
                    return false;
                };
                match lock(&self.store).payment_succeeded(&hash, &preimage, p.fee_msat, now) {
                    Ok(true) => {
                        let _ = self.events.send(PaydEvent::PaymentSucceeded { payment_hash: hash, preimage });
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(target: "payd::lnd", "cannot record a payment: {e}");
                        return false;
                    }
                }
                true
            }
            "FAILED" => {
                let reason = if p.failure_reason.is_empty() { "FAILED".to_string() } else { p.failure_reason.clone() };
                match lock(&self.store).payment_failed(&hash, &reason, now) {
                    Ok(true) => {
                        let _ = self.events.send(PaydEvent::PaymentFailed { payment_hash: hash, reason });
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(target: "payd::lnd", "cannot record a payment: {e}");
                        return false;
                    }
                }
                true
            }
            _ => false,
        }
    }

    /// Tracks until a final state, reconnecting with backoff.
    async fn track_until_final(&self, hash: [u8; 32]) {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.track(hash, None).await {
                Followed::Done => return,
                Followed::Unknown => return self.unknown_to_lnd(hash),
                Followed::Refused(e) => tracing::debug!(target: "payd::lnd", "track: {}", e.message),
                Followed::Unreachable(why) | Followed::Broken(why) => {
                    tracing::debug!(target: "payd::lnd", payment_hash = %hex::encode(hash), "track: {why}")
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn unknown_to_lnd(&self, hash: [u8; 32]) {
        // lnd never started it: it stays pending until `pay` is called again for it, which sends it.
        tracing::warn!(target: "payd::lnd", payment_hash = %hex::encode(hash), "recorded payment unknown to lnd; pay it again to send it");
    }
}

fn spendable_msat(c: &wire::Channel) -> u64 {
    let reserve = c.local_constraints.as_ref().map(|r| r.chan_reserve_sat).unwrap_or(0);
    c.local_balance.saturating_sub(reserve).saturating_mul(1000)
}

fn receivable_msat(c: &wire::Channel) -> u64 {
    let reserve = c.remote_constraints.as_ref().map(|r| r.chan_reserve_sat).unwrap_or(0);
    c.remote_balance.saturating_sub(reserve).saturating_mul(1000)
}

/// Follows lnd's invoice subscription; polls open invoices while it is not known to be live.
async fn watch_invoices(inner: Arc<Inner>) {
    let shutdown = inner.shutdown.clone();
    loop {
        let sub = inner.rest.stream(Method::GET, "/v1/invoices/subscribe", None, None);
        tokio::pin!(sub);
        // The subscription may answer only with its first invoice: poll until then.
        let opened = loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = &mut sub => break r,
                _ = tokio::time::sleep(inner.poll_interval) => inner.poll_open().await,
            }
        };
        match opened {
            Ok(mut s) => {
                let mut live = false;
                loop {
                    let line = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        l = s.next::<wire::Invoice>() => l,
                    };
                    match line {
                        Ok(Some(line)) => {
                            if let Some(inv) = line.result {
                                if let Some(hash) = b64_32(&inv.r_hash) {
                                    inner.on_invoice(hash, &inv);
                                }
                                if !live {
                                    // lnd has the subscription now: catch up once on what
                                    // settled before it.
                                    live = true;
                                    inner.poll_open().await;
                                }
                            } else if let Some(e) = line.error {
                                tracing::warn!(target: "payd::lnd", "invoice subscription: {}", e.message);
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::debug!(target: "payd::lnd", "invoice subscription: {e}");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(target: "payd::lnd", "invoice subscription: {e}"),
        }
        inner.poll_open().await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(inner.poll_interval) => {}
        }
    }
}

impl PaymentBackend for LndBackend {
    fn node_id(&self) -> PublicKey {
        self.inner.node_id
    }

    fn network(&self) -> Network {
        self.inner.network
    }

    fn create_invoice(
        &self,
        amount_msat: u64,
        description_hash: [u8; 32],
        expiry_secs: u32,
    ) -> BoxFuture<'_, Result<CreatedInvoice, PaydError>> {
        Box::pin(async move {
            if amount_msat == 0 {
                return Err(PaydError::InvalidArgument {
                    field: "amount_msat",
                    reason: "must be greater than zero (amount-less invoices are not issued)".into(),
                });
            }
            if expiry_secs == 0 {
                return Err(PaydError::InvalidArgument {
                    field: "expiry_secs",
                    reason: "must be greater than zero".into(),
                });
            }
            let req = wire::AddInvoice {
                value_msat: amount_msat.to_string(),
                description_hash: b64_encode(&description_hash, false),
                expiry: expiry_secs.to_string(),
                private: true,
            };
            let body = serde_json::to_value(req).unwrap_or_default();
            let added: wire::AddInvoiceResponse = self
                .inner
                .rest
                .call(Method::POST, "/v1/invoices", Some(&body))
                .await
                .map_err(|e| backend_err("addinvoice", e))?;
            let d = decode_bolt11(&added.payment_request)?;
            let refused = |reason: String| PaydError::BackendRefused { op: "addinvoice", reason };
            if d.payee != self.inner.node_id {
                return Err(refused(format!("invoice payee {} is not lnd's node id", d.payee)));
            }
            if d.amount_msat != Some(amount_msat) || d.description_hash != Some(description_hash) {
                return Err(refused("the invoice does not carry the requested amount and description hash".into()));
            }
            if b64_32(&added.r_hash) != Some(d.payment_hash) {
                return Err(refused("r_hash differs from the invoice's payment hash".into()));
            }
            lock(&self.inner.store).insert_invoice(&InvoiceRecord {
                payment_hash: d.payment_hash,
                bolt11: added.payment_request.clone(),
                amount_msat,
                description_hash,
                created_at: d.timestamp_secs,
                expires_at: d.expires_at_secs(),
                status: InvoiceStatus::Open,
                amount_received_msat: None,
                settled_at: None,
            })?;
            Ok(CreatedInvoice {
                bolt11: added.payment_request,
                payment_hash: d.payment_hash,
                expires_at_secs: d.expires_at_secs(),
            })
        })
    }

    fn lookup_invoice(&self, payment_hash: [u8; 32]) -> BoxFuture<'_, Result<Option<InvoiceRecord>, PaydError>> {
        Box::pin(async move {
            let rec = lock(&self.inner.store).invoice(&payment_hash, now_secs())?;
            if matches!(&rec, Some(r) if r.status == InvoiceStatus::Open) {
                if let Err(e) = self.inner.refresh_invoice(payment_hash).await {
                    // The record stands; settlement is also caught by the watcher.
                    tracing::debug!(target: "payd::lnd", "lookup: {e}");
                }
                return lock(&self.inner.store).invoice(&payment_hash, now_secs());
            }
            Ok(rec)
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<PaydEvent> {
        self.inner.events.subscribe()
    }

    fn pay(&self, bolt11: String, params: PayParams) -> BoxFuture<'_, Result<PaidInvoice, PaydError>> {
        Box::pin(self.pay_inner(bolt11, params))
    }

    fn list_payments(&self) -> BoxFuture<'_, Result<Vec<PaymentRecord>, PaydError>> {
        Box::pin(async move { lock(&self.inner.store).payments() })
    }

    fn lookup_payment(&self, payment_hash: [u8; 32]) -> BoxFuture<'_, Result<Option<PaymentRecord>, PaydError>> {
        Box::pin(async move { lock(&self.inner.store).payment(&payment_hash) })
    }

    fn list_invoices(&self) -> BoxFuture<'_, Result<Vec<InvoiceRecord>, PaydError>> {
        Box::pin(async move { lock(&self.inner.store).invoices(now_secs()) })
    }

    fn channel_balance(&self) -> BoxFuture<'_, Result<ChannelBalance, PaydError>> {
        Box::pin(async move {
            let mut b = ChannelBalance::default();
            for c in self.inner.channels().await? {
                b.channels += 1;
                b.usable_channels += u32::from(c.active);
                b.outbound_msat = b.outbound_msat.saturating_add(spendable_msat(&c));
                b.inbound_msat = b.inbound_msat.saturating_add(receivable_msat(&c));
            }
            Ok(b)
        })
    }
}
