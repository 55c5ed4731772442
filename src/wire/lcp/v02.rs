//! LCP v0.2 numbering: message types, TLV types and limits, in one place.
//!
//! A later protocol version (v0.3 renumbers everything) gets its own file next to this one.

/// `protocol_version` value of LCP v0.2 (`major*100+minor` would be 2).
pub const PROTOCOL_VERSION: u16 = 2;

/// Message type of `lcp_manifest`.
pub const MSG_MANIFEST: u16 = 42081;
/// Message type of `lcp_quote_request`.
pub const MSG_QUOTE_REQUEST: u16 = 42083;
/// Message type of `lcp_quote_response`.
pub const MSG_QUOTE_RESPONSE: u16 = 42085;
/// Message type of `lcp_result`.
pub const MSG_RESULT: u16 = 42087;
/// Message type of `lcp_stream_begin`.
pub const MSG_STREAM_BEGIN: u16 = 42089;
/// Message type of `lcp_stream_chunk`.
pub const MSG_STREAM_CHUNK: u16 = 42091;
/// Message type of `lcp_stream_end`.
pub const MSG_STREAM_END: u16 = 42093;
/// Message type of `lcp_cancel`.
pub const MSG_CANCEL: u16 = 42095;
/// Message type of `lcp_error`.
pub const MSG_ERROR: u16 = 42097;

/// Lowest LCP v0.2 message type.
pub const MSG_FIRST: u16 = MSG_MANIFEST;
/// Highest LCP v0.2 message type.
pub const MSG_LAST: u16 = MSG_ERROR;

/// True for the nine (odd) LCP v0.2 message types.
pub fn is_lcp_type(t: u16) -> bool {
    (MSG_FIRST..=MSG_LAST).contains(&t) && t % 2 == 1
}

// Envelope (all job-scope messages; protocol_version also in the manifest).
/// TLV `protocol_version` (u16).
pub const TLV_PROTOCOL_VERSION: u64 = 1;
/// TLV `job_id` (32 bytes).
pub const TLV_JOB_ID: u64 = 2;
/// TLV `msg_id` (32 bytes).
pub const TLV_MSG_ID: u64 = 3;
/// TLV `expiry` (tu64 unix seconds).
pub const TLV_EXPIRY: u64 = 4;

// Manifest.
/// TLV `max_payload_bytes` (tu32).
pub const TLV_MAX_PAYLOAD_BYTES: u64 = 11;
/// TLV `supported_tasks` (bytes_list of task TLV streams).
pub const TLV_SUPPORTED_TASKS: u64 = 12;
/// TLV `max_stream_bytes` (tu64).
pub const TLV_MAX_STREAM_BYTES: u64 = 14;
/// TLV `max_job_bytes` (tu64).
pub const TLV_MAX_JOB_BYTES: u64 = 15;
/// TLV `max_inflight_jobs` (u16).
pub const TLV_MAX_INFLIGHT_JOBS: u64 = 16;

// Quote request / task templates.
/// TLV `task_kind` (utf8); also inside a `supported_tasks` element.
pub const TLV_TASK_KIND: u64 = 20;
/// TLV `params` / `params_template` (bytes).
pub const TLV_PARAMS: u64 = 22;

// Quote response.
/// TLV `price_msat` (tu64).
pub const TLV_PRICE_MSAT: u64 = 30;
/// TLV `quote_expiry` (tu64).
pub const TLV_QUOTE_EXPIRY: u64 = 31;
/// TLV `terms_hash` (32 bytes).
pub const TLV_TERMS_HASH: u64 = 32;
/// TLV `payment_request` (utf8 BOLT11).
pub const TLV_PAYMENT_REQUEST: u64 = 33;

// Cancel / error / result.
/// TLV `reason` of `lcp_cancel` (utf8).
pub const TLV_REASON: u64 = 70;
/// TLV `code` of `lcp_error` (u16).
pub const TLV_CODE: u64 = 80;
/// TLV `message` of `lcp_error` and of a non-ok `lcp_result` (utf8).
pub const TLV_MESSAGE: u64 = 81;
/// TLV `status` of `lcp_result` (u16).
pub const TLV_STATUS: u64 = 100;
/// TLV `result_stream_id`.
pub const TLV_RESULT_STREAM_ID: u64 = 101;
/// TLV `result_hash`.
pub const TLV_RESULT_HASH: u64 = 102;
/// TLV `result_len` (tu64).
pub const TLV_RESULT_LEN: u64 = 103;
/// TLV `result_content_type` (utf8).
pub const TLV_RESULT_CONTENT_TYPE: u64 = 104;
/// TLV `result_content_encoding` (utf8).
pub const TLV_RESULT_CONTENT_ENCODING: u64 = 105;

