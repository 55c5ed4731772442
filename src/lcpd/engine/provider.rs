//! The provider side (section 4.3 of the protocol notes): quote_request and input stream,
//! validated in the reference's order with its error codes; price from a worker; invoice from
//! payd with description_hash = terms_hash; quote_response; on settlement, dispatch to a worker;
//! result stream (JSON results buffered and sent with total_len and sha256, SSE results sent as
//! they arrive); lcp_result.
//!
//! Where this side differs from the reference, on purpose: a cancel is answered with
//! `lcp_result(cancelled)` (the spec's SHOULD); a second input stream_begin while one is in
//! progress is refused with invalid_state (the spec's MUST; the reference replaces the stream);
//! task templates are checked against our own offers (the reference checks the requester's);
//! a repeated quote_request for a paid job re-sends the quote and then the stored result, even
//! after the quote expired (that is how a requester that lost a result asks for it again).

use super::records::{ProviderRecord, ProviderState};
use super::replay::Verdict;
use super::{Engine, Out, PKey};
use crate::bus::api::jobd::{JobSpec, OutputItem};
use crate::wire::lcp::{
    v02, Cancel, ChunkSplitter, ErrorCode, LcpError, LcpMessage, LcpResult, Params, QuoteRequest, QuoteResponse,
    Reassembler, ReassemblyLimits, ResultOk, ResultOutcome, StreamBegin, StreamChunk, StreamEnd, StreamKind, Terms,
};
use sha2::{Digest, Sha256};

/// Content type of OpenAI-kind inputs and JSON results.
pub const CONTENT_TYPE_JSON: &str = "application/json; charset=utf-8";
/// Content type prefix of streamed (SSE) results.
pub const CONTENT_TYPE_SSE_PREFIX: &str = "text/event-stream";

/// How long the input stream of a job whose quote_request we refused is dropped silently.
pub const REFUSED_TTL_SECS: u64 = 600;
/// Refused jobs remembered at most (the oldest are forgotten first).
pub const REFUSED_MAX: usize = 4096;

/// Jobs whose quote_request we refused, with when. The requester sends its input stream right
/// after the quote_request, before our refusal can reach it; answering each of those messages
/// too ("no quote_request for job", "no input stream for job") buries the real reason, which the
/// reference's requester then reports in its place. So a refusal is said once.
#[derive(Debug, Default)]
pub struct Refused {
    at: std::collections::HashMap<PKey, u64>,
    order: std::collections::VecDeque<(u64, PKey)>,
}

impl Refused {
    fn note(&mut self, now: u64, key: PKey) {
        if self.at.insert(key.clone(), now).is_none() {
            self.order.push_back((now, key));
        }
        while self.order.len() > REFUSED_MAX {
            if let Some((_, k)) = self.order.pop_front() {
                self.at.remove(&k);
            }
        }
    }

    fn contains(&self, now: u64, key: &PKey) -> bool {
        self.at.get(key).is_some_and(|at| now <= at.saturating_add(REFUSED_TTL_SECS))
    }

    fn prune(&mut self, now: u64) {
        while let Some((at, _)) = self.order.front() {
            if now <= at.saturating_add(REFUSED_TTL_SECS) {
                break;
            }
            if let Some((_, k)) = self.order.pop_front() {
                self.at.remove(&k);
            }
        }
    }
}

/// A provider job in memory.
#[derive(Debug)]
pub struct PJob {
    /// What is (or will be) stored.
    pub rec: ProviderRecord,
    /// Envelope expiry of the quote_request (errors about the job reuse it).
    req_expiry: u64,
    /// The input stream being received.
    input_stream: Option<Reassembler>,
    /// The complete input (kept until the job is dispatched for good).
    input: Option<Vec<u8>>,
    /// Result bytes received from the worker (or loaded back from the store).
    result: Vec<u8>,
    /// Whether `result` holds the whole result.
    result_in_memory: bool,
    /// Live SSE stream: splitter, stream id, envelope expiry.
    live: Option<(ChunkSplitter, [u8; 32], u64)>,
    /// The live stream's `stream_begin`, held until its first bytes: until then nothing of the
    /// result has reached the peer, so a run lost with its worker can start again unseen.
    begin_pending: Option<StreamBegin>,
    /// The peer went away during a live stream: deliver again from the store.
    broken: bool,
    /// A dispatch must be (re)tried.
    dispatch_pending: bool,
    /// When the job reached a terminal state.
    finished_at: Option<u64>,
}

fn is_openai_kind(kind: &str) -> bool {
    kind == v02::TASK_OPENAI_CHAT || kind == v02::TASK_OPENAI_RESPONSES
}

impl PJob {
    fn new(peer: &str, m: &QuoteRequest, model: Option<String>, now: u64) -> Self {
        Self::from_record(
            ProviderRecord {
                peer: peer.to_string(),
                job_id: m.envelope.job_id,
                state: ProviderState::AwaitingInput,
                protocol_version: m.envelope.protocol_version,
                task_kind: m.task_kind.clone(),
                params: m.params.clone(),
                model,
                input_content_type: String::new(),
                input_content_encoding: String::new(),
                input_len: 0,
                price_msat: 0,
                quote_expiry: 0,
                terms_hash: [0; 32],
                bolt11: String::new(),
                payment_hash: [0; 32],
                quote_response: Vec::new(),
                result_content_type: None,
                result_len: None,
                result_hash: None,
                error: None,
                created_at: now,
                updated_at: now,
            },
            m.envelope.expiry,
            None,
        )
    }

