//! The requester side (section 4.2 of the protocol notes): quote_request and input stream to a
//! peer; the quote checked (terms_hash recomputed; the invoice's description hash, payee,
//! amount, expiry and network; the caller's price ceiling) before anything is paid; payment
//! through payd; the result stream reassembled and checked (length, hash, content type and
//! encoding, stream id), its bytes handed to the caller as they arrive; our own deadline.
//!
//! Reference quirks handled: a failure after payment may come as `lcp_error` instead of
//! `lcp_result(failed)` (both end the job); a provider may stop silently (our deadline ends the
//! job, and `lcp_cancel` tells the provider to stop); cancel does not wait for
//! `lcp_result(cancelled)`; `lcp_result` may come before or after `stream_end`.
//!
//! A result may be delivered more than once (the provider re-sends a stored result on a new
//! stream when a requester that restarted or reconnected asks again, and the first delivery may
//! still be on its way). Each `lcp_result(ok)` is paired with its own stream by
//! `result_stream_id`, and the first pair that verifies is the result; a delivery that does not
//! verify (cut short, a chunk lost, a mismatch) is dropped while another may still come. The job
//! fails only when every delivery expected has come and none verified (or at the deadline).
//! Deliveries expected: one for the payment, one more for every time the job asks again. On a
//! link, a stream's `stream_begin` comes before its `lcp_result`, so a result naming a stream
//! that has not begun ends its delivery unverified.

use super::records::{RequesterRecord, RequesterState};
use super::{Engine, FailKind, Notice, Out, Outcome};
pub use crate::bus::api::lcpd::QuoteArgs;
use crate::bus::ErrorCode as BusCode;
use crate::payd::backend::{check_invoice, decode_bolt11, ExpectedInvoice};
use crate::wire::lcp::{
    v02, Cancel, ChunkSplitter, ErrorCode, LcpError, LcpMessage, LcpResult, Params, QuoteRequest, QuoteResponse,
    ReassembledStream, Reassembler, ReassemblyLimits, ResultOk, ResultOutcome, StreamBegin, StreamChunk, StreamEnd,
    StreamKind, Terms,
};
use lightning::bitcoin::secp256k1::PublicKey;
use sha2::{Digest, Sha256};

/// Why a requester call was refused; nothing was sent or paid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ReqError {
    /// Bus code.
    pub code: BusCode,
    /// One line.
    pub message: String,
}

impl ReqError {
    fn new(code: BusCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// What [`Engine::accept`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// The payment was handed to payd.
    Paying,
    /// Paid before; the result is awaited.
    AlreadyPaid,
    /// Finished before; the outcome is in the record.
    AlreadyFinished(RequesterState),
}

/// The outcome of a payment attempt, fed back with [`Engine::paid`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayOutcome {
    /// Paid: the preimage.
    Paid([u8; 32]),
    /// Failed for good; nothing was paid.
    Failed(String),
    /// Not known yet (timeout, payd unreachable): tried again later, never paid twice.
    Unknown(String),
    /// payd ended it without an outcome: its HTLC is stranded on a channel closed by force that
    /// nothing will resolve (devnet has no chain). The job fails, not as "nothing paid".
    Stranded(String),
}

/// What payd's record says of a payment, fed back with [`Engine::payment_looked_up`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentLookup {
    /// It succeeded: the preimage.
    Paid([u8; 32]),
    /// payd recorded it as failed for good: nothing was paid.
    NotPaid(String),
    /// payd has no record of it. Nothing was paid, unless a `Pay` lcpd sent is still on its way
    /// to payd: that counts only once [`LOOKUP_ABSENT_GRACE_SECS`] passed since the last one.
    NoRecord,
    /// Still in flight.
    Pending,
    /// payd did not answer.
    Unknown(String),
    /// payd's record says stranded (see [`PayOutcome::Stranded`]).
    Stranded(String),
}

/// First wait before asking payd again about a payment whose outcome is unknown; it doubles up to
/// [`LOOKUP_MAX_SECS`].
pub const LOOKUP_FIRST_SECS: u64 = 5;
/// Longest wait between two lookups of the same payment.
pub const LOOKUP_MAX_SECS: u64 = 300;
/// How long after lcpd last asked payd to pay a "no record" answer still may mean "not yet"
/// (a `Pay` that timed out at lcpd may reach a slow payd later).
pub const LOOKUP_ABSENT_GRACE_SECS: u64 = 600;

/// Most result streams of one job held at a time (in progress or complete, awaiting their
/// `lcp_result` or the payment): a bound on memory against a provider that opens many.
pub const MAX_RESULT_STREAMS: usize = 4;
/// Most deliveries of one job remembered as ended (their stream ids), so a late message of one
/// is not counted twice.
const MAX_ENDED_DELIVERIES: usize = 64;

/// The result deliveries of a paid (or paying) job: streams and `lcp_result(ok)`s, paired by
/// stream id.
#[derive(Debug, Default)]
struct Deliveries {
    /// Streams in progress.
    open: Vec<Reassembler>,
    /// Complete streams (length and hash checked), awaiting their `lcp_result`.
    complete: Vec<ReassembledStream>,
    /// `lcp_result(ok)`s whose stream is in `open` or `complete`.
    results: Vec<ResultOk>,
    /// Stream ids of deliveries that ended unverified or whose `lcp_result` came.
    ended: Vec<[u8; 32]>,
    /// How many deliveries ended (`ended.len()`, not bounded).
    ended_count: u32,
    /// How many deliveries may come: one for the payment, one per request sent again.
    expected: u32,
    /// The stream whose bytes go to the caller as they arrive.
    forwarded: Option<[u8; 32]>,
    /// Why the last delivery that ended unverified did not verify.
    problem: Option<(ErrorCode, String)>,
}

impl Deliveries {
    fn knows(&self, id: &[u8; 32]) -> bool {
        self.open.iter().any(|s| s.stream_id() == *id)
            || self.complete.iter().any(|s| s.stream_id == *id)
            || self.ended.contains(id)
    }

