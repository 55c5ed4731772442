//! The nine LCP v0.2 messages (section 1) with their decoders and canonical encoders.
//!
//! Decoding follows the Go reference: strict where it is strict (ordering, minimal integers,
//! fixed lengths, required fields, UTF-8, the deterministic chunk `msg_id`) and lenient where
//! it is lenient (unknown TLVs of either parity are accepted and kept in `extra`; any
//! `protocol_version`; an input `stream_begin` without `total_len`/`sha256`; a chunk with
//! empty data; an ok `lcp_result` that carries a `message`, which is kept as an extra record
//! since an ok result has no message field).

use sha2::{Digest, Sha256};

use super::codes::ErrorCode;
use super::v02::*;
use crate::wire::error::WireError;
use crate::wire::fundamental::{
    bigsize_len, read_array32, read_bigsize, read_tu32, read_tu64, read_u16_value, read_utf8, take, tu64_len,
    write_bigsize,
};
use crate::wire::tlv::{extra_len, record_len, TlvReader, TlvRecord, TlvWriter, UnknownTlv, LCP_MAX_RECORD_LEN};

/// The common envelope of every job-scope message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Envelope {
    /// TLV 1 `protocol_version` (any value is accepted by the codec).
    pub protocol_version: u16,
    /// TLV 2 `job_id`.
    pub job_id: [u8; 32],
    /// TLV 3 `msg_id`.
    pub msg_id: [u8; 32],
    /// TLV 4 `expiry` (unix seconds).
    pub expiry: u64,
}

/// One element of a manifest's `supported_tasks`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskTemplate {
    /// TLV 20 `task_kind` (non-empty).
    pub task_kind: String,
    /// TLV 22 `params_template` (opaque bytes, a params TLV stream for the standard kinds).
    pub params_template: Option<Vec<u8>>,
    /// Unknown records of the element.
    pub extra: Vec<UnknownTlv>,
}

/// `lcp_manifest` (42081).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Manifest {
    /// TLV 1.
    pub protocol_version: u16,
    /// TLV 11, > 0.
    pub max_payload_bytes: u32,
    /// TLV 12 (absent and empty are different on the wire).
    pub supported_tasks: Option<Vec<TaskTemplate>>,
    /// TLV 14, > 0.
    pub max_stream_bytes: u64,
    /// TLV 15, > 0.
    pub max_job_bytes: u64,
    /// TLV 16.
    pub max_inflight_jobs: Option<u16>,
    /// Unknown records (never 2, 3 or 4).
    pub extra: Vec<UnknownTlv>,
}

/// `lcp_quote_request` (42083).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QuoteRequest {
    /// Envelope.
    pub envelope: Envelope,
    /// TLV 20, non-empty.
    pub task_kind: String,
    /// TLV 22, opaque on the wire (see [`super::params::Params`]).
    pub params: Option<Vec<u8>>,
    /// Unknown records.
    pub extra: Vec<UnknownTlv>,
}

/// `lcp_quote_response` (42085).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QuoteResponse {
    /// Envelope.
    pub envelope: Envelope,
    /// TLV 30.
    pub price_msat: u64,
    /// TLV 31 (unix seconds).
    pub quote_expiry: u64,
    /// TLV 32.
    pub terms_hash: [u8; 32],
    /// TLV 33, BOLT11 string, non-empty.
    pub payment_request: String,
    /// Unknown records.
    pub extra: Vec<UnknownTlv>,
}

/// The fields of a successful `lcp_result`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResultOk {
    /// TLV 101.
    pub result_stream_id: [u8; 32],
    /// TLV 102: SHA-256 of the decoded result bytes.
    pub result_hash: [u8; 32],
    /// TLV 103.
    pub result_len: u64,
    /// TLV 104, non-empty.
    pub result_content_type: String,
    /// TLV 105, non-empty.
    pub result_content_encoding: String,
}

/// `lcp_result` status with the fields each status carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ResultOutcome {
    /// Status 0.
    Ok(ResultOk),
    /// Status 1, with the optional TLV 81 message.
    Failed {
        /// TLV 81.
        message: Option<String>,
    },
    /// Status 2, with the optional TLV 81 message.
    Cancelled {
        /// TLV 81.
        message: Option<String>,
    },
}

impl ResultOutcome {
    /// The numeric status (TLV 100).
    pub fn status(&self) -> u16 {
        match self {
            Self::Ok(_) => 0,
            Self::Failed { .. } => 1,
            Self::Cancelled { .. } => 2,
        }
    }
}