    /// A job in memory for a record, with nothing in flight.
    fn from_record(rec: ProviderRecord, req_expiry: u64, input: Option<Vec<u8>>) -> Self {
        Self {
            rec,
            req_expiry,
            input_stream: None,
            input,
            result: Vec::new(),
            result_in_memory: false,
            live: None,
            begin_pending: None,
            broken: false,
            dispatch_pending: false,
            finished_at: None,
        }
    }

    fn key(&self) -> PKey {
        (self.rec.peer.clone(), self.rec.job_id)
    }

    fn spec(&self, max_output_bytes: Option<u64>) -> JobSpec {
        JobSpec {
            job_id: self.rec.job_id,
            task_kind: self.rec.task_kind.clone(),
            model: self.rec.model.clone(),
            params: self.rec.params.clone().unwrap_or_default(),
            input: self.input.clone().unwrap_or_default(),
            input_content_type: self.rec.input_content_type.clone(),
            max_output_bytes,
        }
    }
}

impl Engine {
    /// Provider jobs in memory (recent and unfinished ones).
    pub fn provider_jobs(&self) -> Vec<ProviderRecord> {
        let mut v: Vec<_> = self.pjobs.values().map(|j| j.rec.clone()).collect();
        v.sort_by_key(|r| r.created_at);
        v
    }

    /// Jobs that count against `max_inflight_jobs`: quoted and unexpired, paid, running.
    fn provider_inflight(&self, now: u64) -> usize {
        self.pjobs
            .values()
            .filter(|j| match j.rec.state {
                ProviderState::Pricing | ProviderState::Invoicing => true,
                ProviderState::Quoted => j.rec.quote_expiry >= now,
                ProviderState::Paid | ProviderState::Running | ProviderState::Streaming => true,
                _ => false,
            })
            .count()
    }

    fn provider_error(&mut self, peer: &str, pv: u16, job_id: [u8; 32], expiry: u64, code: ErrorCode, msg: &str) {
        let now_expiry = if expiry == 0 { self.cfg.quote_ttl_secs } else { expiry };
        let envelope = self.envelope(pv, job_id, now_expiry);
        tracing::debug!(target: "lcpd", %peer, job = %hex::encode(&job_id[..8]), code = code.code(), "lcp_error: {msg}");
        let msg = LcpMessage::Error(LcpError { envelope, code, message: Some(msg.to_string()), extra: Vec::new() });
        self.send(peer, msg);
    }

    fn save_provider(&mut self, job: &mut PJob, now: u64, input: bool, result: bool) {
        job.rec.updated_at = now;
        if job.rec.state.is_terminal() && job.finished_at.is_none() {
            job.finished_at = Some(now);
        }
        self.out.push(Out::SaveProvider {
            rec: job.rec.clone(),
            input: if input { job.input.clone() } else { None },
            result: if result && job.result_in_memory { Some(job.result.clone()) } else { None },
        });
    }

    /// The offered models for `kind`, or `None` if some offer takes any model.
    fn offered_models(&self, kind: &str) -> Option<Vec<String>> {
        let mut models = Vec::new();
        for o in self.offers.iter().filter(|o| o.task_kind == kind) {
            match &o.model {
                None => return None,
                Some(m) => models.push(m.clone()),
            }
        }
        Some(models)
    }

    pub(super) fn on_quote_request(&mut self, now: u64, peer: &str, m: QuoteRequest) {
        let key = (peer.to_string(), m.envelope.job_id);
        let before = self.out.len();
        self.quote_request_checked(now, peer, m);
        let refused = self.out[before..].iter().any(|o| {
            matches!(o, Out::Send { peer: p, msg: LcpMessage::Error(e) } if *p == key.0 && e.envelope.job_id == key.1)
        });
        if refused && !self.pjobs.contains_key(&key) {
            self.refused.note(now, key);
        }
    }

