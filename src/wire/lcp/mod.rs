//! LCP v0.2 messages (Lightning Compute Protocol), carried as BOLT #1 custom messages.
//!
//! - [`v02`]: type numbers, TLV numbers, limits (the only place they are written down);
//! - [`messages`]: the nine message structs with decoders and canonical encoders (section 1);
//! - [`params`]: the standard params TLV stream (section 1.2);
//! - [`terms`]: terms_hash (section 3);
//! - [`stream`]: chunk splitting and stream reassembly (section 4.2);
//! - [`codes`]: error codes (section 5).

pub mod codes;
pub mod messages;
pub mod params;
pub mod stream;
pub mod terms;
pub mod v02;

pub use codes::ErrorCode;
pub use messages::*;
pub use params::Params;
pub use stream::{
    chunk_data_len, ChunkDisposition, ChunkSplitter, ReassembledStream, Reassembler, ReassemblyLimits, StreamError,
};
pub use terms::{params_hash, Terms};

use crate::wire::error::WireError;

/// Any LCP v0.2 message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LcpMessage {
    /// `lcp_manifest`.
    Manifest(Manifest),
    /// `lcp_quote_request`.
    QuoteRequest(QuoteRequest),
    /// `lcp_quote_response`.
    QuoteResponse(QuoteResponse),
    /// `lcp_result`.
    Result(LcpResult),
    /// `lcp_stream_begin`.
    StreamBegin(StreamBegin),
    /// `lcp_stream_chunk`.
    StreamChunk(StreamChunk),
    /// `lcp_stream_end`.
    StreamEnd(StreamEnd),
    /// `lcp_cancel`.
    Cancel(Cancel),
    /// `lcp_error`.
    Error(LcpError),
}

impl LcpMessage {
    /// Decodes the payload of a custom message of type `msg_type`.
    pub fn decode(msg_type: u16, payload: &[u8]) -> Result<Self, WireError> {
        Ok(match msg_type {
            v02::MSG_MANIFEST => Self::Manifest(Manifest::decode(payload)?),
            v02::MSG_QUOTE_REQUEST => Self::QuoteRequest(QuoteRequest::decode(payload)?),
            v02::MSG_QUOTE_RESPONSE => Self::QuoteResponse(QuoteResponse::decode(payload)?),
            v02::MSG_RESULT => Self::Result(LcpResult::decode(payload)?),
            v02::MSG_STREAM_BEGIN => Self::StreamBegin(StreamBegin::decode(payload)?),
            v02::MSG_STREAM_CHUNK => Self::StreamChunk(StreamChunk::decode(payload)?),
            v02::MSG_STREAM_END => Self::StreamEnd(StreamEnd::decode(payload)?),
            v02::MSG_CANCEL => Self::Cancel(Cancel::decode(payload)?),
            v02::MSG_ERROR => Self::Error(LcpError::decode(payload)?),
            other => return Err(WireError::UnknownMessageType { msg_type: other }),
        })
    }

    /// Encodes to `(type, payload)` in canonical form.
    pub fn encode(&self) -> Result<(u16, Vec<u8>), WireError> {
        let payload = match self {
            Self::Manifest(m) => m.encode()?,
            Self::QuoteRequest(m) => m.encode()?,
            Self::QuoteResponse(m) => m.encode()?,
            Self::Result(m) => m.encode()?,
            Self::StreamBegin(m) => m.encode()?,
            Self::StreamChunk(m) => m.encode()?,
            Self::StreamEnd(m) => m.encode()?,
            Self::Cancel(m) => m.encode()?,
            Self::Error(m) => m.encode()?,
        };
        Ok((self.msg_type(), payload))
    }

    /// The message type number.
    pub fn msg_type(&self) -> u16 {
        match self {
            Self::Manifest(_) => v02::MSG_MANIFEST,
            Self::QuoteRequest(_) => v02::MSG_QUOTE_REQUEST,
            Self::QuoteResponse(_) => v02::MSG_QUOTE_RESPONSE,
            Self::Result(_) => v02::MSG_RESULT,
            Self::StreamBegin(_) => v02::MSG_STREAM_BEGIN,
            Self::StreamChunk(_) => v02::MSG_STREAM_CHUNK,
            Self::StreamEnd(_) => v02::MSG_STREAM_END,
            Self::Cancel(_) => v02::MSG_CANCEL,
            Self::Error(_) => v02::MSG_ERROR,
        }
    }

    /// The spec's message name (`lcp_manifest`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Manifest(_) => "lcp_manifest",
            Self::QuoteRequest(_) => "lcp_quote_request",
            Self::QuoteResponse(_) => "lcp_quote_response",
            Self::Result(_) => "lcp_result",
            Self::StreamBegin(_) => "lcp_stream_begin",
            Self::StreamChunk(_) => "lcp_stream_chunk",
            Self::StreamEnd(_) => "lcp_stream_end",
            Self::Cancel(_) => "lcp_cancel",
            Self::Error(_) => "lcp_error",
        }
    }

    /// The job the message belongs to (`None` for the connection-scoped manifest).
    pub fn job_id(&self) -> Option<[u8; 32]> {
        Some(match self {
            Self::Manifest(_) => return None,
            Self::QuoteRequest(m) => m.envelope.job_id,
            Self::QuoteResponse(m) => m.envelope.job_id,
            Self::Result(m) => m.envelope.job_id,
            Self::StreamBegin(m) => m.envelope.job_id,
            Self::StreamChunk(m) => m.job_id,
            Self::StreamEnd(m) => m.envelope.job_id,
            Self::Cancel(m) => m.envelope.job_id,
            Self::Error(m) => m.envelope.job_id,
        })
    }
}