/// `lcp_result` (42087).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LcpResult {
    /// Envelope.
    pub envelope: Envelope,
    /// Status and its fields.
    pub outcome: ResultOutcome,
    /// Unknown records (an ok result's TLV 81 lands here).
    pub extra: Vec<UnknownTlv>,
}

/// `stream_kind` of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// 1: the job input (requester to provider).
    Input,
    /// 2: the job result (provider to requester).
    Result,
}

impl StreamKind {
    /// Numeric value on the wire.
    pub fn code(self) -> u16 {
        match self {
            Self::Input => 1,
            Self::Result => 2,
        }
    }

    /// From the wire value.
    pub fn from_code(v: u16) -> Result<Self, WireError> {
        match v {
            1 => Ok(Self::Input),
            2 => Ok(Self::Result),
            other => Err(WireError::InvalidValue {
                field: "stream_kind",
                reason: format!("{other} is neither 1 (input) nor 2 (result)"),
            }),
        }
    }
}

/// `lcp_stream_begin` (42089).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamBegin {
    /// Envelope.
    pub envelope: Envelope,
    /// TLV 90.
    pub stream_id: [u8; 32],
    /// TLV 91.
    pub stream_kind: StreamKind,
    /// TLV 92 (required for input streams by the provider, not by the codec).
    pub total_len: Option<u64>,
    /// TLV 93 (as above).
    pub sha256: Option<[u8; 32]>,
    /// TLV 94, non-empty.
    pub content_type: String,
    /// TLV 95, non-empty.
    pub content_encoding: String,
    /// Unknown records.
    pub extra: Vec<UnknownTlv>,
}

/// `lcp_stream_chunk` (42091). Its `msg_id` is not stored: it is always
/// `SHA256(stream_id || u32be(seq))` (see [`StreamChunk::msg_id`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamChunk {
    /// Envelope TLV 1.
    pub protocol_version: u16,
    /// Envelope TLV 2.
    pub job_id: [u8; 32],
    /// Envelope TLV 4.
    pub expiry: u64,
    /// TLV 90.
    pub stream_id: [u8; 32],
    /// TLV 96.
    pub seq: u32,
    /// TLV 97.
    pub data: Vec<u8>,
    /// Unknown records.
    pub extra: Vec<UnknownTlv>,
}

/// `lcp_stream_end` (42093).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamEnd {
    /// Envelope.
    pub envelope: Envelope,
    /// TLV 90.
    pub stream_id: [u8; 32],
    /// TLV 92.
    pub total_len: u64,
    /// TLV 93.
    pub sha256: [u8; 32],
    /// Unknown records.
    pub extra: Vec<UnknownTlv>,
}

/// `lcp_cancel` (42095).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cancel {
    /// Envelope.
    pub envelope: Envelope,
    /// TLV 70.
    pub reason: Option<String>,
    /// Unknown records.
    pub extra: Vec<UnknownTlv>,
}

/// `lcp_error` (42097).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LcpError {
    /// Envelope.
    pub envelope: Envelope,
    /// TLV 80, never 0.
    pub code: ErrorCode,
    /// TLV 81.
    pub message: Option<String>,
    /// Unknown records.
    pub extra: Vec<UnknownTlv>,
}

/// The deterministic `msg_id` of a stream chunk: `SHA256(stream_id || u32be(seq))`.
pub fn chunk_msg_id(stream_id: &[u8; 32], seq: u32) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(stream_id);
    h.update(seq.to_be_bytes());
    h.finalize().into()
}

// ---------------------------------------------------------------------------------------------
// Decoding helpers

/// Collects the envelope records while a message is decoded.
#[derive(Default)]
struct EnvelopeParts {
    protocol_version: Option<u16>,
    job_id: Option<[u8; 32]>,
    msg_id: Option<[u8; 32]>,
    expiry: Option<u64>,
}

