//! Streams (LCP v0.2 section 4.2 step 5 and step 9): splitting bytes into `lcp_stream_chunk`
//! messages that fit a peer's `max_payload_bytes`, and reassembling and checking a stream.

use sha2::{Digest, Sha256};
use thiserror::Error;

use super::codes::ErrorCode;
use super::messages::{chunk_encoded_len, StreamBegin, StreamChunk, StreamEnd};
use super::v02::CONTENT_ENCODING_IDENTITY;

/// Why a stream could not be produced or accepted, with the LCP error code it maps to.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StreamError {
    /// `max_payload_bytes` leaves no room for even one data byte in a chunk.
    #[error("max_payload_bytes {max_payload_bytes}: too small for a stream chunk carrying data")]
    PayloadTooSmall {
        /// The peer's limit.
        max_payload_bytes: u32,
    },
    /// More than 2^32 chunks (the seq field is a tu32).
    #[error("seq: the stream needs more than 2^32 chunks")]
    SeqExhausted,
    /// The stream's content_encoding is not `identity`.
    #[error("content_encoding: {0:?} is not supported (only \"identity\")")]
    UnsupportedEncoding(String),
    /// The stream is (or announces) more bytes than allowed.
    #[error("{what}: {len} bytes exceed the limit of {limit}")]
    TooLarge {
        /// What overflowed (`total_len`, `stream data`).
        what: &'static str,
        /// Size reached or announced.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// Too many chunks (e.g. a flood of empty chunks).
    #[error("stream: more than {limit} chunks")]
    TooManyChunks {
        /// The chunk-count limit.
        limit: u32,
    },
    /// A chunk arrived with a seq above the next expected one.
    #[error("seq: expected {expected}, got {got}")]
    OutOfOrder {
        /// Next seq expected.
        expected: u32,
        /// Seq received.
        got: u32,
    },
    /// stream_end belongs to another stream.
    #[error("stream_id: stream_end is for another stream")]
    WrongStream,
    /// stream_end disagrees with stream_begin.
    #[error("{field}: stream_end disagrees with stream_begin")]
    EndDisagreesWithBegin {
        /// `total_len` or `sha256`.
        field: &'static str,
    },
    /// The received length differs from the announced one.
    #[error("total_len: announced {announced}, received {received} bytes")]
    LengthMismatch {
        /// Length in stream_end.
        announced: u64,
        /// Bytes received.
        received: u64,
    },
    /// The SHA-256 of the received bytes differs from the announced one.
    #[error("sha256: the received bytes do not hash to the announced value")]
    HashMismatch,
}

impl StreamError {
    /// The `lcp_error` code for this failure (6 payload_too_large, 9 unsupported_encoding,
    /// 10 invalid_state, 11 chunk_out_of_order, 12 checksum_mismatch).
    pub fn lcp_code(&self) -> ErrorCode {
        match self {
            Self::PayloadTooSmall { .. } | Self::SeqExhausted | Self::TooLarge { .. } | Self::TooManyChunks { .. } => {
                ErrorCode::PayloadTooLarge
            }
            Self::UnsupportedEncoding(_) => ErrorCode::UnsupportedEncoding,
            Self::WrongStream => ErrorCode::InvalidState,
            Self::OutOfOrder { .. } => ErrorCode::ChunkOutOfOrder,
            Self::EndDisagreesWithBegin { .. } | Self::LengthMismatch { .. } | Self::HashMismatch => {
                ErrorCode::ChecksumMismatch
            }
        }
    }
}

/// Number of data bytes the next chunk carries: start at `min(remaining, max_payload)` and
/// halve until the encoded chunk fits `max_payload` (the go-lcpd rule). `None` if not even one
/// byte fits.
pub fn chunk_data_len(expiry: u64, seq: u32, remaining: usize, max_payload: u32) -> Option<usize> {
    let max = max_payload as usize;
    let mut d = remaining.min(max);
    while d > 0 && chunk_encoded_len(expiry, seq, d) > max {
        d /= 2;
    }
    (d > 0).then_some(d)
}