    fn quote_request_checked(&mut self, now: u64, peer: &str, m: QuoteRequest) {
        let env = m.envelope.clone();
        let (pv, job_id, exp) = (env.protocol_version, env.job_id, env.expiry);
        if self.offers.is_empty() {
            return self.provider_error(peer, pv, job_id, exp, ErrorCode::UnsupportedTask, "provider disabled");
        }
        if pv != v02::PROTOCOL_VERSION {
            let msg = format!("unsupported protocol_version {pv}");
            return self.provider_error(peer, pv, job_id, exp, ErrorCode::UnsupportedVersion, &msg);
        }
        if !self.offers.iter().any(|o| o.task_kind == m.task_kind) {
            let msg = format!("unsupported task_kind: {:?}", m.task_kind);
            return self.provider_error(peer, pv, job_id, exp, ErrorCode::UnsupportedTask, &msg);
        }
        let model = match (&m.params, is_openai_kind(&m.task_kind)) {
            (None, true) => {
                return self.provider_error(peer, pv, job_id, exp, ErrorCode::UnsupportedParams, "params required");
            }
            (None, false) => None,
            (Some(p), _) => match Params::decode(p) {
                Ok(params) if params.extra.is_empty() => Some(params.model),
                Ok(params) => {
                    let types: Vec<String> = params.extra.iter().map(|t| t.tlv_type.to_string()).collect();
                    let msg = format!("unknown params TLV type(s): {}", types.join(", "));
                    return self.provider_error(peer, pv, job_id, exp, ErrorCode::UnsupportedParams, &msg);
                }
                Err(e) => {
                    let msg = format!("invalid params: {e}");
                    return self.provider_error(peer, pv, job_id, exp, ErrorCode::UnsupportedParams, &msg);
                }
            },
        };
        if let Some(models) = self.offered_models(&m.task_kind) {
            if !model.as_ref().is_some_and(|x| models.contains(x)) {
                let msg = format!(
                    "unsupported model: {:?} (supported: {})",
                    model.clone().unwrap_or_default(),
                    models.join(", ")
                );
                return self.provider_error(peer, pv, job_id, exp, ErrorCode::UnsupportedTask, &msg);
            }
        }
        match self.replay.check(now, peer, job_id, env.msg_id, exp) {
            Verdict::Fresh => {}
            v => {
                tracing::debug!(target: "lcpd", %peer, "quote_request dropped: {v:?}");
                return;
            }
        }
        if self.peers.remote(peer).is_none() {
            let msg = "manifest not exchanged";
            self.provider_error(peer, pv, job_id, exp, ErrorCode::InvalidState, msg);
            self.cycle_without_manifest(now, peer, "it sent a quote_request");
            return;
        }
        let key = (peer.to_string(), job_id);
        if let Some(mut job) = self.pjobs.remove(&key) {
            self.on_repeated_quote_request(now, &mut job, &m);
            self.pjobs.insert(key, job);
            return;
        }
        let open = self
            .pjobs
            .values()
            .filter(|j| {
                j.rec.peer == peer && matches!(j.rec.state, ProviderState::AwaitingInput | ProviderState::Quoted)
            })
            .count();
        if open >= self.cfg.max_open_quotes_per_peer {
            let msg = "too many open quotes from this peer";
            return self.provider_error(peer, pv, job_id, exp, ErrorCode::RateLimited, msg);
        }
        if self.provider_inflight(now) >= usize::from(self.cfg.limits.max_inflight_jobs) {
            let msg = "provider busy: max_inflight_jobs reached";
            return self.provider_error(peer, pv, job_id, exp, ErrorCode::RateLimited, msg);
        }
        self.pjobs.insert(key, PJob::new(peer, &m, model, now));
    }

    fn on_repeated_quote_request(&mut self, now: u64, job: &mut PJob, m: &QuoteRequest) {
        let (peer, pv, job_id, exp) =
            (job.rec.peer.clone(), m.envelope.protocol_version, job.rec.job_id, m.envelope.expiry);
        let same = job.rec.task_kind == m.task_kind && job.rec.params == m.params;
        let paid = job.rec.state.is_paid();
        if !paid && job.rec.quote_expiry != 0 && now > job.rec.quote_expiry {
            return self.provider_error(&peer, pv, job_id, exp, ErrorCode::QuoteExpired, "quote expired");
        }
        if !same {
            let msg = "quote_request mismatch for job";
            return self.provider_error(&peer, pv, job_id, exp, ErrorCode::PaymentInvalid, msg);
        }
        if let Some((code, msg)) = job.rec.error.clone() {
            return self.provider_error(&peer, pv, job_id, exp, ErrorCode::from_code(code), &msg);
        }
        if job.rec.quote_response.is_empty() {
            // Quote still being made: it goes out when ready.
            return;
        }
        match QuoteResponse::decode(&job.rec.quote_response) {
            Ok(q) => self.send(&peer, LcpMessage::QuoteResponse(q)),
            Err(e) => tracing::warn!(target: "lcpd", "stored quote_response unreadable: {e}"),
        }
        if matches!(job.rec.state, ProviderState::Done | ProviderState::ResultReady) {
            tracing::info!(target: "lcpd", %peer, job = %hex::encode(&job_id[..8]), "re-delivering a stored result");
            self.deliver_stored(now, job);
        }
    }

    pub(super) fn on_input_begin(&mut self, now: u64, peer: &str, m: StreamBegin) {
        let env = &m.envelope;
        let (pv, job_id, exp) = (env.protocol_version, env.job_id, env.expiry);
        if self.refused.contains(now, &(peer.to_string(), job_id)) {
            return tracing::debug!(target: "lcpd", %peer, job = %hex::encode(&job_id[..8]), "input of a refused job dropped");
        }
        if self.offers.is_empty() {
            return self.provider_error(peer, pv, job_id, exp, ErrorCode::UnsupportedTask, "provider disabled");
        }
        if self.peers.remote(peer).is_none() {
            return self.provider_error(peer, pv, job_id, exp, ErrorCode::InvalidState, "manifest not exchanged");
        }
        if self.replay.check(now, peer, job_id, env.msg_id, exp) != Verdict::Fresh {
            return;
        }
        if m.content_encoding != v02::CONTENT_ENCODING_IDENTITY {
            let msg = format!("unsupported content_encoding: {:?}", m.content_encoding);
            return self.provider_error(peer, pv, job_id, exp, ErrorCode::UnsupportedEncoding, &msg);
        }
        let (Some(total), Some(_)) = (m.total_len, m.sha256) else {
            let msg = "input stream_begin needs total_len and sha256";
            return self.provider_error(peer, pv, job_id, exp, ErrorCode::InvalidState, msg);
        };
        let limit = self.cfg.limits.max_stream_bytes.min(self.cfg.limits.max_job_bytes);
        if total > limit {
            let msg = format!("input of {total} bytes exceeds the limit of {limit}");
            return self.provider_error(peer, pv, job_id, exp, ErrorCode::PayloadTooLarge, &msg);
        }
        let key = (peer.to_string(), job_id);
        let Some(job) = self.pjobs.get_mut(&key) else {
            let msg = "no quote_request for job";
            return self.provider_error(peer, pv, job_id, exp, ErrorCode::InvalidState, msg);
        };
        if job.rec.state != ProviderState::AwaitingInput {
            return self.provider_error(peer, pv, job_id, exp, ErrorCode::InvalidState, "job not awaiting input");
        }
        if is_openai_kind(&job.rec.task_kind) && m.content_type != CONTENT_TYPE_JSON {
            let msg = format!("unsupported content_type: {:?}", m.content_type);
            return self.provider_error(peer, pv, job_id, exp, ErrorCode::UnsupportedEncoding, &msg);
        }
        if job.input_stream.is_some() {
            let msg = "input stream already begun";
            return self.provider_error(peer, pv, job_id, exp, ErrorCode::InvalidState, msg);
        }
        match Reassembler::new(&m, ReassemblyLimits::bytes(limit)) {
            Ok(r) => {
                job.rec.input_content_type = m.content_type.clone();
                job.rec.input_content_encoding = m.content_encoding.clone();
                job.input_stream = Some(r);
            }
            Err(e) => {
                self.pjobs.remove(&key);
                self.provider_error(peer, pv, job_id, exp, e.lcp_code(), &e.to_string());
            }
        }
    }