    /// Whether a complete stream and its `lcp_result` agree.
    fn has_verified(&self) -> bool {
        self.complete
            .iter()
            .any(|s| self.results.iter().any(|r| r.result_stream_id == s.stream_id && result_problem(s, r).is_none()))
    }

    /// Counts the delivery of stream `id` as ended (once).
    fn end(&mut self, id: [u8; 32]) {
        if self.ended.contains(&id) {
            return;
        }
        if self.ended.len() < MAX_ENDED_DELIVERIES {
            self.ended.push(id);
        }
        self.ended_count = self.ended_count.saturating_add(1);
    }

    /// The delivery of stream `id` ended unverified: everything of it goes.
    fn drop_unverified(&mut self, id: [u8; 32], code: ErrorCode, message: String) {
        self.open.retain(|s| s.stream_id() != id);
        self.complete.retain(|s| s.stream_id != id);
        self.results.retain(|r| r.result_stream_id != id);
        if self.forwarded == Some(id) {
            self.forwarded = None;
        }
        self.end(id);
        self.problem = Some((code, message));
    }

    /// The first complete stream whose `lcp_result` names it and agrees with it; pairs that
    /// disagree are dropped.
    fn verified(&mut self) -> Option<usize> {
        loop {
            let pair = self.complete.iter().enumerate().find_map(|(i, s)| {
                self.results.iter().find(|r| r.result_stream_id == s.stream_id).map(|r| (i, result_problem(s, r)))
            });
            match pair {
                None => return None,
                Some((i, None)) => return Some(i),
                Some((i, Some(p))) => {
                    let id = self.complete[i].stream_id;
                    self.drop_unverified(id, ErrorCode::ChecksumMismatch, p.to_string());
                }
            }
        }
    }

    /// No delivery that may still come can verify: every delivery expected ended and nothing
    /// is in progress.
    fn hopeless(&self) -> bool {
        self.open.is_empty() && self.ended_count > 0 && self.ended_count >= self.expected
    }

    /// One more delivery may come (the job asks again).
    fn expect_one_more(&mut self) {
        self.expected = self.expected.saturating_add(1);
    }

    /// A lost connection cuts the streams in progress (their rest never comes).
    fn cut(&mut self) {
        let ids: Vec<[u8; 32]> = self.open.iter().map(|s| s.stream_id()).collect();
        self.open.clear();
        self.results.retain(|r| !ids.contains(&r.result_stream_id));
        if self.forwarded.is_some_and(|f| ids.contains(&f)) {
            self.forwarded = None;
        }
    }
}

/// Why a complete stream and the `lcp_result` naming it disagree.
fn result_problem(stream: &ReassembledStream, ok: &ResultOk) -> Option<&'static str> {
    if stream.sha256 != ok.result_hash {
        Some("result_hash does not match the stream")
    } else if stream.data.len() as u64 != ok.result_len {
        Some("result_len does not match the stream")
    } else if stream.content_type != ok.result_content_type {
        Some("result_content_type does not match the stream")
    } else if stream.content_encoding != ok.result_content_encoding {
        Some("result_content_encoding does not match the stream")
    } else if stream.stream_id != ok.result_stream_id {
        Some("result_stream_id does not match the stream")
    } else {
        None
    }
}

/// A requester job in memory.
#[derive(Debug)]
pub struct RJob {
    /// What is (or will be) stored.
    pub rec: RequesterRecord,
    input: Vec<u8>,
    deadline: u64,
    deliveries: Deliveries,
    /// Once the result has begun, each of its chunks moves the deadline to this many seconds
    /// later (0: the default deadline), so that a long result that keeps flowing is not cut.
    silence_secs: u64,
    pay_in_flight: bool,
    /// When lcpd last asked payd to pay (since this process started).
    last_pay_at: u64,
    /// A [`Out::LookupPayment`] waits for its answer.
    lookup_in_flight: bool,
    /// When to look the payment up next, and the wait after that.
    next_lookup: u64,
    lookup_backoff: u64,
    resend_on_ready: bool,
    persisted: bool,
    finished_at: Option<u64>,
}

impl RJob {
    /// A job in memory for a record, with nothing in flight; `persisted` says whether the
    /// record (with its input) is stored already.
    fn from_record(rec: RequesterRecord, input: Vec<u8>, deadline: u64, persisted: bool) -> Self {
        Self {
            rec,
            input,
            deadline,
            deliveries: Deliveries::default(),
            silence_secs: 0,
            pay_in_flight: false,
            last_pay_at: 0,
            lookup_in_flight: false,
            next_lookup: 0,
            lookup_backoff: LOOKUP_FIRST_SECS,
            resend_on_ready: false,
            persisted,
            finished_at: None,
        }
    }
}

fn fail_kind(code: ErrorCode) -> FailKind {
    match code {
        ErrorCode::PayloadTooLarge | ErrorCode::RateLimited => FailKind::ResourceExhausted,
        ErrorCode::Unknown(_) => FailKind::Internal,
        _ => FailKind::FailedPrecondition,
    }
}

impl Engine {
    /// Requester jobs in memory.
    pub fn requester_jobs(&self) -> Vec<RequesterRecord> {
        let mut v: Vec<_> = self.rjobs.values().map(|j| j.rec.clone()).collect();
        v.sort_by_key(|r| r.created_at);
        v
    }

    /// One requester job in memory.
    pub fn requester_job(&self, job_id: &[u8; 32]) -> Option<&RequesterRecord> {
        self.rjobs.get(job_id).map(|j| &j.rec)
    }