/// Splits a byte stream of unknown total length into chunks, as the bytes become available.
///
/// Each call to [`ChunkSplitter::split`] cuts the given bytes into chunks immediately (no
/// buffering), so a streamed result is forwarded as it arrives. The splitter tracks the
/// running length and SHA-256 for the `stream_end` ([`ChunkSplitter::finish`]).
#[derive(Debug, Clone)]
pub struct ChunkSplitter {
    protocol_version: u16,
    job_id: [u8; 32],
    expiry: u64,
    stream_id: [u8; 32],
    max_payload: u32,
    next_seq: Option<u32>,
    total: u64,
    hasher: Sha256,
}

impl ChunkSplitter {
    /// A splitter for one stream; fails if `max_payload_bytes` cannot hold a 1-byte chunk.
    pub fn new(
        protocol_version: u16,
        job_id: [u8; 32],
        expiry: u64,
        stream_id: [u8; 32],
        max_payload_bytes: u32,
    ) -> Result<Self, StreamError> {
        chunk_data_len(expiry, 0, 1, max_payload_bytes).ok_or(StreamError::PayloadTooSmall { max_payload_bytes })?;
        Ok(Self {
            protocol_version,
            job_id,
            expiry,
            stream_id,
            max_payload: max_payload_bytes,
            next_seq: Some(0),
            total: 0,
            hasher: Sha256::new(),
        })
    }

    /// Cuts `data` into chunks (an iterator; an empty slice yields nothing).
    pub fn split<'s, 'd>(&'s mut self, data: &'d [u8]) -> Chunks<'s, 'd> {
        Chunks { splitter: self, rest: data }
    }

    /// Bytes emitted so far.
    pub fn total_len(&self) -> u64 {
        self.total
    }

    /// Number of chunks emitted so far.
    pub fn chunks_emitted(&self) -> u64 {
        self.next_seq.map_or(1 << 32, u64::from)
    }

    /// `(total_len, sha256)` of everything emitted, for `stream_end`.
    pub fn finish(self) -> (u64, [u8; 32]) {
        (self.total, self.hasher.finalize().into())
    }
}

/// Iterator returned by [`ChunkSplitter::split`].
pub struct Chunks<'s, 'd> {
    splitter: &'s mut ChunkSplitter,
    rest: &'d [u8],
}

impl Iterator for Chunks<'_, '_> {
    type Item = Result<StreamChunk, StreamError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let s = &mut *self.splitter;
        let Some(seq) = s.next_seq else {
            self.rest = &[];
            return Some(Err(StreamError::SeqExhausted));
        };
        let Some(n) = chunk_data_len(s.expiry, seq, self.rest.len(), s.max_payload) else {
            self.rest = &[];
            return Some(Err(StreamError::PayloadTooSmall { max_payload_bytes: s.max_payload }));
        };
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        s.hasher.update(head);
        s.total += n as u64;
        s.next_seq = seq.checked_add(1);
        Some(Ok(StreamChunk {
            protocol_version: s.protocol_version,
            job_id: s.job_id,
            expiry: s.expiry,
            stream_id: s.stream_id,
            seq,
            data: head.to_vec(),
            extra: Vec::new(),
        }))
    }
}

/// Limits applied while reassembling a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// Maximum decoded bytes (the caller passes min(max_stream_bytes, what is left of
    /// max_job_bytes)).
    pub max_bytes: u64,
    /// Maximum number of chunks (guards against floods of empty chunks).
    pub max_chunks: u32,
}

impl ReassemblyLimits {
    /// Limits with `max_bytes` and a chunk count of one per byte plus 1024.
    pub fn bytes(max_bytes: u64) -> Self {
        Self { max_bytes, max_chunks: u32::try_from(max_bytes.saturating_add(1024)).unwrap_or(u32::MAX) }
    }
}

/// What [`Reassembler::push`] did with a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkDisposition {
    /// The data was appended.
    Appended,
    /// `seq` was below the next expected one: a duplicate, ignored.
    Duplicate,
    /// The chunk belongs to another stream: ignored.
    OtherStream,
}

/// A completed, checked stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReassembledStream {
    /// The stream's id.
    pub stream_id: [u8; 32],
    /// The decoded bytes.
    pub data: Vec<u8>,
    /// Their SHA-256.
    pub sha256: [u8; 32],
    /// From stream_begin.
    pub content_type: String,
    /// From stream_begin.
    pub content_encoding: String,
}