impl EnvelopeParts {
    /// Takes the record if it is an envelope record; returns whether it was.
    fn take(&mut self, r: &TlvRecord<'_>) -> Result<bool, WireError> {
        match r.tlv_type {
            TLV_PROTOCOL_VERSION => self.protocol_version = Some(read_u16_value(r.value, "protocol_version")?),
            TLV_JOB_ID => self.job_id = Some(read_array32(r.value, "job_id")?),
            TLV_MSG_ID => self.msg_id = Some(read_array32(r.value, "msg_id")?),
            TLV_EXPIRY => self.expiry = Some(read_tu64(r.value, "expiry")?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn finish(self) -> Result<Envelope, WireError> {
        Ok(Envelope {
            protocol_version: req(self.protocol_version, "protocol_version")?,
            job_id: req(self.job_id, "job_id")?,
            msg_id: req(self.msg_id, "msg_id")?,
            expiry: req(self.expiry, "expiry")?,
        })
    }
}

fn req<T>(v: Option<T>, field: &'static str) -> Result<T, WireError> {
    v.ok_or(WireError::Missing { field })
}

fn records(payload: &[u8]) -> TlvReader<'_> {
    TlvReader::new(payload, LCP_MAX_RECORD_LEN)
}

fn not_empty(s: &str, field: &'static str) -> Result<(), WireError> {
    if s.is_empty() {
        Err(WireError::Empty { field })
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding helpers

fn envelope_len(e: &Envelope) -> usize {
    4 + 2 * 34 + record_len(TLV_EXPIRY, tu64_len(e.expiry))
}

fn write_envelope(w: &mut TlvWriter<'_, '_>, e: &Envelope) -> Result<(), WireError> {
    w.u16_record(TLV_PROTOCOL_VERSION, e.protocol_version)?;
    w.record(TLV_JOB_ID, &e.job_id)?;
    w.record(TLV_MSG_ID, &e.msg_id)?;
    w.tu64_record(TLV_EXPIRY, e.expiry)
}

fn opt_str_len(t: u64, s: &Option<String>) -> usize {
    s.as_ref().map_or(0, |s| record_len(t, s.len()))
}

// ---------------------------------------------------------------------------------------------
// Per message

impl TaskTemplate {
    fn decode(element: &[u8]) -> Result<Self, WireError> {
        let mut task_kind = None;
        let mut params_template = None;
        let mut extra = Vec::new();
        for r in records(element) {
            let r = r?;
            match r.tlv_type {
                TLV_TASK_KIND => task_kind = Some(read_utf8(r.value, "supported_tasks.task_kind", true)?),
                TLV_PARAMS => params_template = Some(r.value.to_vec()),
                _ => extra.push(UnknownTlv::from_record(r)),
            }
        }
        Ok(Self { task_kind: req(task_kind, "supported_tasks.task_kind")?, params_template, extra })
    }

    fn encode(&self) -> Result<Vec<u8>, WireError> {
        not_empty(&self.task_kind, "supported_tasks.task_kind")?;
        let mut out = Vec::with_capacity(
            record_len(TLV_TASK_KIND, self.task_kind.len())
                + self.params_template.as_ref().map_or(0, |p| record_len(TLV_PARAMS, p.len()))
                + extra_len(&self.extra),
        );
        let mut w = TlvWriter::new(&mut out, &self.extra, LCP_MAX_RECORD_LEN);
        w.record(TLV_TASK_KIND, self.task_kind.as_bytes())?;
        if let Some(p) = &self.params_template {
            w.record(TLV_PARAMS, p)?;
        }
        w.finish()?;
        Ok(out)
    }
}

fn decode_bytes_list(value: &[u8]) -> Result<Vec<&[u8]>, WireError> {
    let mut buf = value;
    let count = read_bigsize(&mut buf, "supported_tasks.count")?;
    if count > BYTES_LIST_MAX_ITEMS {
        return Err(WireError::InvalidValue {
            field: "supported_tasks",
            reason: format!("{count} elements, more than {BYTES_LIST_MAX_ITEMS}"),
        });
    }
    let mut items = Vec::with_capacity(count as usize);
    let mut total = 0u64;
    for _ in 0..count {
        let len = read_bigsize(&mut buf, "supported_tasks.element_length")?;
        total = total.saturating_add(len);
        if total > BYTES_LIST_MAX_TOTAL {
            return Err(WireError::InvalidValue {
                field: "supported_tasks",
                reason: format!("elements exceed {BYTES_LIST_MAX_TOTAL} bytes in total"),
            });
        }
        // len <= 1 MiB here.
        items.push(take(&mut buf, len as usize, "supported_tasks.element")?);
    }
    if !buf.is_empty() {
        return Err(WireError::TrailingBytes { field: "supported_tasks", count: buf.len() });
    }
    Ok(items)
}

fn encode_bytes_list(items: &[Vec<u8>]) -> Result<Vec<u8>, WireError> {
    if items.len() as u64 > BYTES_LIST_MAX_ITEMS {
        return Err(WireError::TooLong {
            field: "supported_tasks",
            len: items.len(),
            max: BYTES_LIST_MAX_ITEMS as usize,
        });
    }
    let total: usize = items.iter().map(Vec::len).sum();
    if total as u64 > BYTES_LIST_MAX_TOTAL {
        return Err(WireError::TooLong { field: "supported_tasks", len: total, max: BYTES_LIST_MAX_TOTAL as usize });
    }
    let mut out = Vec::with_capacity(9 + total + 9 * items.len());
    write_bigsize(&mut out, items.len() as u64);
    for i in items {
        write_bigsize(&mut out, i.len() as u64);
        out.extend_from_slice(i);
    }
    Ok(out)
}

impl Manifest {
    /// Decodes an `lcp_manifest` payload.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut protocol_version = None;
        let mut max_payload_bytes = None;
        let mut supported_tasks = None;
        let mut max_stream_bytes = None;
        let mut max_job_bytes = None;
        let mut max_inflight_jobs = None;
        let mut extra = Vec::new();
        for r in records(payload) {
            let r = r?;
            match r.tlv_type {
                TLV_PROTOCOL_VERSION => protocol_version = Some(read_u16_value(r.value, "protocol_version")?),
                TLV_JOB_ID | TLV_MSG_ID | TLV_EXPIRY => {
                    return Err(WireError::NotAllowed {
                        field: match r.tlv_type {
                            TLV_JOB_ID => "job_id",
                            TLV_MSG_ID => "msg_id",
                            _ => "expiry",
                        },
                        reason: "lcp_manifest is connection-scoped and carries no envelope",
                    })
                }
                TLV_MAX_PAYLOAD_BYTES => max_payload_bytes = Some(read_tu32(r.value, "max_payload_bytes")?),
                TLV_SUPPORTED_TASKS => {
                    let tasks = decode_bytes_list(r.value)?
                        .into_iter()
                        .map(TaskTemplate::decode)
                        .collect::<Result<Vec<_>, _>>()?;
                    supported_tasks = Some(tasks);
                }
                TLV_MAX_STREAM_BYTES => max_stream_bytes = Some(read_tu64(r.value, "max_stream_bytes")?),
                TLV_MAX_JOB_BYTES => max_job_bytes = Some(read_tu64(r.value, "max_job_bytes")?),
                TLV_MAX_INFLIGHT_JOBS => max_inflight_jobs = Some(read_u16_value(r.value, "max_inflight_jobs")?),
                _ => extra.push(UnknownTlv::from_record(r)),
            }
        }
        let m = Self {
            protocol_version: req(protocol_version, "protocol_version")?,
            max_payload_bytes: req(max_payload_bytes, "max_payload_bytes")?,
            supported_tasks,
            max_stream_bytes: req(max_stream_bytes, "max_stream_bytes")?,
            max_job_bytes: req(max_job_bytes, "max_job_bytes")?,
            max_inflight_jobs,
            extra,
        };
        m.check_limits()?;
        Ok(m)
    }

    fn check_limits(&self) -> Result<(), WireError> {
        let zero = |field| WireError::InvalidValue { field, reason: "must be greater than 0".into() };
        if self.max_payload_bytes == 0 {
            return Err(zero("max_payload_bytes"));
        }
        if self.max_stream_bytes == 0 {
            return Err(zero("max_stream_bytes"));
        }
        if self.max_job_bytes == 0 {
            return Err(zero("max_job_bytes"));
        }
        Ok(())
    }

    /// Encodes the canonical payload.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        self.check_limits()?;
        if let Some(x) = self.extra.iter().find(|x| (TLV_JOB_ID..=TLV_EXPIRY).contains(&x.tlv_type)) {
            return Err(WireError::DuplicateRecord { tlv_type: x.tlv_type });
        }
        let tasks = match &self.supported_tasks {
            Some(t) => Some(encode_bytes_list(&t.iter().map(TaskTemplate::encode).collect::<Result<Vec<_>, _>>()?)?),
            None => None,
        };
        let mut out = Vec::with_capacity(32 + tasks.as_ref().map_or(0, |t| t.len() + 4) + extra_len(&self.extra));
        let mut w = TlvWriter::new(&mut out, &self.extra, LCP_MAX_RECORD_LEN);
        w.u16_record(TLV_PROTOCOL_VERSION, self.protocol_version)?;
        w.tu64_record(TLV_MAX_PAYLOAD_BYTES, u64::from(self.max_payload_bytes))?;
        if let Some(t) = &tasks {
            w.record(TLV_SUPPORTED_TASKS, t)?;
        }
        w.tu64_record(TLV_MAX_STREAM_BYTES, self.max_stream_bytes)?;
        w.tu64_record(TLV_MAX_JOB_BYTES, self.max_job_bytes)?;
        if let Some(n) = self.max_inflight_jobs {
            w.u16_record(TLV_MAX_INFLIGHT_JOBS, n)?;
        }
        w.finish()?;
        Ok(out)
    }
}

impl QuoteRequest {
    /// Decodes an `lcp_quote_request` payload.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut env = EnvelopeParts::default();
        let mut task_kind = None;
        let mut params = None;
        let mut extra = Vec::new();
        for r in records(payload) {
            let r = r?;
            if env.take(&r)? {
                continue;
            }
            match r.tlv_type {
                TLV_TASK_KIND => task_kind = Some(read_utf8(r.value, "task_kind", true)?),
                TLV_PARAMS => params = Some(r.value.to_vec()),
                _ => extra.push(UnknownTlv::from_record(r)),
            }
        }
        Ok(Self { envelope: env.finish()?, task_kind: req(task_kind, "task_kind")?, params, extra })
    }

    /// Encodes the canonical payload.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        not_empty(&self.task_kind, "task_kind")?;
        let mut out = Vec::with_capacity(
            envelope_len(&self.envelope)
                + record_len(TLV_TASK_KIND, self.task_kind.len())
                + self.params.as_ref().map_or(0, |p| record_len(TLV_PARAMS, p.len()))
                + extra_len(&self.extra),
        );
        let mut w = TlvWriter::new(&mut out, &self.extra, LCP_MAX_RECORD_LEN);
        write_envelope(&mut w, &self.envelope)?;
        w.record(TLV_TASK_KIND, self.task_kind.as_bytes())?;
        if let Some(p) = &self.params {
            w.record(TLV_PARAMS, p)?;
        }
        w.finish()?;
        Ok(out)
    }
}

