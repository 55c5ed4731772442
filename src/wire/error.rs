//! The error type shared by every decoder and encoder of the wire layer.

use thiserror::Error;

/// Why a message, a TLV stream or one of its fields could not be decoded or encoded.
///
/// Every variant names the field (or TLV type) it is about, so that a log line or a CLI error
/// says what was wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// The input ended before a value of the named field was complete.
    #[error("{field}: truncated (needed {needed} more bytes, {available} available)")]
    Truncated {
        /// Field being read.
        field: &'static str,
        /// Bytes still needed.
        needed: u64,
        /// Bytes that were left.
        available: usize,
    },
    /// A BigSize value used more bytes than its minimal encoding.
    #[error("{field}: non-minimal BigSize encoding")]
    NonMinimalBigSize {
        /// Field being read.
        field: &'static str,
    },
    /// TLV types were not strictly ascending (out of order or duplicated).
    #[error("TLV stream not canonical: type {tlv_type} follows type {previous}")]
    TlvNotAscending {
        /// Type of the offending record.
        tlv_type: u64,
        /// Type of the record before it.
        previous: u64,
    },
    /// A TLV record was longer than the stream allows.
    #[error("TLV type {tlv_type}: record length {len} exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// Type of the offending record.
        tlv_type: u64,
        /// Declared length.
        len: u64,
        /// Allowed maximum.
        max: usize,
    },
    /// An unknown even TLV type in a stream where the even/odd rule applies (BOLT #1).
    #[error("TLV type {tlv_type}: unknown even type (it's OK to be odd)")]
    UnknownEvenTlv {
        /// The unknown even type.
        tlv_type: u64,
    },
    /// A fixed-size field had the wrong length.
    #[error("{field}: length {len}, must be exactly {expected} bytes")]
    BadLength {
        /// Field name.
        field: &'static str,
        /// Length found.
        len: usize,
        /// Length required.
        expected: usize,
    },
    /// A truncated integer (tu32/tu64) was not minimal or too long.
    #[error("{field}: {reason}")]
    BadTruncatedInt {
        /// Field name.
        field: &'static str,
        /// What was wrong.
        reason: &'static str,
    },
    /// A required field was absent.
    #[error("{field}: required field missing")]
    Missing {
        /// Field name.
        field: &'static str,
    },
    /// A field that must not be present in this message was present.
    #[error("{field}: not allowed here ({reason})")]
    NotAllowed {
        /// Field name.
        field: &'static str,
        /// Why it is not allowed.
        reason: &'static str,
    },
    /// A field's value is outside its allowed domain.
    #[error("{field}: invalid value ({reason})")]
    InvalidValue {
        /// Field name.
        field: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A text field was not valid UTF-8.
    #[error("{field}: not valid UTF-8")]
    InvalidUtf8 {
        /// Field name.
        field: &'static str,
    },
    /// A text field that must be non-empty was empty.
    #[error("{field}: must not be empty")]
    Empty {
        /// Field name.
        field: &'static str,
    },
    /// Bytes were left after the last field of a fixed layout.
    #[error("{field}: {count} trailing bytes")]
    TrailingBytes {
        /// Field or structure name.
        field: &'static str,
        /// Number of bytes left over.
        count: usize,
    },
    /// An unknown record collides with a field the message defines (encoding only).
    #[error("TLV type {tlv_type}: extra record collides with a field of the message")]
    DuplicateRecord {
        /// Colliding type.
        tlv_type: u64,
    },
    /// The message type is not one this decoder handles.
    #[error("message type {msg_type}: not handled by this decoder")]
    UnknownMessageType {
        /// The message type.
        msg_type: u16,
    },
    /// A message was shorter than its 2-byte type.
    #[error("message: {len} bytes, shorter than the 2-byte type")]
    NoMessageType {
        /// Length of the input.
        len: usize,
    },
    /// A value did not fit the size limit of its encoding (e.g. a u16 length prefix).
    #[error("{field}: {len} bytes do not fit (maximum {max})")]
    TooLong {
        /// Field name.
        field: &'static str,
        /// Length that was asked for.
        len: usize,
        /// Maximum allowed.
        max: usize,
    },
}