/// Reassembles one stream: chunks in seq order, length and hash checks against the limits,
/// stream_begin and stream_end.
#[derive(Debug, Clone)]
pub struct Reassembler {
    stream_id: [u8; 32],
    announced_len: Option<u64>,
    announced_sha: Option<[u8; 32]>,
    content_type: String,
    content_encoding: String,
    limits: ReassemblyLimits,
    next_seq: u64,
    buf: Vec<u8>,
    hasher: Sha256,
}

impl Reassembler {
    /// Starts a stream from its `stream_begin`. Fails with `unsupported_encoding` for a
    /// content_encoding other than `identity` and `payload_too_large` if `total_len` is over
    /// the limit.
    pub fn new(begin: &StreamBegin, limits: ReassemblyLimits) -> Result<Self, StreamError> {
        if begin.content_encoding != CONTENT_ENCODING_IDENTITY {
            return Err(StreamError::UnsupportedEncoding(begin.content_encoding.clone()));
        }
        if let Some(t) = begin.total_len {
            if t > limits.max_bytes {
                return Err(StreamError::TooLarge { what: "total_len", len: t, limit: limits.max_bytes });
            }
        }
        let cap = begin.total_len.unwrap_or(0).min(limits.max_bytes).min(1 << 24);
        Ok(Self {
            stream_id: begin.stream_id,
            announced_len: begin.total_len,
            announced_sha: begin.sha256,
            content_type: begin.content_type.clone(),
            content_encoding: begin.content_encoding.clone(),
            limits,
            next_seq: 0,
            // cap <= 16 MiB.
            buf: Vec::with_capacity(cap as usize),
            hasher: Sha256::new(),
        })
    }

    /// The stream id.
    pub fn stream_id(&self) -> [u8; 32] {
        self.stream_id
    }

    /// Bytes received so far.
    pub fn received(&self) -> &[u8] {
        &self.buf
    }

    /// Accepts one chunk: duplicates (seq below the next expected) and chunks of another
    /// stream are ignored; a gap is `chunk_out_of_order`; growing past the announced length or
    /// the limit is `payload_too_large`.
    pub fn push(&mut self, chunk: &StreamChunk) -> Result<ChunkDisposition, StreamError> {
        if chunk.stream_id != self.stream_id {
            return Ok(ChunkDisposition::OtherStream);
        }
        let seq = u64::from(chunk.seq);
        if seq < self.next_seq {
            return Ok(ChunkDisposition::Duplicate);
        }
        if seq > self.next_seq {
            return Err(StreamError::OutOfOrder {
                // next_seq <= seq <= u32::MAX here.
                expected: self.next_seq as u32,
                got: chunk.seq,
            });
        }
        if self.next_seq >= u64::from(self.limits.max_chunks) {
            return Err(StreamError::TooManyChunks { limit: self.limits.max_chunks });
        }
        let len = self.buf.len() as u64 + chunk.data.len() as u64;
        let limit = self.announced_len.map_or(self.limits.max_bytes, |a| a.min(self.limits.max_bytes));
        if len > limit {
            return Err(StreamError::TooLarge { what: "stream data", len, limit });
        }
        self.buf.extend_from_slice(&chunk.data);
        self.hasher.update(&chunk.data);
        self.next_seq += 1;
        Ok(ChunkDisposition::Appended)
    }