impl QuoteResponse {
    /// Decodes an `lcp_quote_response` payload.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut env = EnvelopeParts::default();
        let (mut price, mut qexp, mut hash, mut invoice) = (None, None, None, None);
        let mut extra = Vec::new();
        for r in records(payload) {
            let r = r?;
            if env.take(&r)? {
                continue;
            }
            match r.tlv_type {
                TLV_PRICE_MSAT => price = Some(read_tu64(r.value, "price_msat")?),
                TLV_QUOTE_EXPIRY => qexp = Some(read_tu64(r.value, "quote_expiry")?),
                TLV_TERMS_HASH => hash = Some(read_array32(r.value, "terms_hash")?),
                TLV_PAYMENT_REQUEST => invoice = Some(read_utf8(r.value, "payment_request", true)?),
                _ => extra.push(UnknownTlv::from_record(r)),
            }
        }
        Ok(Self {
            envelope: env.finish()?,
            price_msat: req(price, "price_msat")?,
            quote_expiry: req(qexp, "quote_expiry")?,
            terms_hash: req(hash, "terms_hash")?,
            payment_request: req(invoice, "payment_request")?,
            extra,
        })
    }

    /// Encodes the canonical payload.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        not_empty(&self.payment_request, "payment_request")?;
        let mut out = Vec::with_capacity(
            envelope_len(&self.envelope)
                + 20
                + 34
                + record_len(TLV_PAYMENT_REQUEST, self.payment_request.len())
                + extra_len(&self.extra),
        );
        let mut w = TlvWriter::new(&mut out, &self.extra, LCP_MAX_RECORD_LEN);
        write_envelope(&mut w, &self.envelope)?;
        w.tu64_record(TLV_PRICE_MSAT, self.price_msat)?;
        w.tu64_record(TLV_QUOTE_EXPIRY, self.quote_expiry)?;
        w.record(TLV_TERMS_HASH, &self.terms_hash)?;
        w.record(TLV_PAYMENT_REQUEST, self.payment_request.as_bytes())?;
        w.finish()?;
        Ok(out)
    }
}