    /// Sends a quote_request and the input stream to `args.peer`; the quote comes back as a
    /// [`Notice::Quoted`] (or [`Notice::QuoteFailed`]) for the returned job id.
    pub fn request_quote(&mut self, now: u64, args: QuoteArgs) -> Result<[u8; 32], ReqError> {
        let Some(remote) = self.peers.remote(&args.peer).cloned() else {
            let msg = if self.peers.is_connected(&args.peer) {
                // Only a new connection makes a peer on the reference's rules send it again.
                let cycling = self.cycle_without_manifest(now, &args.peer, "a quote was asked for");
                let then =
                    if cycling { "; its connection is being cycled to exchange manifests, try again" } else { "" };
                format!("peer {} has not sent its LCP manifest{then}", args.peer)
            } else {
                format!("peer {} is not connected", args.peer)
            };
            return Err(ReqError::new(BusCode::FailedPrecondition, msg));
        };
        if remote.protocol_version != v02::PROTOCOL_VERSION {
            let msg =
                format!("peer speaks LCP protocol_version {}, not {}", remote.protocol_version, v02::PROTOCOL_VERSION);
            return Err(ReqError::new(BusCode::FailedPrecondition, msg));
        }
        if args.task_kind.is_empty() {
            return Err(ReqError::new(BusCode::InvalidArgument, "task kind is empty"));
        }
        let content_type = args.input_content_type.clone().unwrap_or_else(|| super::provider::CONTENT_TYPE_JSON.into());
        let params = match &args.model {
            Some(m) if m.is_empty() => return Err(ReqError::new(BusCode::InvalidArgument, "model is empty")),
            Some(m) => Some(
                Params::with_model(m.clone())
                    .encode()
                    .map_err(|e| ReqError::new(BusCode::InvalidArgument, e.to_string()))?,
            ),
            None => None,
        };
        if args.task_kind == v02::TASK_OPENAI_CHAT || args.task_kind == v02::TASK_OPENAI_RESPONSES {
            let model = args.model.clone().ok_or_else(|| ReqError::new(BusCode::InvalidArgument, "model required"))?;
            crate::jobd::pricing::validate_request_json(&args.task_kind, &model, &args.input)
                .map_err(|e| ReqError::new(BusCode::InvalidArgument, e.to_string()))?;
        }
        let len = args.input.len() as u64;
        if len > remote.max_stream_bytes || len > remote.max_job_bytes {
            let msg = format!(
                "input of {len} bytes exceeds the peer's limits (max_stream_bytes {}, max_job_bytes {})",
                remote.max_stream_bytes, remote.max_job_bytes
            );
            return Err(ReqError::new(BusCode::ResourceExhausted, msg));
        }
        let mut job_id = self.random32();
        while self.rjobs.contains_key(&job_id) {
            job_id = self.random32();
        }
        let deadline = now.saturating_add(args.timeout_secs.map_or(self.cfg.default_deadline_secs, u64::from).max(1));
        let job = RJob::from_record(
            RequesterRecord {
                peer: args.peer.clone(),
                job_id,
                state: RequesterState::Requested,
                task_kind: args.task_kind.clone(),
                params,
                model: args.model.clone(),
                input_content_type: content_type,
                input_len: len,
                max_price_msat: args.max_price_msat,
                price_msat: 0,
                quote_expiry: 0,
                terms_hash: [0; 32],
                bolt11: String::new(),
                payment_hash: [0; 32],
                preimage: None,
                payment_unresolved: false,
                result_content_type: None,
                result_len: None,
                result_hash: None,
                error: None,
                created_at: now,
                updated_at: now,
            },
            args.input,
            deadline,
            false,
        );
        let msgs = self.request_messages(now, &job, remote.max_payload_bytes)?;
        for m in msgs {
            self.send(&args.peer, m);
        }
        self.rjobs.insert(job_id, job);
        Ok(job_id)
    }

    /// quote_request, stream_begin, chunks, stream_end for a job, checked against the peer's
    /// max_payload_bytes.
    fn request_messages(&mut self, now: u64, job: &RJob, max_payload: u32) -> Result<Vec<LcpMessage>, ReqError> {
        let expiry = now.saturating_add(self.cfg.request_ttl_secs);
        let (pv, job_id) = (v02::PROTOCOL_VERSION, job.rec.job_id);
        let mut out = vec![self.quote_request_message(expiry, job, max_payload)?];
        let stream_id = self.random32();
        let sha256: [u8; 32] = Sha256::digest(&job.input).into();
        let begin = StreamBegin {
            envelope: self.envelope(pv, job_id, expiry),
            stream_id,
            stream_kind: StreamKind::Input,
            total_len: Some(job.input.len() as u64),
            sha256: Some(sha256),
            content_type: job.rec.input_content_type.clone(),
            content_encoding: v02::CONTENT_ENCODING_IDENTITY.into(),
            extra: Vec::new(),
        };
        out.push(LcpMessage::StreamBegin(begin));
        let mut splitter = ChunkSplitter::new(pv, job_id, expiry, stream_id, max_payload)
            .map_err(|e| ReqError::new(BusCode::ResourceExhausted, e.to_string()))?;
        for c in splitter.split(&job.input) {
            out.push(LcpMessage::StreamChunk(c.map_err(|e| ReqError::new(BusCode::ResourceExhausted, e.to_string()))?));
        }
        let (total_len, sha256) = splitter.finish();
        let envelope = self.envelope(pv, job_id, expiry);
        out.push(LcpMessage::StreamEnd(StreamEnd { envelope, stream_id, total_len, sha256, extra: Vec::new() }));
        Ok(out)
    }

    /// The job's quote_request, checked against the peer's max_payload_bytes.
    fn quote_request_message(&mut self, expiry: u64, job: &RJob, max_payload: u32) -> Result<LcpMessage, ReqError> {
        let q = QuoteRequest {
            envelope: self.envelope(v02::PROTOCOL_VERSION, job.rec.job_id, expiry),
            task_kind: job.rec.task_kind.clone(),
            params: job.rec.params.clone(),
            extra: Vec::new(),
        };
        let size = q.encode().map_err(|e| ReqError::new(BusCode::InvalidArgument, e.to_string()))?.len();
        if size > max_payload as usize {
            let msg = format!("quote_request of {size} bytes exceeds the peer's max_payload_bytes {max_payload}");
            return Err(ReqError::new(BusCode::ResourceExhausted, msg));
        }
        Ok(LcpMessage::QuoteRequest(q))
    }

    fn save_requester(&mut self, job: &mut RJob, now: u64, result: Option<Vec<u8>>) {
        job.rec.updated_at = now;
        if job.rec.state.is_terminal() && job.finished_at.is_none() {
            job.finished_at = Some(now);
        }
        let input = (!job.persisted).then(|| job.input.clone());
        job.persisted = true;
        self.out.push(Out::SaveRequester { rec: job.rec.clone(), input, result });
    }