    pub(super) fn on_input_chunk(&mut self, now: u64, peer: &str, m: StreamChunk) {
        if m.expiry < now {
            return;
        }
        let key = (peer.to_string(), m.job_id);
        let Some(job) = self.pjobs.get_mut(&key) else { return };
        let Some(stream) = job.input_stream.as_mut() else { return };
        if let Err(e) = stream.push(&m) {
            let exp = job.req_expiry;
            self.pjobs.remove(&key);
            self.provider_error(peer, m.protocol_version, m.job_id, exp, e.lcp_code(), &e.to_string());
        }
    }

    pub(super) fn on_input_end(&mut self, now: u64, peer: &str, m: StreamEnd) {
        let env = &m.envelope;
        let (pv, job_id, exp) = (env.protocol_version, env.job_id, env.expiry);
        if self.replay.check(now, peer, job_id, env.msg_id, exp) != Verdict::Fresh {
            return;
        }
        let key = (peer.to_string(), job_id);
        let Some(mut job) = self.pjobs.remove(&key) else {
            if self.refused.contains(now, &key) {
                return tracing::debug!(target: "lcpd", %peer, job = %hex::encode(&job_id[..8]), "input of a refused job dropped");
            }
            return self.provider_error(peer, pv, job_id, exp, ErrorCode::InvalidState, "no input stream for job");
        };
        let Some(stream) = job.input_stream.take_if(|s| s.stream_id() == m.stream_id) else {
            self.pjobs.insert(key, job);
            return;
        };
        match stream.finish(&m) {
            Ok(done) => {
                job.rec.input_len = done.data.len() as u64;
                job.input = Some(done.data);
                job.rec.state = ProviderState::Pricing;
                job.rec.updated_at = now;
                let spec = job.spec(None);
                self.pjobs.insert(key.clone(), job);
                self.out.push(Out::Price { key, spec });
            }
            Err(e) => self.provider_error(peer, pv, job_id, exp, e.lcp_code(), &e.to_string()),
        }
    }

    /// A worker's answer to [`Out::Price`]: the price, or the LCP error to send.
    pub fn priced(&mut self, now: u64, key: &PKey, price: Result<u64, (u16, String)>) {
        let Some(mut job) = self.pjobs.remove(key) else { return };
        if job.rec.state != ProviderState::Pricing {
            self.pjobs.insert(key.clone(), job);
            return;
        }
        let (peer, pv, job_id, exp) = (job.rec.peer.clone(), job.rec.protocol_version, job.rec.job_id, job.req_expiry);
        let price = match price {
            Ok(0) => Err((ErrorCode::PaymentRequired.code(), "failed to create invoice: price is zero".to_string())),
            other => other,
        };
        let price = match price {
            Ok(p) => p,
            Err((code, msg)) => {
                tracing::warn!(
                    target: "lcpd",
                    %peer,
                    job = %hex::encode(job_id),
                    phase = "quote",
                    code,
                    "job refused (nothing paid): {msg}"
                );
                return self.provider_error(&peer, pv, job_id, exp, ErrorCode::from_code(code), &msg);
            }
        };
        let quote_expiry = now.saturating_add(self.cfg.quote_ttl_secs);
        let input = job.input.as_deref().unwrap_or_default();
        let terms = Terms::new(
            pv,
            job_id,
            price,
            quote_expiry,
            &job.rec.task_kind,
            job.rec.params.as_deref(),
            input,
            &job.rec.input_content_type,
            &job.rec.input_content_encoding,
        )
        .and_then(|t| t.hash());
        let terms_hash = match terms {
            Ok(h) => h,
            Err(e) => {
                let msg = format!("terms: {e}");
                return self.provider_error(&peer, pv, job_id, exp, ErrorCode::UnsupportedParams, &msg);
            }
        };
        job.rec.price_msat = price;
        job.rec.quote_expiry = quote_expiry;
        job.rec.terms_hash = terms_hash;
        job.rec.state = ProviderState::Invoicing;
        let ttl = self.cfg.quote_ttl_secs;
        let slack = self.cfg.invoice_expiry_slack_secs;
        let expiry = if ttl > slack { ttl - slack } else { ttl };
        let expiry_secs = u32::try_from(expiry.max(1)).unwrap_or(u32::MAX);
        self.pjobs.insert(key.clone(), job);
        self.out.push(Out::CreateInvoice {
            key: key.clone(),
            amount_msat: price,
            description_hash: terms_hash,
            expiry_secs,
        });
    }