impl LcpResult {
    /// Decodes an `lcp_result` payload.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut env = EnvelopeParts::default();
        let mut message: Option<TlvRecord<'_>> = None;
        let mut status = None;
        let (mut sid, mut hash, mut len, mut ctype, mut cenc) = (None, None, None, None, None);
        let mut extra = Vec::new();
        for r in records(payload) {
            let r = r?;
            if env.take(&r)? {
                continue;
            }
            match r.tlv_type {
                TLV_MESSAGE => {
                    read_utf8(r.value, "message", false)?;
                    message = Some(r);
                }
                TLV_STATUS => status = Some(read_u16_value(r.value, "status")?),
                TLV_RESULT_STREAM_ID => sid = Some(read_array32(r.value, "result_stream_id")?),
                TLV_RESULT_HASH => hash = Some(read_array32(r.value, "result_hash")?),
                TLV_RESULT_LEN => len = Some(read_tu64(r.value, "result_len")?),
                TLV_RESULT_CONTENT_TYPE => ctype = Some(read_utf8(r.value, "result_content_type", true)?),
                TLV_RESULT_CONTENT_ENCODING => cenc = Some(read_utf8(r.value, "result_content_encoding", true)?),
                _ => extra.push(UnknownTlv::from_record(r)),
            }
        }
        let envelope = env.finish()?;
        let status = req(status, "status")?;
        let text = |m: Option<TlvRecord<'_>>| -> Option<String> {
            // Validated as UTF-8 above.
            m.map(|r| String::from_utf8_lossy(r.value).into_owned())
        };
        let outcome = match status {
            0 => {
                if let Some(m) = message {
                    // Go drops the message of an ok result; keep it as an extra record so that
                    // re-encoding is exact. Extras are sorted: insert at its place.
                    let at = extra.partition_point(|x| x.tlv_type < TLV_MESSAGE);
                    extra.insert(at, UnknownTlv::from_record(m));
                }
                ResultOutcome::Ok(ResultOk {
                    result_stream_id: req(sid, "result_stream_id")?,
                    result_hash: req(hash, "result_hash")?,
                    result_len: req(len, "result_len")?,
                    result_content_type: req(ctype, "result_content_type")?,
                    result_content_encoding: req(cenc, "result_content_encoding")?,
                })
            }
            1 | 2 => {
                let present = [
                    (sid.is_some(), "result_stream_id"),
                    (hash.is_some(), "result_hash"),
                    (len.is_some(), "result_len"),
                    (ctype.is_some(), "result_content_type"),
                    (cenc.is_some(), "result_content_encoding"),
                ];
                if let Some((_, field)) = present.iter().find(|(p, _)| *p) {
                    return Err(WireError::NotAllowed {
                        field,
                        reason: "only an ok result carries result stream fields",
                    });
                }
                let message = text(message);
                if status == 1 {
                    ResultOutcome::Failed { message }
                } else {
                    ResultOutcome::Cancelled { message }
                }
            }
            other => {
                return Err(WireError::InvalidValue {
                    field: "status",
                    reason: format!("{other} is not 0 (ok), 1 (failed) or 2 (cancelled)"),
                })
            }
        };
        Ok(Self { envelope, outcome, extra })
    }

    /// Encodes the canonical payload.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let message = match &self.outcome {
            ResultOutcome::Ok(ok) => {
                not_empty(&ok.result_content_type, "result_content_type")?;
                not_empty(&ok.result_content_encoding, "result_content_encoding")?;
                // An ok result may carry TLV 81 as an extra record (accepted from Go peers);
                // it must still be text, as the decoder checks.
                if let Some(m) = self.extra.iter().find(|x| x.tlv_type == TLV_MESSAGE) {
                    read_utf8(&m.value, "message", false)?;
                }
                None
            }
            ResultOutcome::Failed { message } | ResultOutcome::Cancelled { message } => message.as_ref(),
        };
        let mut out = Vec::with_capacity(envelope_len(&self.envelope) + 200 + message.map_or(0, |m| m.len() + 4));
        let mut w = TlvWriter::new(&mut out, &self.extra, LCP_MAX_RECORD_LEN);
        write_envelope(&mut w, &self.envelope)?;
        if let Some(m) = message {
            w.record(TLV_MESSAGE, m.as_bytes())?;
        }
        w.u16_record(TLV_STATUS, self.outcome.status())?;
        if let ResultOutcome::Ok(ok) = &self.outcome {
            w.record(TLV_RESULT_STREAM_ID, &ok.result_stream_id)?;
            w.record(TLV_RESULT_HASH, &ok.result_hash)?;
            w.tu64_record(TLV_RESULT_LEN, ok.result_len)?;
            w.record(TLV_RESULT_CONTENT_TYPE, ok.result_content_type.as_bytes())?;
            w.record(TLV_RESULT_CONTENT_ENCODING, ok.result_content_encoding.as_bytes())?;
        }
        w.finish()?;
        Ok(out)
    }
}