    fn notify(&mut self, job_id: [u8; 32], notice: Notice) {
        self.out.push(Out::Notify { job_id, notice });
    }

    /// Ends a job that had not been quoted: nothing was paid.
    fn quote_failed(&mut self, now: u64, job: &mut RJob, kind: FailKind, message: String) {
        job.rec.state = RequesterState::Failed;
        job.rec.error = Some(message.clone());
        job.finished_at = Some(now);
        job.rec.updated_at = now;
        if job.persisted {
            self.save_requester(job, now, None);
        }
        self.notify(job.rec.job_id, Notice::QuoteFailed { kind, message });
    }

    /// Ends a job that was quoted (and maybe paid).
    fn job_failed(&mut self, now: u64, job: &mut RJob, kind: FailKind, lcp_code: Option<u16>, message: String) {
        tracing::info!(target: "lcpd", peer = %job.rec.peer, job = %hex::encode(&job.rec.job_id[..8]), "job failed: {message}");
        job.rec.state = RequesterState::Failed;
        job.rec.error = Some(message.clone());
        job.deliveries = Deliveries::default();
        self.save_requester(job, now, None);
        self.notify(job.rec.job_id, Notice::Finished(Outcome::Failed { kind, lcp_code, message }));
    }

    /// Runs `f` on the requester job `job_id` of `peer`; returns whether there is one.
    fn with_rjob(&mut self, peer: &str, job_id: [u8; 32], f: impl FnOnce(&mut Self, &mut RJob)) -> bool {
        let Some(mut job) = self.rjobs.remove(&job_id) else { return false };
        if job.rec.peer != peer {
            self.rjobs.insert(job_id, job);
            return false;
        }
        f(self, &mut job);
        self.rjobs.insert(job_id, job);
        true
    }

    pub(super) fn on_quote_response(&mut self, now: u64, peer: &str, m: QuoteResponse) {
        let job_id = m.envelope.job_id;
        let known = self.with_rjob(peer, job_id, |e, job| match job.rec.state {
            RequesterState::Requested => e.check_quote(now, job, &m),
            RequesterState::Paying | RequesterState::AwaitingResult | RequesterState::Done
                if m.terms_hash != job.rec.terms_hash =>
            {
                tracing::warn!(target: "lcpd", %peer, "a repeated quote_response with other terms ignored");
            }
            _ => {}
        });
        if !known {
            tracing::debug!(target: "lcpd", %peer, "quote_response for an unknown job ignored");
        }
    }

    fn check_quote(&mut self, now: u64, job: &mut RJob, m: &QuoteResponse) {
        let terms = Terms::new(
            m.envelope.protocol_version,
            job.rec.job_id,
            m.price_msat,
            m.quote_expiry,
            &job.rec.task_kind,
            job.rec.params.as_deref(),
            &job.input,
            &job.rec.input_content_type,
            v02::CONTENT_ENCODING_IDENTITY,
        )
        .and_then(|t| t.hash());
        let fp = FailKind::FailedPrecondition;
        match terms {
            Ok(h) if h == m.terms_hash => {}
            Ok(_) => return self.quote_failed(now, job, fp, "terms_hash mismatch".into()),
            Err(e) => return self.quote_failed(now, job, fp, format!("terms: {e}")),
        }
        if let Err(msg) = self.check_invoice_for(now, job, m) {
            return self.quote_failed(now, job, fp, msg);
        }
        if let Some(max) = job.rec.max_price_msat {
            if m.price_msat > max {
                let msg = format!("price {} msat exceeds the ceiling of {max} msat", m.price_msat);
                return self.quote_failed(now, job, fp, msg);
            }
        }
        job.rec.price_msat = m.price_msat;
        job.rec.quote_expiry = m.quote_expiry;
        job.rec.terms_hash = m.terms_hash;
        job.rec.bolt11 = m.payment_request.clone();
        job.rec.state = RequesterState::Quoted;
        if let Ok(d) = decode_bolt11(&m.payment_request) {
            job.rec.payment_hash = d.payment_hash;
        }
        self.save_requester(job, now, None);
        self.notify(job.rec.job_id, Notice::Quoted);
    }

    /// The invoice checks of section 3.3: description hash == terms_hash, payee == peer,
    /// amount == price (> 0), invoice expiry within the quote expiry plus skew, not expired,
    /// our network's currency.
    fn check_invoice_for(&self, now: u64, job: &RJob, m: &QuoteResponse) -> Result<(), String> {
        if m.price_msat == 0 {
            return Err("price is zero".into());
        }
        let payee = hex::decode(&job.rec.peer)
            .ok()
            .and_then(|b| PublicKey::from_slice(&b).ok())
            .ok_or_else(|| format!("peer id {} is not a node key", job.rec.peer))?;
        let invoice = decode_bolt11(&m.payment_request).map_err(|e| format!("invoice: {e}"))?;
        let expected = ExpectedInvoice {
            amount_msat: m.price_msat,
            payee,
            description_hash: m.terms_hash,
            not_after_secs: Some(m.quote_expiry.saturating_add(self.cfg.clock_skew_secs)),
        };
        check_invoice(&invoice, Some(&expected), self.cfg.network, now).map_err(|e| format!("invoice: {e}"))
    }

    /// The caller accepts the quote: pay (after checking again that it has not expired and is
    /// within `max_price_msat`).
    pub fn accept(&mut self, now: u64, job_id: [u8; 32], max_price_msat: Option<u64>) -> Result<Accepted, ReqError> {
        let Some(mut job) = self.rjobs.remove(&job_id) else {
            return Err(ReqError::new(BusCode::NotFound, "no such job"));
        };
        let r = self.accept_inner(now, &mut job, max_price_msat);
        self.rjobs.insert(job_id, job);
        r
    }