// Streams.
/// TLV `stream_id` (32 bytes).
pub const TLV_STREAM_ID: u64 = 90;
/// TLV `stream_kind` (u16).
pub const TLV_STREAM_KIND: u64 = 91;
/// TLV `total_len` (tu64).
pub const TLV_TOTAL_LEN: u64 = 92;
/// TLV `sha256` (32 bytes).
pub const TLV_SHA256: u64 = 93;
/// TLV `content_type` (utf8).
pub const TLV_CONTENT_TYPE: u64 = 94;
/// TLV `content_encoding` (utf8).
pub const TLV_CONTENT_ENCODING: u64 = 95;
/// TLV `seq` (tu32).
pub const TLV_SEQ: u64 = 96;
/// TLV `data` (bytes).
pub const TLV_DATA: u64 = 97;

// Standard params stream (openai.* task kinds).
/// Params TLV `model` (utf8, non-empty).
pub const PARAMS_TLV_MODEL: u64 = 1;

// Terms TLV stream (hashed into terms_hash), ascending.
/// Terms TLV `protocol_version` (u16).
pub const TERMS_TLV_PROTOCOL_VERSION: u64 = 1;
/// Terms TLV `job_id` (32 bytes).
pub const TERMS_TLV_JOB_ID: u64 = 2;
/// Terms TLV `price_msat` (tu64).
pub const TERMS_TLV_PRICE_MSAT: u64 = 3;
/// Terms TLV `quote_expiry` (tu64).
pub const TERMS_TLV_QUOTE_EXPIRY: u64 = 4;
/// Terms TLV `task_kind` (utf8).
pub const TERMS_TLV_TASK_KIND: u64 = 20;
/// Terms TLV `input_hash` (32 bytes).
pub const TERMS_TLV_INPUT_HASH: u64 = 50;
/// Terms TLV `params_hash` (32 bytes).
pub const TERMS_TLV_PARAMS_HASH: u64 = 51;
/// Terms TLV `input_len` (tu64).
pub const TERMS_TLV_INPUT_LEN: u64 = 52;
/// Terms TLV `input_content_type` (utf8).
pub const TERMS_TLV_INPUT_CONTENT_TYPE: u64 = 53;
/// Terms TLV `input_content_encoding` (utf8).
pub const TERMS_TLV_INPUT_CONTENT_ENCODING: u64 = 54;

// Limits and defaults.
/// Default `max_payload_bytes` of a go-lcpd manifest.
pub const DEFAULT_MAX_PAYLOAD_BYTES: u32 = 16_384;
/// Default `max_stream_bytes` (4 MiB).
pub const DEFAULT_MAX_STREAM_BYTES: u64 = 4_194_304;
/// Default `max_job_bytes` (8 MiB).
pub const DEFAULT_MAX_JOB_BYTES: u64 = 8_388_608;
/// `supported_tasks` bytes_list: maximum number of elements.
pub const BYTES_LIST_MAX_ITEMS: u64 = 1024;
/// `supported_tasks` bytes_list: maximum sum of element lengths (1 MiB).
pub const BYTES_LIST_MAX_TOTAL: u64 = 1 << 20;
/// The only content encoding defined by v0.2.
pub const CONTENT_ENCODING_IDENTITY: &str = "identity";
/// TLV of our `lcp_manifest` extension (odd, so every other implementation ignores it): "I do
/// not hold your manifest; please answer with yours". Sent by a node whose LCP daemon joined a
/// connection that was already up (a restart), where the reference's rules would never send it
/// the peer's manifest again. Empty value.
pub const TLV_MANIFEST_WANT_REPLY: u64 = 1001;
/// TLV of our `lcp_manifest` extension (odd): "this manifest answers yours (or updates it while
/// I hold yours); do not answer it". Our nodes answer every manifest without it, once, so two of
/// them never answer each other's answers. Empty value.
pub const TLV_MANIFEST_NO_REPLY: u64 = 1003;
/// Task kind for OpenAI chat completions.
pub const TASK_OPENAI_CHAT: &str = "openai.chat_completions.v1";
/// Task kind for the OpenAI Responses API.
pub const TASK_OPENAI_RESPONSES: &str = "openai.responses.v1";