impl StreamBegin {
    /// Decodes an `lcp_stream_begin` payload.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut env = EnvelopeParts::default();
        let (mut sid, mut kind, mut total, mut sha, mut ctype, mut cenc) = (None, None, None, None, None, None);
        let mut extra = Vec::new();
        for r in records(payload) {
            let r = r?;
            if env.take(&r)? {
                continue;
            }
            match r.tlv_type {
                TLV_STREAM_ID => sid = Some(read_array32(r.value, "stream_id")?),
                TLV_STREAM_KIND => kind = Some(StreamKind::from_code(read_u16_value(r.value, "stream_kind")?)?),
                TLV_TOTAL_LEN => total = Some(read_tu64(r.value, "total_len")?),
                TLV_SHA256 => sha = Some(read_array32(r.value, "sha256")?),
                TLV_CONTENT_TYPE => ctype = Some(read_utf8(r.value, "content_type", true)?),
                TLV_CONTENT_ENCODING => cenc = Some(read_utf8(r.value, "content_encoding", true)?),
                _ => extra.push(UnknownTlv::from_record(r)),
            }
        }
        Ok(Self {
            envelope: env.finish()?,
            stream_id: req(sid, "stream_id")?,
            stream_kind: req(kind, "stream_kind")?,
            total_len: total,
            sha256: sha,
            content_type: req(ctype, "content_type")?,
            content_encoding: req(cenc, "content_encoding")?,
            extra,
        })
    }

    /// Encodes the canonical payload.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        not_empty(&self.content_type, "content_type")?;
        not_empty(&self.content_encoding, "content_encoding")?;
        let mut out = Vec::with_capacity(
            envelope_len(&self.envelope)
                + 100
                + self.content_type.len()
                + self.content_encoding.len()
                + extra_len(&self.extra),
        );
        let mut w = TlvWriter::new(&mut out, &self.extra, LCP_MAX_RECORD_LEN);
        write_envelope(&mut w, &self.envelope)?;
        w.record(TLV_STREAM_ID, &self.stream_id)?;
        w.u16_record(TLV_STREAM_KIND, self.stream_kind.code())?;
        if let Some(t) = self.total_len {
            w.tu64_record(TLV_TOTAL_LEN, t)?;
        }
        if let Some(h) = &self.sha256 {
            w.record(TLV_SHA256, h)?;
        }
        w.record(TLV_CONTENT_TYPE, self.content_type.as_bytes())?;
        w.record(TLV_CONTENT_ENCODING, self.content_encoding.as_bytes())?;
        w.finish()?;
        Ok(out)
    }
}