    fn accept_inner(&mut self, now: u64, job: &mut RJob, max_price_msat: Option<u64>) -> Result<Accepted, ReqError> {
        match job.rec.state {
            RequesterState::Quoted => {}
            RequesterState::Paying | RequesterState::AwaitingResult => return Ok(Accepted::AlreadyPaid),
            RequesterState::Requested => return Err(ReqError::new(BusCode::FailedPrecondition, "no quote yet")),
            RequesterState::Done => return Ok(Accepted::AlreadyFinished(RequesterState::Done)),
            s => {
                let why = job.rec.error.clone().map(|e| format!(": {e}")).unwrap_or_default();
                return Err(ReqError::new(BusCode::FailedPrecondition, format!("job {}{why}", s.as_str())));
            }
        }
        if now >= job.rec.quote_expiry {
            job.rec.state = RequesterState::Expired;
            self.save_requester(job, now, None);
            return Err(ReqError::new(BusCode::FailedPrecondition, "quote expired"));
        }
        for max in [max_price_msat, job.rec.max_price_msat].into_iter().flatten() {
            if job.rec.price_msat > max {
                let msg = format!("price {} msat exceeds the ceiling of {max} msat", job.rec.price_msat);
                return Err(ReqError::new(BusCode::FailedPrecondition, msg));
            }
        }
        let invoice =
            decode_bolt11(&job.rec.bolt11).map_err(|e| ReqError::new(BusCode::FailedPrecondition, e.to_string()))?;
        if now >= invoice.expires_at_secs() {
            return Err(ReqError::new(BusCode::FailedPrecondition, "invoice expired"));
        }
        job.rec.state = RequesterState::Paying;
        job.rec.max_price_msat = max_price_msat.or(job.rec.max_price_msat);
        job.rec.payment_unresolved = true;
        job.pay_in_flight = true;
        job.last_pay_at = now;
        job.deliveries = Deliveries { expected: 1, ..Deliveries::default() };
        self.save_requester(job, now, None);
        self.out.push(Out::Pay { job_id: job.rec.job_id, bolt11: job.rec.bolt11.clone() });
        Ok(Accepted::Paying)
    }

    /// payd's answer to [`Out::Pay`].
    pub fn paid(&mut self, now: u64, job_id: [u8; 32], outcome: PayOutcome) {
        let Some(mut job) = self.rjobs.remove(&job_id) else { return };
        job.pay_in_flight = false;
        self.pay_outcome(now, &mut job, outcome);
        self.rjobs.insert(job_id, job);
    }

    fn pay_outcome(&mut self, now: u64, job: &mut RJob, outcome: PayOutcome) {
        let job_id = job.rec.job_id;
        match outcome {
            PayOutcome::Paid(preimage) => {
                let hash: [u8; 32] = Sha256::digest(preimage).into();
                if hash != job.rec.payment_hash {
                    tracing::error!(target: "lcpd", "payd returned a preimage that does not match the payment hash");
                    return;
                }
                if job.rec.preimage.is_some() {
                    return;
                }
                job.rec.preimage = Some(preimage);
                job.rec.payment_unresolved = false;
                if Self::awaiting(job) {
                    if job.rec.state == RequesterState::Paying {
                        job.rec.state = RequesterState::AwaitingResult;
                    }
                    self.save_requester(job, now, None);
                    self.notify(job_id, Notice::Paid { preimage });
                    self.try_complete(now, job);
                } else {
                    // The job ended (the provider's error, our deadline, a cancel) while its
                    // payment was in flight, and the payment went through: the record keeps the
                    // proof of payment.
                    tracing::warn!(target: "lcpd", job = %hex::encode(&job_id[..8]), state = job.rec.state.as_str(), "payment completed after the job ended");
                    self.save_requester(job, now, None);
                }
            }
            PayOutcome::Failed(reason) => {
                let was_unresolved = std::mem::replace(&mut job.rec.payment_unresolved, false);
                if job.rec.state == RequesterState::Paying {
                    self.job_failed(now, job, FailKind::PaymentFailed, None, format!("payment failed: {reason}"));
                } else if was_unresolved {
                    self.save_requester(job, now, None);
                }
            }
            PayOutcome::Unknown(reason) => {
                tracing::warn!(target: "lcpd", job = %hex::encode(&job_id[..8]), "payment outcome unknown, will ask again: {reason}");
            }
            PayOutcome::Stranded(reason) => {
                // Definite: nothing will tell more, so stop asking. The money may be gone, so the
                // failure is not `PaymentFailed` (which says nothing was paid).
                job.rec.payment_unresolved = false;
                tracing::warn!(target: "lcpd", job = %hex::encode(&job_id[..8]), "payment stranded: {reason}");
                if job.rec.state == RequesterState::Paying {
                    self.job_failed(
                        now,
                        job,
                        FailKind::FailedPrecondition,
                        None,
                        format!("payment stranded: {reason}"),
                    );
                } else {
                    self.save_requester(job, now, None);
                }
            }
        }
    }

    /// payd's answer to [`Out::LookupPayment`].
    pub fn payment_looked_up(&mut self, now: u64, job_id: [u8; 32], lookup: PaymentLookup) {
        let Some(mut job) = self.rjobs.remove(&job_id) else { return };
        job.lookup_in_flight = false;
        match lookup {
            PaymentLookup::Paid(preimage) => self.pay_outcome(now, &mut job, PayOutcome::Paid(preimage)),
            PaymentLookup::Stranded(reason) => self.pay_outcome(now, &mut job, PayOutcome::Stranded(reason)),
            // A payment still being asked for (`Paying`) waits for payd's answer to the Pay.
            PaymentLookup::NotPaid(reason) if job.rec.state != RequesterState::Paying => {
                tracing::info!(target: "lcpd", job = %hex::encode(&job_id[..8]), "payment of an ended job not made: {reason}");
                self.pay_outcome(now, &mut job, PayOutcome::Failed(reason));
            }
            PaymentLookup::NoRecord
                if job.rec.state != RequesterState::Paying
                    && now >= job.last_pay_at.saturating_add(LOOKUP_ABSENT_GRACE_SECS) =>
            {
                tracing::info!(target: "lcpd", job = %hex::encode(&job_id[..8]), "payment of an ended job never reached payd");
                self.pay_outcome(now, &mut job, PayOutcome::Failed("payd has no record of the payment".into()));
            }
            PaymentLookup::NotPaid(_)
            | PaymentLookup::NoRecord
            | PaymentLookup::Pending
            | PaymentLookup::Unknown(_) => {
                if let PaymentLookup::Unknown(reason) = &lookup {
                    tracing::warn!(target: "lcpd", job = %hex::encode(&job_id[..8]), "payment lookup failed, will ask again: {reason}");
                }
                job.next_lookup = now.saturating_add(job.lookup_backoff);
                job.lookup_backoff = job.lookup_backoff.saturating_mul(2).min(LOOKUP_MAX_SECS);
            }
        }
        self.rjobs.insert(job_id, job);
    }