    /// Completes the stream with its `stream_end`, checking length and hash.
    pub fn finish(self, end: &StreamEnd) -> Result<ReassembledStream, StreamError> {
        if end.stream_id != self.stream_id {
            return Err(StreamError::WrongStream);
        }
        if self.announced_len.is_some_and(|l| l != end.total_len) {
            return Err(StreamError::EndDisagreesWithBegin { field: "total_len" });
        }
        if self.announced_sha.is_some_and(|h| h != end.sha256) {
            return Err(StreamError::EndDisagreesWithBegin { field: "sha256" });
        }
        let received = self.buf.len() as u64;
        if received != end.total_len {
            return Err(StreamError::LengthMismatch { announced: end.total_len, received });
        }
        let sha256: [u8; 32] = self.hasher.finalize().into();
        if sha256 != end.sha256 {
            return Err(StreamError::HashMismatch);
        }
        Ok(ReassembledStream {
            stream_id: self.stream_id,
            data: self.buf,
            sha256,
            content_type: self.content_type,
            content_encoding: self.content_encoding,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::lcp::messages::Envelope;

    const SID: [u8; 32] = [7; 32];

    fn begin(total_len: Option<u64>, sha256: Option<[u8; 32]>, encoding: &str) -> StreamBegin {
        StreamBegin {
            envelope: Envelope { protocol_version: 2, job_id: [1; 32], msg_id: [2; 32], expiry: 1234 },
            stream_id: SID,
            stream_kind: crate::wire::lcp::messages::StreamKind::Input,
            total_len,
            sha256,
            content_type: "application/json; charset=utf-8".into(),
            content_encoding: encoding.into(),
            extra: vec![],
        }
    }

    fn end(total_len: u64, sha256: [u8; 32]) -> StreamEnd {
        StreamEnd { envelope: begin(None, None, "identity").envelope, stream_id: SID, total_len, sha256, extra: vec![] }
    }

    fn chunks(data: &[u8], max_payload: u32) -> Vec<StreamChunk> {
        let mut s = ChunkSplitter::new(2, [1; 32], 1234, SID, max_payload).unwrap();
        s.split(data).collect::<Result<_, _>>().unwrap()
    }

    fn sha(d: &[u8]) -> [u8; 32] {
        Sha256::digest(d).into()
    }

    #[test]
    fn go_halving_rule_with_default_payload() {
        // With max_payload_bytes 16384 the first chunks carry 8192 data bytes.
        let data = vec![0x5a; 20_000];
        let c = chunks(&data, 16_384);
        let sizes: Vec<usize> = c.iter().map(|c| c.data.len()).collect();
        // 20000 -> 16384 does not fit -> 8192; the 11808 left fit whole.
        assert_eq!(sizes, vec![8192, 11_808]);
        assert_eq!(chunk_data_len(1234, 0, 20_000, 16_384), Some(8192));
        let big = vec![0u8; 40_000];
        let sizes: Vec<usize> = chunks(&big, 16_384).iter().map(|c| c.data.len()).collect();
        assert_eq!(sizes, vec![8192, 8192, 8192, 15_424]);
        for (i, c) in c.iter().enumerate() {
            assert_eq!(c.seq as usize, i);
            assert!(c.encode().unwrap().len() <= 16_384);
        }
    }

    #[test]
    fn splitter_needs_room_for_one_byte() {
        assert_eq!(
            ChunkSplitter::new(2, [1; 32], 1234, SID, 100).unwrap_err(),
            StreamError::PayloadTooSmall { max_payload_bytes: 100 }
        );
        // The smallest limit that fits: envelope + stream_id + seq + data header + 1 byte.
        let min = chunk_encoded_len(1234, 0, 1) as u32;
        assert!(ChunkSplitter::new(2, [1; 32], 1234, SID, min).is_ok());
        assert!(ChunkSplitter::new(2, [1; 32], 1234, SID, min - 1).is_err());
    }

    #[test]
    fn reassembles_and_checks() {
        let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let c = chunks(&data, 1000);
        let mut r = Reassembler::new(&begin(Some(5000), Some(sha(&data)), "identity"), ReassemblyLimits::bytes(10_000))
            .unwrap();
        for ch in &c {
            assert_eq!(r.push(ch).unwrap(), ChunkDisposition::Appended);
        }
        // A repeated chunk is a duplicate, not an error.
        assert_eq!(r.push(&c[0]).unwrap(), ChunkDisposition::Duplicate);
        let out = r.finish(&end(5000, sha(&data))).unwrap();
        assert_eq!(out.data, data);
    }

    #[test]
    fn gap_is_chunk_out_of_order() {
        let data = vec![1u8; 3000];
        let c = chunks(&data, 1000);
        let mut r = Reassembler::new(&begin(None, None, "identity"), ReassemblyLimits::bytes(1 << 20)).unwrap();
        r.push(&c[0]).unwrap();
        let e = r.push(&c[2]).unwrap_err();
        assert_eq!(e, StreamError::OutOfOrder { expected: 1, got: 2 });
        assert_eq!(e.lcp_code(), ErrorCode::ChunkOutOfOrder);
    }

    #[test]
    fn limits_are_payload_too_large() {
        let e = Reassembler::new(&begin(Some(101), None, "identity"), ReassemblyLimits::bytes(100)).unwrap_err();
        assert_eq!(e.lcp_code(), ErrorCode::PayloadTooLarge);
        // Running length over the limit without an announced length.
        let c = chunks(&[0u8; 300], 1000);
        let mut r = Reassembler::new(&begin(None, None, "identity"), ReassemblyLimits::bytes(200)).unwrap();
        let e = r.push(&c[0]).unwrap_err();
        assert!(matches!(e, StreamError::TooLarge { len: 300, limit: 200, .. }));
        // Running length over the announced total_len.
        let mut r = Reassembler::new(&begin(Some(10), None, "identity"), ReassemblyLimits::bytes(1000)).unwrap();
        assert_eq!(r.push(&c[0]).unwrap_err().lcp_code(), ErrorCode::PayloadTooLarge);
        // A flood of empty chunks.
        let mut r = Reassembler::new(&begin(None, None, "identity"), ReassemblyLimits { max_bytes: 10, max_chunks: 2 })
            .unwrap();
        let mut empty = c[0].clone();
        empty.data.clear();
        for seq in 0..2 {
            empty.seq = seq;
            r.push(&empty).unwrap();
        }
        empty.seq = 2;
        assert_eq!(r.push(&empty).unwrap_err(), StreamError::TooManyChunks { limit: 2 });
    }

    #[test]
    fn non_identity_encoding_is_unsupported_encoding() {
        let e = Reassembler::new(&begin(None, None, "gzip"), ReassemblyLimits::bytes(100)).unwrap_err();
        assert_eq!(e.lcp_code(), ErrorCode::UnsupportedEncoding);
    }

    #[test]
    fn end_mismatches_are_checksum_mismatch() {
        let data = b"hello world".to_vec();
        let c = chunks(&data, 1000);
        let fresh = |b: StreamBegin| {
            let mut r = Reassembler::new(&b, ReassemblyLimits::bytes(1000)).unwrap();
            r.push(&c[0]).unwrap();
            r
        };
        let plain = || begin(None, None, "identity");
        // Hash mismatch.
        let e = fresh(plain()).finish(&end(11, [0; 32])).unwrap_err();
        assert_eq!(e, StreamError::HashMismatch);
        assert_eq!(e.lcp_code(), ErrorCode::ChecksumMismatch);
        // Length mismatch.
        let e = fresh(plain()).finish(&end(12, sha(&data))).unwrap_err();
        assert_eq!(e, StreamError::LengthMismatch { announced: 12, received: 11 });
        assert_eq!(e.lcp_code(), ErrorCode::ChecksumMismatch);
        // end disagrees with begin.
        let e = fresh(begin(Some(11), Some([9; 32]), "identity")).finish(&end(11, sha(&data))).unwrap_err();
        assert_eq!(e, StreamError::EndDisagreesWithBegin { field: "sha256" });
        assert_eq!(e.lcp_code(), ErrorCode::ChecksumMismatch);
        // end of another stream.
        let mut other = end(11, sha(&data));
        other.stream_id = [8; 32];
        assert_eq!(fresh(plain()).finish(&other).unwrap_err().lcp_code(), ErrorCode::InvalidState);
        // A chunk of another stream is ignored.
        let mut r = fresh(plain());
        let mut foreign = c[0].clone();
        foreign.stream_id = [8; 32];
        assert_eq!(r.push(&foreign).unwrap(), ChunkDisposition::OtherStream);
    }

    #[test]
    fn empty_stream() {
        let mut s = ChunkSplitter::new(2, [1; 32], 1234, SID, 16_384).unwrap();
        assert_eq!(s.split(&[]).count(), 0);
        let (len, hash) = s.finish();
        assert_eq!(len, 0);
        let r = Reassembler::new(&begin(Some(0), Some(hash), "identity"), ReassemblyLimits::bytes(0)).unwrap();
        assert!(r.finish(&end(0, hash)).unwrap().data.is_empty());
    }
}