/// Encoded size of a stream chunk payload without extra records.
pub fn chunk_encoded_len(expiry: u64, seq: u32, data_len: usize) -> usize {
    4 + 2 * 34
        + record_len(TLV_EXPIRY, tu64_len(expiry))
        + 34
        + record_len(TLV_SEQ, tu64_len(u64::from(seq)))
        + bigsize_len(TLV_DATA)
        + bigsize_len(data_len as u64)
        + data_len
}

impl StreamChunk {
    /// The chunk's deterministic `msg_id`.
    pub fn msg_id(&self) -> [u8; 32] {
        chunk_msg_id(&self.stream_id, self.seq)
    }

    /// The chunk's envelope (with its computed `msg_id`).
    pub fn envelope(&self) -> Envelope {
        Envelope {
            protocol_version: self.protocol_version,
            job_id: self.job_id,
            msg_id: self.msg_id(),
            expiry: self.expiry,
        }
    }

    /// Decodes an `lcp_stream_chunk` payload, checking the deterministic `msg_id`.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut env = EnvelopeParts::default();
        let (mut sid, mut seq, mut data) = (None, None, None);
        let mut extra = Vec::new();
        for r in records(payload) {
            let r = r?;
            if env.take(&r)? {
                continue;
            }
            match r.tlv_type {
                TLV_STREAM_ID => sid = Some(read_array32(r.value, "stream_id")?),
                TLV_SEQ => seq = Some(read_tu32(r.value, "seq")?),
                TLV_DATA => data = Some(r.value),
                _ => extra.push(UnknownTlv::from_record(r)),
            }
        }
        let envelope = env.finish()?;
        let stream_id = req(sid, "stream_id")?;
        let seq = req(seq, "seq")?;
        let data = req(data, "data")?;
        if envelope.msg_id != chunk_msg_id(&stream_id, seq) {
            return Err(WireError::InvalidValue {
                field: "msg_id",
                reason: "a stream chunk's msg_id must be SHA256(stream_id || u32be(seq))".into(),
            });
        }
        Ok(Self {
            protocol_version: envelope.protocol_version,
            job_id: envelope.job_id,
            expiry: envelope.expiry,
            stream_id,
            seq,
            data: data.to_vec(),
            extra,
        })
    }

    /// Encodes the canonical payload (with the deterministic `msg_id`).
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut out =
            Vec::with_capacity(chunk_encoded_len(self.expiry, self.seq, self.data.len()) + extra_len(&self.extra));
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Appends the canonical payload to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        let mut w = TlvWriter::new(out, &self.extra, LCP_MAX_RECORD_LEN);
        write_envelope(&mut w, &self.envelope())?;
        w.record(TLV_STREAM_ID, &self.stream_id)?;
        w.tu64_record(TLV_SEQ, u64::from(self.seq))?;
        w.record(TLV_DATA, &self.data)?;
        w.finish()
    }
}