    /// Whether the job waits for a result (paid, or paying: the provider may start as soon as the
    /// payment settles, before payd answers us).
    fn awaiting(job: &RJob) -> bool {
        matches!(job.rec.state, RequesterState::Paying | RequesterState::AwaitingResult)
    }

    pub(super) fn on_result_begin(&mut self, now: u64, peer: &str, m: StreamBegin) {
        let job_id = m.envelope.job_id;
        self.with_rjob(peer, job_id, |e, job| {
            let d = &job.deliveries;
            // A stream already held, a replayed begin, or a result in hand: nothing to add.
            if !Self::awaiting(job) || d.knows(&m.stream_id) || d.has_verified() {
                return;
            }
            if d.open.len() + d.complete.len() >= MAX_RESULT_STREAMS {
                tracing::warn!(target: "lcpd", %peer, job = %hex::encode(&job_id[..8]), "another result stream ignored: {MAX_RESULT_STREAMS} held");
                return;
            }
            let limit = e.cfg.limits.max_stream_bytes.min(e.cfg.limits.max_job_bytes.saturating_sub(job.rec.input_len));
            match Reassembler::new(&m, ReassemblyLimits::bytes(limit)) {
                Ok(r) => {
                    e.result_progress(now, job);
                    let d = &mut job.deliveries;
                    d.open.push(r);
                    if d.forwarded.is_none() {
                        d.forwarded = Some(m.stream_id);
                        let notice = Notice::Begin {
                            content_type: m.content_type.clone(),
                            content_encoding: m.content_encoding.clone(),
                        };
                        e.notify(job_id, notice);
                    }
                }
                Err(err) => e.delivery_failed(now, job, m.stream_id, err.lcp_code(), err.to_string()),
            }
        });
    }

    /// The delivery on stream `stream_id` ended unverified: it is dropped, and the job fails if
    /// no other delivery can still verify.
    fn delivery_failed(&mut self, now: u64, job: &mut RJob, stream_id: [u8; 32], code: ErrorCode, message: String) {
        tracing::info!(target: "lcpd", peer = %job.rec.peer, job = %hex::encode(&job.rec.job_id[..8]), "a result delivery did not verify: {message}");
        job.deliveries.drop_unverified(stream_id, code, message);
        self.try_complete(now, job);
    }

    /// The result moved: the deadline bounds the silence from now on, not the result's length.
    fn result_progress(&self, now: u64, job: &mut RJob) {
        let span = if job.silence_secs > 0 { job.silence_secs } else { self.cfg.default_deadline_secs };
        job.deadline = job.deadline.max(now.saturating_add(span));
    }

    /// A local stream check failed and no other delivery can verify: the job fails, and the
    /// provider hears why.
    fn stream_failed(&mut self, now: u64, job: &mut RJob, code: ErrorCode, message: String) {
        let expiry = now.saturating_add(self.cfg.request_ttl_secs);
        let envelope = self.envelope(v02::PROTOCOL_VERSION, job.rec.job_id, expiry);
        let peer = job.rec.peer.clone();
        self.send(
            &peer,
            LcpMessage::Error(LcpError { envelope, code, message: Some(message.clone()), extra: Vec::new() }),
        );
        self.job_failed(now, job, FailKind::FailedPrecondition, Some(code.code()), format!("result stream: {message}"));
    }

    /// Returns whether the chunk belonged to a requester job.
    pub(super) fn on_result_chunk(&mut self, now: u64, peer: &str, m: &StreamChunk) -> bool {
        let job_id = m.job_id;
        self.with_rjob(peer, job_id, |e, job| {
            let d = &mut job.deliveries;
            let Some(stream) = d.open.iter_mut().find(|s| s.stream_id() == m.stream_id) else { return };
            match stream.push(m) {
                Ok(crate::wire::lcp::ChunkDisposition::Appended) if d.forwarded == Some(m.stream_id) => {
                    e.result_progress(now, job);
                    e.notify(job_id, Notice::Chunk(m.data.clone()))
                }
                Ok(_) => {}
                Err(err) => e.delivery_failed(now, job, m.stream_id, err.lcp_code(), err.to_string()),
            }
        })
    }

    /// Returns whether the end belonged to a requester job.
    pub(super) fn on_result_end(&mut self, now: u64, peer: &str, m: &StreamEnd) -> bool {
        let job_id = m.envelope.job_id;
        self.with_rjob(peer, job_id, |e, job| {
            let d = &mut job.deliveries;
            let Some(i) = d.open.iter().position(|s| s.stream_id() == m.stream_id) else { return };
            let stream = d.open.remove(i);
            match stream.finish(m) {
                Ok(done) => {
                    tracing::info!(target: "lcpd", %peer, job = %hex::encode(&job_id[..8]), stream = %hex::encode(&done.stream_id[..8]), "result stream complete");
                    if d.forwarded == Some(done.stream_id) {
                        e.notify(job_id, Notice::End { len: done.data.len() as u64, sha256: done.sha256 });
                    }
                    d.complete.push(done);
                    e.try_complete(now, job);
                }
                Err(err) => e.delivery_failed(now, job, m.stream_id, err.lcp_code(), err.to_string()),
            }
        })
    }