    /// payd's answer to [`Out::CreateInvoice`]: `(bolt11, payment_hash)` or why not.
    pub fn invoiced(&mut self, now: u64, key: &PKey, invoice: Result<(String, [u8; 32]), String>) {
        let Some(mut job) = self.pjobs.remove(key) else { return };
        if job.rec.state != ProviderState::Invoicing {
            self.pjobs.insert(key.clone(), job);
            return;
        }
        let (peer, pv, job_id, exp) = (job.rec.peer.clone(), job.rec.protocol_version, job.rec.job_id, job.req_expiry);
        let (bolt11, payment_hash) = match invoice {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(target: "lcpd", "invoice not created: {e}");
                return self.provider_error(
                    &peer,
                    pv,
                    job_id,
                    exp,
                    ErrorCode::PaymentRequired,
                    "failed to create invoice",
                );
            }
        };
        let envelope = self.envelope(pv, job_id, job.rec.quote_expiry);
        let q = QuoteResponse {
            envelope,
            price_msat: job.rec.price_msat,
            quote_expiry: job.rec.quote_expiry,
            terms_hash: job.rec.terms_hash,
            payment_request: bolt11.clone(),
            extra: Vec::new(),
        };
        let payload = match q.encode() {
            Ok(p) => p,
            Err(e) => {
                let msg = format!("quote_response: {e}");
                return self.provider_error(&peer, pv, job_id, exp, ErrorCode::PaymentRequired, &msg);
            }
        };
        let max = self.peers.remote(&peer).map_or(v02::DEFAULT_MAX_PAYLOAD_BYTES, |m| m.max_payload_bytes);
        if payload.len() > max as usize {
            let msg = format!("quote_response of {} bytes exceeds max_payload_bytes {max}", payload.len());
            return self.provider_error(&peer, pv, job_id, exp, ErrorCode::PayloadTooLarge, &msg);
        }
        job.rec.bolt11 = bolt11;
        job.rec.payment_hash = payment_hash;
        job.rec.quote_response = payload;
        job.rec.state = ProviderState::Quoted;
        self.save_provider(&mut job, now, true, false);
        self.send(&peer, LcpMessage::QuoteResponse(q));
        self.pjobs.insert(key.clone(), job);
    }

    /// payd reports an invoice paid. Returns whether it belongs to a job in memory.
    pub fn settled(&mut self, now: u64, payment_hash: [u8; 32]) -> bool {
        let Some(key) = self.pjobs.iter().find(|(_, j)| j.rec.payment_hash == payment_hash).map(|(k, _)| k.clone())
        else {
            return false;
        };
        let Some(mut job) = self.pjobs.remove(&key) else { return false };
        match job.rec.state {
            ProviderState::Quoted | ProviderState::Expired => {
                job.rec.state = ProviderState::Paid;
                job.finished_at = None;
                self.save_provider(&mut job, now, false, false);
                tracing::info!(target: "lcpd", peer = %job.rec.peer, job = %hex::encode(&job.rec.job_id[..8]), "job paid");
                self.dispatch(&mut job);
            }
            ProviderState::Cancelled => {
                tracing::warn!(target: "lcpd", job = %hex::encode(&job.rec.job_id[..8]), "invoice paid after the job was cancelled");
                job.rec.error = Some((ErrorCode::InvalidState.code(), "paid after cancel".into()));
                self.save_provider(&mut job, now, false, false);
            }
            _ => {}
        }
        self.pjobs.insert(key, job);
        true
    }

    fn result_limit(&self, job: &PJob) -> u64 {
        let (stream, total) =
            self.peers.remote(&job.rec.peer).map_or((v02::DEFAULT_MAX_STREAM_BYTES, v02::DEFAULT_MAX_JOB_BYTES), |m| {
                (m.max_stream_bytes, m.max_job_bytes)
            });
        stream.min(total.saturating_sub(job.rec.input_len))
    }

    fn dispatch(&mut self, job: &mut PJob) {
        let limit = self.result_limit(job);
        self.out.push(Out::Dispatch { key: job.key(), spec: job.spec(Some(limit)) });
    }

    /// The dispatcher's answer to [`Out::Dispatch`]. An error is retried on later ticks until
    /// the quote expiry plus the dispatch grace, then the requester gets a terminal error.
    pub fn dispatched(&mut self, now: u64, key: &PKey, result: Result<(), String>) {
        let Some(mut job) = self.pjobs.remove(key) else { return };
        if job.rec.state == ProviderState::Paid {
            match result {
                Ok(()) => {
                    job.dispatch_pending = false;
                    job.rec.state = ProviderState::Running;
                    self.save_provider(&mut job, now, false, false);
                }
                Err(e) => {
                    if !job.dispatch_pending {
                        tracing::warn!(target: "lcpd", job = %hex::encode(&key.1[..8]), "paid job not dispatched yet: {e}");
                    }
                    job.dispatch_pending = true;
                }
            }
        }
        self.pjobs.insert(key.clone(), job);
    }

    /// Output of a job's run, in order.
    pub fn output(&mut self, now: u64, key: &PKey, item: OutputItem) {
        let Some(mut job) = self.pjobs.remove(key) else { return };
        if !matches!(job.rec.state, ProviderState::Running | ProviderState::Streaming | ProviderState::Paid) {
            self.pjobs.insert(key.clone(), job);
            return;
        }
        match item {
            OutputItem::Begin { content_type } => self.result_begin(now, &mut job, content_type),
            OutputItem::Chunk(data) => self.result_chunk(now, &mut job, &data),
            OutputItem::End { .. } => self.result_end(now, &mut job),
            OutputItem::Failed { lcp_code, message } => {
                let code = if lcp_code == 0 { ErrorCode::PaymentInvalid } else { ErrorCode::from_code(lcp_code) };
                self.fail_paid(now, &mut job, code, &message);
            }
        }
        self.pjobs.insert(key.clone(), job);
    }

    fn result_begin(&mut self, now: u64, job: &mut PJob, content_type: String) {
        job.rec.state = ProviderState::Running;
        job.result.clear();
        job.result_in_memory = false;
        job.live = None;
        job.begin_pending = None;
        job.rec.result_content_type = Some(content_type.clone());
        if !content_type.starts_with(CONTENT_TYPE_SSE_PREFIX) {
            return;
        }
        let Some(max_payload) = self.peers.remote(&job.rec.peer).map(|m| m.max_payload_bytes) else {
            job.broken = true;
            return;
        };
        let expiry = now.saturating_add(self.cfg.quote_ttl_secs);
        let stream_id = self.random32();
        let splitter =
            match ChunkSplitter::new(job.rec.protocol_version, job.rec.job_id, expiry, stream_id, max_payload) {
                Ok(s) => s,
                Err(e) => return self.fail_paid(now, job, e.lcp_code(), &e.to_string()),
            };
        let envelope = self.envelope(job.rec.protocol_version, job.rec.job_id, expiry);
        let begin = StreamBegin {
            envelope,
            stream_id,
            stream_kind: StreamKind::Result,
            total_len: None,
            sha256: None,
            content_type,
            content_encoding: v02::CONTENT_ENCODING_IDENTITY.into(),
            extra: Vec::new(),
        };
        job.broken = false;
        job.begin_pending = Some(begin);
        job.live = Some((splitter, stream_id, expiry));
    }

    /// Sends the live stream's `stream_begin` if it is still held (the first bytes are going out).
    fn send_pending_begin(&mut self, now: u64, job: &mut PJob) {
        if let Some(begin) = job.begin_pending.take() {
            job.rec.state = ProviderState::Streaming;
            self.save_provider(job, now, false, false);
            self.send(&job.rec.peer.clone(), LcpMessage::StreamBegin(begin));
        }
    }

    fn result_chunk(&mut self, now: u64, job: &mut PJob, data: &[u8]) {
        let limit = self.result_limit(job);
        if job.result.len() as u64 + data.len() as u64 > limit {
            self.out.push(Out::CancelRun { key: job.key() });
            return self.fail_result_too_large(now, job);
        }
        job.result.extend_from_slice(data);
        if job.broken || job.live.is_none() {
            return;
        }
        self.send_pending_begin(now, job);
        let peer = job.rec.peer.clone();
        if let Some((splitter, _, _)) = job.live.as_mut() {
            let mut chunks = Vec::new();
            for c in splitter.split(data) {
                match c {
                    Ok(c) => chunks.push(c),
                    Err(e) => {
                        tracing::warn!(target: "lcpd", "result chunk: {e}");
                        job.broken = true;
                        break;
                    }
                }
            }
            for c in chunks {
                self.send(&peer, LcpMessage::StreamChunk(c));
            }
        }
    }

    fn result_end(&mut self, now: u64, job: &mut PJob) {
        let sha: [u8; 32] = Sha256::digest(&job.result).into();
        job.rec.result_len = Some(job.result.len() as u64);
        job.rec.result_hash = Some(sha);
        if job.rec.result_content_type.is_none() {
            job.rec.result_content_type = Some(CONTENT_TYPE_JSON.into());
        }
        job.result_in_memory = true;
        match job.live.take() {
            Some((splitter, stream_id, expiry)) if !job.broken && self.peers.is_connected(&job.rec.peer) => {
                // An SSE result with no bytes still goes out as an (empty) stream.
                self.send_pending_begin(now, job);
                let (len, sha256) = splitter.finish();
                let peer = job.rec.peer.clone();
                let envelope = self.envelope(job.rec.protocol_version, job.rec.job_id, expiry);
                self.send(
                    &peer,
                    LcpMessage::StreamEnd(StreamEnd { envelope, stream_id, total_len: len, sha256, extra: Vec::new() }),
                );
                job.rec.state = ProviderState::Done;
                self.save_provider(job, now, false, true);
                self.send_result_ok(job, stream_id, expiry);
                self.drop_result(job);
            }
            _ => {
                job.begin_pending = None;
                job.rec.state = ProviderState::ResultReady;
                self.save_provider(job, now, false, true);
                if self.peers.remote(&job.rec.peer).is_some() {
                    self.deliver_stored(now, job);
                }
            }
        }
    }

    fn drop_result(&mut self, job: &mut PJob) {
        job.result = Vec::new();
        job.result_in_memory = false;
        job.input = None;
    }

    fn send_result_ok(&mut self, job: &PJob, stream_id: [u8; 32], expiry: u64) {
        let envelope = self.envelope(job.rec.protocol_version, job.rec.job_id, expiry);
        let ok = ResultOk {
            result_stream_id: stream_id,
            result_hash: job.rec.result_hash.unwrap_or_default(),
            result_len: job.rec.result_len.unwrap_or_default(),
            result_content_type: job.rec.result_content_type.clone().unwrap_or_else(|| CONTENT_TYPE_JSON.into()),
            result_content_encoding: v02::CONTENT_ENCODING_IDENTITY.into(),
        };
        let msg = LcpMessage::Result(LcpResult { envelope, outcome: ResultOutcome::Ok(ok), extra: Vec::new() });
        self.send(&job.rec.peer.clone(), msg);
    }

    /// The operator's line for a paid job that fails: job id, the phase it failed in, the reason.
    fn log_paid_failure(job: &PJob, code: u16, message: &str) {
        tracing::warn!(
            target: "lcpd",
            peer = %job.rec.peer,
            job = %hex::encode(job.rec.job_id),
            phase = job.rec.state.as_str(),
            code,
            "paid job failed: {message}"
        );
    }

    fn fail_result_too_large(&mut self, now: u64, job: &mut PJob) {
        let expiry = now.saturating_add(self.cfg.quote_ttl_secs);
        let envelope = self.envelope(job.rec.protocol_version, job.rec.job_id, expiry);
        let message = "result exceeds remote stream limits".to_string();
        Self::log_paid_failure(job, ErrorCode::PayloadTooLarge.code(), &message);
        job.rec.state = ProviderState::Failed;
        job.rec.error = Some((ErrorCode::PayloadTooLarge.code(), message.clone()));
        job.live = None;
        self.save_provider(job, now, false, false);
        let msg = LcpMessage::Result(LcpResult {
            envelope,
            outcome: ResultOutcome::Failed { message: Some(message) },
            extra: Vec::new(),
        });
        self.send(&job.rec.peer.clone(), msg);
        self.drop_result(job);
    }

    /// A paid job failed: the requester gets `lcp_error` (the reference's behaviour) with the
    /// quote_response's envelope expiry.
    fn fail_paid(&mut self, now: u64, job: &mut PJob, code: ErrorCode, message: &str) {
        Self::log_paid_failure(job, code.code(), message);
        job.rec.state = ProviderState::Failed;
        job.rec.error = Some((code.code(), message.to_string()));
        job.live = None;
        self.save_provider(job, now, false, false);
        let (peer, pv, job_id, exp) =
            (job.rec.peer.clone(), job.rec.protocol_version, job.rec.job_id, job.rec.quote_expiry);
        let exp = exp.max(now.saturating_add(self.cfg.quote_ttl_secs));
        self.provider_error(&peer, pv, job_id, exp, code, message);
        self.drop_result(job);
    }

    /// Sends a stored result: begin with total_len and sha256, chunks, end, `lcp_result(ok)`.
    fn deliver_stored(&mut self, now: u64, job: &mut PJob) {
        if !job.result_in_memory {
            self.out.push(Out::LoadResult { key: job.key() });
            return;
        }
        let Some(remote) = self.peers.remote(&job.rec.peer).cloned() else { return };
        let len = job.result.len() as u64;
        if len > remote.max_stream_bytes || job.rec.input_len.saturating_add(len) > remote.max_job_bytes {
            return self.fail_result_too_large(now, job);
        }
        let expiry = now.saturating_add(self.cfg.quote_ttl_secs);
        let stream_id = self.random32();
        let (pv, job_id) = (job.rec.protocol_version, job.rec.job_id);
        let mut splitter = match ChunkSplitter::new(pv, job_id, expiry, stream_id, remote.max_payload_bytes) {
            Ok(s) => s,
            Err(e) => return self.fail_paid(now, job, e.lcp_code(), &e.to_string()),
        };
        let sha256 = job.rec.result_hash.unwrap_or_else(|| Sha256::digest(&job.result).into());
        let envelope = self.envelope(pv, job_id, expiry);
        let peer = job.rec.peer.clone();
        let begin = StreamBegin {
            envelope,
            stream_id,
            stream_kind: StreamKind::Result,
            total_len: Some(len),
            sha256: Some(sha256),
            content_type: job.rec.result_content_type.clone().unwrap_or_else(|| CONTENT_TYPE_JSON.into()),
            content_encoding: v02::CONTENT_ENCODING_IDENTITY.into(),
            extra: Vec::new(),
        };
        self.send(&peer, LcpMessage::StreamBegin(begin));
        let mut chunks = Vec::new();
        for c in splitter.split(&job.result) {
            match c {
                Ok(c) => chunks.push(c),
                Err(e) => return self.fail_paid(now, job, e.lcp_code(), &e.to_string()),
            }
        }
        for c in chunks {
            self.send(&peer, LcpMessage::StreamChunk(c));
        }
        let envelope = self.envelope(pv, job_id, expiry);
        self.send(
            &peer,
            LcpMessage::StreamEnd(StreamEnd { envelope, stream_id, total_len: len, sha256, extra: Vec::new() }),
        );
        job.rec.result_hash = Some(sha256);
        job.rec.result_len = Some(len);
        self.send_result_ok(job, stream_id, expiry);
        if job.rec.state != ProviderState::Done {
            job.rec.state = ProviderState::Done;
            self.save_provider(job, now, false, false);
        }
        self.drop_result(job);
    }

    /// The runtime read a stored result back ([`Out::LoadResult`]); `None` if it is gone.
    pub fn result_loaded(&mut self, now: u64, key: &PKey, result: Option<Vec<u8>>) {
        let Some(mut job) = self.pjobs.remove(key) else { return };
        match result {
            Some(bytes) => {
                job.result = bytes;
                job.result_in_memory = true;
                self.deliver_stored(now, &mut job);
            }
            None => {
                tracing::warn!(target: "lcpd", job = %hex::encode(&key.1[..8]), "stored result missing");
                self.fail_paid(now, &mut job, ErrorCode::InvalidState, "result no longer available");
            }
        }
        self.pjobs.insert(key.clone(), job);
    }

    pub(super) fn on_cancel(&mut self, now: u64, peer: &str, m: Cancel) {
        let env = &m.envelope;
        if self.replay.check(now, peer, env.job_id, env.msg_id, env.expiry) != Verdict::Fresh {
            return;
        }
        let key = (peer.to_string(), env.job_id);
        let Some(mut job) = self.pjobs.remove(&key) else { return };
        if job.rec.state.is_terminal() || job.rec.state == ProviderState::ResultReady {
            self.pjobs.insert(key, job);
            return;
        }
        if matches!(job.rec.state, ProviderState::Running | ProviderState::Streaming | ProviderState::Paid) {
            self.out.push(Out::CancelRun { key: key.clone() });
        }
        let reason = m.reason.clone().unwrap_or_else(|| "cancelled by the requester".into());
        tracing::info!(target: "lcpd", %peer, job = %hex::encode(&key.1[..8]), "job cancelled: {reason}");
        job.rec.state = ProviderState::Cancelled;
        job.rec.error = Some((0, reason));
        job.live = None;
        if !job.rec.quote_response.is_empty() {
            self.save_provider(&mut job, now, false, false);
        } else {
            job.finished_at = Some(now);
        }
        let expiry = now.saturating_add(self.cfg.quote_ttl_secs);
        let envelope = self.envelope(env.protocol_version, env.job_id, expiry);
        self.send(
            peer,
            LcpMessage::Result(LcpResult {
                envelope,
                outcome: ResultOutcome::Cancelled { message: m.reason.clone() },
                extra: Vec::new(),
            }),
        );
        self.drop_result(&mut job);
        self.pjobs.insert(key, job);
    }

    /// An `lcp_error` about a job we provide. The reference's requester node sends spurious
    /// errors ("no input stream for job") after our result stream ends; they change nothing.
    pub(super) fn on_provider_error(&mut self, _now: u64, peer: &str, m: &LcpError) {
        tracing::debug!(
            target: "lcpd",
            %peer,
            job = %hex::encode(&m.envelope.job_id[..8]),
            code = m.code.code(),
            "lcp_error from a requester ignored: {}",
            m.message.as_deref().unwrap_or("")
        );
    }

    pub(super) fn provider_peer_gone(&mut self, peer: &str) {
        self.pjobs.retain(|(p, _), j| !(p == peer && j.rec.state == ProviderState::AwaitingInput));
        for ((p, _), j) in self.pjobs.iter_mut() {
            if p == peer && j.rec.state == ProviderState::Streaming {
                j.broken = true;
            }
        }
    }

    pub(super) fn provider_peer_ready(&mut self, now: u64, peer: &str) {
        let keys: Vec<PKey> = self
            .pjobs
            .iter()
            .filter(|((p, _), j)| p == peer && j.rec.state == ProviderState::ResultReady)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            if let Some(mut job) = self.pjobs.remove(&key) {
                self.deliver_stored(now, &mut job);
                self.pjobs.insert(key, job);
            }
        }
    }

    pub(super) fn provider_tick(&mut self, now: u64) {
        self.refused.prune(now);
        let keys: Vec<PKey> = self.pjobs.keys().cloned().collect();
        for key in keys {
            let Some(mut job) = self.pjobs.remove(&key) else { continue };
            match job.rec.state {
                ProviderState::Quoted if now > job.rec.quote_expiry => {
                    job.rec.state = ProviderState::Expired;
                    self.save_provider(&mut job, now, false, false);
                }
                ProviderState::AwaitingInput | ProviderState::Pricing | ProviderState::Invoicing
                    if now > job.rec.created_at.saturating_add(self.cfg.request_ttl_secs) =>
                {
                    continue;
                }
                ProviderState::Paid if job.dispatch_pending => {
                    if now > job.rec.quote_expiry.saturating_add(self.cfg.dispatch_grace_secs) {
                        self.fail_paid(now, &mut job, ErrorCode::RateLimited, "no worker could run the job");
                    } else {
                        self.dispatch(&mut job);
                    }
                }
                s if s.is_terminal()
                    && job.finished_at.is_some_and(|t| now > t.saturating_add(self.cfg.keep_finished_secs)) =>
                {
                    continue;
                }
                _ => {}
            }
            self.pjobs.insert(key, job);
        }
    }

    /// Puts a stored provider job back after a restart. Paid jobs that had not produced their
    /// whole result run again; stored results go out when the requester is connected.
    pub fn restore_provider(&mut self, now: u64, rec: ProviderRecord, input: Option<Vec<u8>>) {
        let key = (rec.peer.clone(), rec.job_id);
        let req_expiry = rec.quote_expiry;
        let mut job = PJob::from_record(rec, req_expiry, input);
        match job.rec.state {
            ProviderState::Paid | ProviderState::Running | ProviderState::Streaming => {
                job.rec.state = ProviderState::Paid;
                job.rec.result_content_type = None;
                self.save_provider(&mut job, now, false, false);
                self.dispatch(&mut job);
            }
            ProviderState::AwaitingInput | ProviderState::Pricing | ProviderState::Invoicing => return,
            s if s.is_terminal() => job.finished_at = Some(job.rec.updated_at),
            _ => {}
        }
        self.pjobs.insert(key, job);
    }

    /// Payment hashes of quoted, unpaid jobs (to look up after a restart).
    pub fn open_invoices(&self) -> Vec<[u8; 32]> {
        self.pjobs.values().filter(|j| j.rec.state == ProviderState::Quoted).map(|j| j.rec.payment_hash).collect()
    }
}