impl StreamEnd {
    /// Decodes an `lcp_stream_end` payload.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut env = EnvelopeParts::default();
        let (mut sid, mut total, mut sha) = (None, None, None);
        let mut extra = Vec::new();
        for r in records(payload) {
            let r = r?;
            if env.take(&r)? {
                continue;
            }
            match r.tlv_type {
                TLV_STREAM_ID => sid = Some(read_array32(r.value, "stream_id")?),
                TLV_TOTAL_LEN => total = Some(read_tu64(r.value, "total_len")?),
                TLV_SHA256 => sha = Some(read_array32(r.value, "sha256")?),
                _ => extra.push(UnknownTlv::from_record(r)),
            }
        }
        Ok(Self {
            envelope: env.finish()?,
            stream_id: req(sid, "stream_id")?,
            total_len: req(total, "total_len")?,
            sha256: req(sha, "sha256")?,
            extra,
        })
    }

    /// Encodes the canonical payload.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::with_capacity(envelope_len(&self.envelope) + 80 + extra_len(&self.extra));
        let mut w = TlvWriter::new(&mut out, &self.extra, LCP_MAX_RECORD_LEN);
        write_envelope(&mut w, &self.envelope)?;
        w.record(TLV_STREAM_ID, &self.stream_id)?;
        w.tu64_record(TLV_TOTAL_LEN, self.total_len)?;
        w.record(TLV_SHA256, &self.sha256)?;
        w.finish()?;
        Ok(out)
    }
}

impl Cancel {
    /// Decodes an `lcp_cancel` payload.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut env = EnvelopeParts::default();
        let mut reason = None;
        let mut extra = Vec::new();
        for r in records(payload) {
            let r = r?;
            if env.take(&r)? {
                continue;
            }
            match r.tlv_type {
                TLV_REASON => reason = Some(read_utf8(r.value, "reason", false)?),
                _ => extra.push(UnknownTlv::from_record(r)),
            }
        }
        Ok(Self { envelope: env.finish()?, reason, extra })
    }

    /// Encodes the canonical payload.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::with_capacity(
            envelope_len(&self.envelope) + opt_str_len(TLV_REASON, &self.reason) + extra_len(&self.extra),
        );
        let mut w = TlvWriter::new(&mut out, &self.extra, LCP_MAX_RECORD_LEN);
        write_envelope(&mut w, &self.envelope)?;
        if let Some(r) = &self.reason {
            w.record(TLV_REASON, r.as_bytes())?;
        }
        w.finish()?;
        Ok(out)
    }
}

impl LcpError {
    /// Decodes an `lcp_error` payload.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut env = EnvelopeParts::default();
        let (mut code, mut message) = (None, None);
        let mut extra = Vec::new();
        for r in records(payload) {
            let r = r?;
            if env.take(&r)? {
                continue;
            }
            match r.tlv_type {
                TLV_CODE => code = Some(read_u16_value(r.value, "code")?),
                TLV_MESSAGE => message = Some(read_utf8(r.value, "message", false)?),
                _ => extra.push(UnknownTlv::from_record(r)),
            }
        }
        let envelope = env.finish()?;
        let code = req(code, "code")?;
        if code == 0 {
            return Err(WireError::InvalidValue { field: "code", reason: "error code 0 is not allowed".into() });
        }
        Ok(Self { envelope, code: ErrorCode::from_code(code), message, extra })
    }

    /// Encodes the canonical payload.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        if self.code.code() == 0 {
            return Err(WireError::InvalidValue { field: "code", reason: "error code 0 is not allowed".into() });
        }
        let mut out = Vec::with_capacity(
            envelope_len(&self.envelope) + 4 + opt_str_len(TLV_MESSAGE, &self.message) + extra_len(&self.extra),
        );
        let mut w = TlvWriter::new(&mut out, &self.extra, LCP_MAX_RECORD_LEN);
        write_envelope(&mut w, &self.envelope)?;
        w.u16_record(TLV_CODE, self.code.code())?;
        if let Some(m) = &self.message {
            w.record(TLV_MESSAGE, m.as_bytes())?;
        }
        w.finish()?;
        Ok(out)
    }
}