    pub(super) fn on_result(&mut self, now: u64, peer: &str, m: LcpResult) {
        let job_id = m.envelope.job_id;
        self.with_rjob(peer, job_id, |e, job| {
            if job.rec.state.is_terminal() {
                return;
            }
            match m.outcome {
                ResultOutcome::Ok(ok) => {
                    if !Self::awaiting(job) {
                        tracing::warn!(target: "lcpd", %peer, "lcp_result(ok) for an unpaid job ignored");
                        return;
                    }
                    let d = &mut job.deliveries;
                    let id = ok.result_stream_id;
                    if d.has_verified() {
                        // Delivered again (the job asked again) after a delivery verified: the
                        // stream of this one was not taken.
                        tracing::info!(target: "lcpd", %peer, job = %hex::encode(&job_id[..8]), "a result delivered again ignored: one verified already");
                        return;
                    }
                    // A result of a delivery already ended (a repeat, or its stream failed).
                    if d.ended.contains(&id) {
                        return;
                    }
                    let held =
                        d.open.iter().any(|s| s.stream_id() == id) || d.complete.iter().any(|s| s.stream_id == id);
                    if held {
                        d.end(id);
                        d.results.push(ok);
                        e.try_complete(now, job);
                    } else {
                        // Its stream_begin would have come first: this delivery cannot verify.
                        let msg = "result_stream_id does not match the stream".to_string();
                        e.delivery_failed(now, job, id, ErrorCode::ChecksumMismatch, msg);
                    }
                }
                ResultOutcome::Failed { message } => {
                    let message = message.unwrap_or_else(|| "provider returned non-ok status".into());
                    e.job_failed(now, job, FailKind::FailedPrecondition, None, message);
                }
                ResultOutcome::Cancelled { .. } => {
                    job.rec.state = RequesterState::Cancelled;
                    job.deliveries = Deliveries::default();
                    e.save_requester(job, now, None);
                    e.notify(job_id, Notice::Finished(Outcome::Cancelled));
                }
            }
        });
    }

    /// Completes a job once it is paid and a delivery verified (its stream complete, its
    /// `lcp_result(ok)` in agreement); fails it when no delivery that may still come can verify.
    fn try_complete(&mut self, now: u64, job: &mut RJob) {
        if !Self::awaiting(job) {
            return;
        }
        let Some(i) = job.deliveries.verified() else {
            if job.deliveries.hopeless() {
                let (code, message) = job.deliveries.problem.clone().unwrap_or_else(|| {
                    (ErrorCode::ChecksumMismatch, "result_stream_id does not match the stream".to_string())
                });
                self.stream_failed(now, job, code, message);
            }
            return;
        };
        if job.rec.state != RequesterState::AwaitingResult {
            // Verified before payd answered: kept until the payment is known.
            return;
        }
        let stream = job.deliveries.complete.swap_remove(i);
        let replay = job.deliveries.forwarded != Some(stream.stream_id);
        job.deliveries = Deliveries::default();
        if replay {
            // The caller was given another stream's bytes (or none): it gets this one whole.
            let begin = Notice::Begin {
                content_type: stream.content_type.clone(),
                content_encoding: stream.content_encoding.clone(),
            };
            self.notify(job.rec.job_id, begin);
            if !stream.data.is_empty() {
                self.notify(job.rec.job_id, Notice::Chunk(stream.data.clone()));
            }
            self.notify(job.rec.job_id, Notice::End { len: stream.data.len() as u64, sha256: stream.sha256 });
        }
        job.rec.state = RequesterState::Done;
        job.rec.result_content_type = Some(stream.content_type.clone());
        job.rec.result_len = Some(stream.data.len() as u64);
        job.rec.result_hash = Some(stream.sha256);
        let outcome = Outcome::Ok {
            content_type: stream.content_type.clone(),
            len: stream.data.len() as u64,
            sha256: stream.sha256,
        };
        self.save_requester(job, now, Some(stream.data));
        self.notify(job.rec.job_id, Notice::Finished(outcome));
    }

    /// Returns whether the error belonged to a requester job (then it ends the job).
    pub(super) fn on_requester_error(&mut self, now: u64, peer: &str, m: &LcpError) -> bool {
        let job_id = m.envelope.job_id;
        self.with_rjob(peer, job_id, |e, job| {
            let message = format!("lcp_error code={}: {}", m.code.code(), m.message.as_deref().unwrap_or(""));
            let kind = fail_kind(m.code);
            match job.rec.state {
                RequesterState::Requested => e.quote_failed(now, job, kind, message),
                RequesterState::Paying | RequesterState::AwaitingResult => {
                    e.job_failed(now, job, kind, Some(m.code.code()), message)
                }
                _ => tracing::debug!(target: "lcpd", %peer, "lcp_error for a finished job ignored: {message}"),
            }
        })
    }

    /// Cancels a job: `lcp_cancel` goes to the provider; the job ends now (the reference sends
    /// no answer to a cancel).
    pub fn cancel(&mut self, now: u64, job_id: [u8; 32], reason: Option<String>) -> Result<(), ReqError> {
        let Some(mut job) = self.rjobs.remove(&job_id) else {
            return Err(ReqError::new(BusCode::NotFound, "no such job"));
        };
        if job.rec.state.is_terminal() {
            let state = job.rec.state;
            self.rjobs.insert(job_id, job);
            return Err(ReqError::new(BusCode::FailedPrecondition, format!("job already {}", state.as_str())));
        }
        let expiry = now.saturating_add(self.cfg.request_ttl_secs);
        let envelope = self.envelope(v02::PROTOCOL_VERSION, job_id, expiry);
        let peer = job.rec.peer.clone();
        // The record says why (the gateway's reason: the client went away, or its time-out).
        job.rec.error.clone_from(&reason);
        self.send(&peer, LcpMessage::Cancel(Cancel { envelope, reason, extra: Vec::new() }));
        job.rec.state = RequesterState::Cancelled;
        job.deliveries = Deliveries::default();
        if job.persisted {
            self.save_requester(&mut job, now, None);
        } else {
            job.finished_at = Some(now);
        }
        self.notify(job_id, Notice::Finished(Outcome::Cancelled));
        self.rjobs.insert(job_id, job);
        Ok(())
    }

    pub(super) fn requester_peer_gone(&mut self, peer: &str) {
        for job in self.rjobs.values_mut().filter(|j| j.rec.peer == peer) {
            if Self::awaiting(job) && !job.deliveries.has_verified() {
                job.deliveries.cut();
                if !job.resend_on_ready {
                    // Asked again once the peer is back: one more delivery may come.
                    job.resend_on_ready = true;
                    job.deliveries.expect_one_more();
                }
            }
        }
    }

    /// The peer is (back) with a manifest: ask again for the results of paid jobs that lost
    /// their connection (the provider re-sends the quote and the stored result).
    pub(super) fn requester_peer_ready(&mut self, now: u64, peer: &str) {
        let Some(max_payload) = self.peers.remote(peer).map(|m| m.max_payload_bytes) else { return };
        let ids: Vec<[u8; 32]> = self
            .rjobs
            .values()
            .filter(|j| j.rec.peer == peer && j.resend_on_ready && Self::awaiting(j))
            .map(|j| j.rec.job_id)
            .collect();
        for id in ids {
            let Some(mut job) = self.rjobs.remove(&id) else { continue };
            job.resend_on_ready = false;
            // The provider keeps every quoted job (and its input) across restarts, so the
            // quote_request alone is enough: it answers with the stored quote and, for a paid job,
            // the stored result. The input stream is not sent again (the provider would refuse it).
            let expiry = now.saturating_add(self.cfg.request_ttl_secs);
            match self.quote_request_message(expiry, &job, max_payload) {
                Ok(m) => {
                    tracing::info!(target: "lcpd", %peer, job = %hex::encode(&id[..8]), "asking the provider again for a paid result");
                    self.send(peer, m);
                }
                Err(e) => tracing::warn!(target: "lcpd", "cannot ask again: {e}"),
            }
            self.rjobs.insert(id, job);
        }
    }

    pub(super) fn requester_tick(&mut self, now: u64) {
        let ids: Vec<[u8; 32]> = self.rjobs.keys().copied().collect();
        for id in ids {
            let Some(mut job) = self.rjobs.remove(&id) else { continue };
            match job.rec.state {
                RequesterState::Requested if now >= job.deadline => {
                    let msg = "no quote from the provider before the deadline".to_string();
                    self.quote_failed(now, &mut job, FailKind::DeadlineExceeded, msg);
                }
                RequesterState::Quoted if now >= job.rec.quote_expiry => {
                    job.rec.state = RequesterState::Expired;
                    self.save_requester(&mut job, now, None);
                }
                RequesterState::Paying if !job.pay_in_flight => {
                    job.pay_in_flight = true;
                    job.last_pay_at = now;
                    self.out.push(Out::Pay { job_id: id, bolt11: job.rec.bolt11.clone() });
                }
                RequesterState::AwaitingResult if now >= job.deadline => match job.deliveries.problem.take() {
                    // A delivery came and did not verify; the one asked for again did not come.
                    Some((code, message)) => self.stream_failed(now, &mut job, code, message),
                    None => {
                        let msg = if job.deliveries.forwarded.is_some() {
                            "the provider's result stopped before the deadline"
                        } else {
                            "no result from the provider before the deadline"
                        };
                        // The provider is told, so that it stops working (and its record says why).
                        let expiry = now.saturating_add(self.cfg.request_ttl_secs);
                        let envelope = self.envelope(v02::PROTOCOL_VERSION, id, expiry);
                        let reason = Some("deadline exceeded".to_string());
                        self.send(&job.rec.peer, LcpMessage::Cancel(Cancel { envelope, reason, extra: Vec::new() }));
                        self.job_failed(now, &mut job, FailKind::DeadlineExceeded, None, msg.to_string());
                    }
                },
                // The job ended while its payment's outcome was unknown: payd's record says.
                s if s.is_terminal()
                    && job.rec.payment_unresolved
                    && !job.pay_in_flight
                    && !job.lookup_in_flight
                    && now >= job.next_lookup =>
                {
                    job.lookup_in_flight = true;
                    self.out.push(Out::LookupPayment { job_id: id, payment_hash: job.rec.payment_hash });
                }
                s if s.is_terminal()
                    && !job.rec.payment_unresolved
                    && job.finished_at.is_some_and(|t| now > t.saturating_add(self.cfg.keep_finished_secs)) =>
                {
                    continue;
                }
                _ => {}
            }
            self.rjobs.insert(id, job);
        }
    }

    /// Gives a job `secs` from `now` for its result to begin, and as much again after each
    /// result chunk (a caller that accepts a quote gives the execution its own time).
    pub fn set_deadline(&mut self, job_id: &[u8; 32], now: u64, secs: u64) {
        if let Some(j) = self.rjobs.get_mut(job_id) {
            j.deadline = now.saturating_add(secs);
            j.silence_secs = secs;
        }
    }

    /// Puts a stored requester job back after a restart: a payment in flight is asked for
    /// again (payd pays at most once per payment hash); a paid job asks the provider again for
    /// its result when the provider is connected; an ended job whose payment's outcome is unknown
    /// is looked up at payd on the next tick.
    pub fn restore_requester(&mut self, now: u64, rec: RequesterRecord, input: Vec<u8>) {
        let id = rec.job_id;
        let mut job = RJob::from_record(rec, input, now.saturating_add(self.cfg.default_deadline_secs), true);
        match job.rec.state {
            RequesterState::Requested => return,
            RequesterState::Paying | RequesterState::AwaitingResult => {
                if job.rec.state == RequesterState::Paying {
                    job.pay_in_flight = true;
                    job.last_pay_at = now;
                    self.out.push(Out::Pay { job_id: id, bolt11: job.rec.bolt11.clone() });
                }
                // The delivery the previous process awaited may still arrive, and the job asks
                // again once the provider is connected: two deliveries may come.
                job.resend_on_ready = true;
                job.deliveries.expected = 2;
            }
            s if s.is_terminal() => {
                job.finished_at = Some(job.rec.updated_at);
                // A Pay of the previous process may still be on its way to payd.
                job.last_pay_at = now;
            }
            _ => {}
        }
        self.rjobs.insert(id, job);
    }
}
