//! LCP error codes (`lcp_error.code`, LCP v0.2 section 5).

use std::fmt;

/// An `lcp_error` code. Codes outside 1..=12 are preserved as [`ErrorCode::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 1: protocol_version not supported.
    UnsupportedVersion,
    /// 2: task kind, model or provider not available.
    UnsupportedTask,
    /// 3: the quote has expired.
    QuoteExpired,
    /// 4: payment required (e.g. invoice creation failed).
    PaymentRequired,
    /// 5: payment invalid, request mismatch, unclassified backend error.
    PaymentInvalid,
    /// 6: a payload, stream or job exceeds a limit.
    PayloadTooLarge,
    /// 7: rate limited or upstream unavailable.
    RateLimited,
    /// 8: params missing or invalid.
    UnsupportedParams,
    /// 9: content encoding or content type not supported.
    UnsupportedEncoding,
    /// 10: message not valid in the current state.
    InvalidState,
    /// 11: stream chunk sequence gap.
    ChunkOutOfOrder,
    /// 12: stream length or hash mismatch.
    ChecksumMismatch,
    /// Any other code (0 is rejected by the decoder).
    Unknown(u16),
}

impl ErrorCode {
    /// All known codes, in numeric order.
    pub const KNOWN: [ErrorCode; 12] = [
        Self::UnsupportedVersion,
        Self::UnsupportedTask,
        Self::QuoteExpired,
        Self::PaymentRequired,
        Self::PaymentInvalid,
        Self::PayloadTooLarge,
        Self::RateLimited,
        Self::UnsupportedParams,
        Self::UnsupportedEncoding,
        Self::InvalidState,
        Self::ChunkOutOfOrder,
        Self::ChecksumMismatch,
    ];

    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            Self::UnsupportedVersion => 1,
            Self::UnsupportedTask => 2,
            Self::QuoteExpired => 3,
            Self::PaymentRequired => 4,
            Self::PaymentInvalid => 5,
            Self::PayloadTooLarge => 6,
            Self::RateLimited => 7,
            Self::UnsupportedParams => 8,
            Self::UnsupportedEncoding => 9,
            Self::InvalidState => 10,
            Self::ChunkOutOfOrder => 11,
            Self::ChecksumMismatch => 12,
            Self::Unknown(n) => n,
        }
    }

    /// The code for a number (unknown numbers are preserved).
    pub fn from_code(n: u16) -> Self {
        Self::KNOWN.iter().copied().find(|c| c.code() == n).unwrap_or(Self::Unknown(n))
    }

    /// The spec's snake_case name, or `None` for an unknown code.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::UnsupportedVersion => "unsupported_version",
            Self::UnsupportedTask => "unsupported_task",
            Self::QuoteExpired => "quote_expired",
            Self::PaymentRequired => "payment_required",
            Self::PaymentInvalid => "payment_invalid",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RateLimited => "rate_limited",
            Self::UnsupportedParams => "unsupported_params",
            Self::UnsupportedEncoding => "unsupported_encoding",
            Self::InvalidState => "invalid_state",
            Self::ChunkOutOfOrder => "chunk_out_of_order",
            Self::ChecksumMismatch => "checksum_mismatch",
            Self::Unknown(_) => return None,
        })
    }

    /// Parses a name as printed by [`fmt::Display`] (`unknown_<n>` for unknown codes).
    pub fn from_name(s: &str) -> Option<Self> {
        if let Some(n) = s.strip_prefix("unknown_") {
            return n.parse().ok().map(Self::from_code);
        }
        Self::KNOWN.iter().copied().find(|c| c.name() == Some(s))
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "unknown_{}", self.code()),
        }
    }
}

impl From<u16> for ErrorCode {
    fn from(n: u16) -> Self {
        Self::from_code(n)
    }
}

impl From<ErrorCode> for u16 {
    fn from(c: ErrorCode) -> u16 {
        c.code()
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::from_name(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown LCP error code name {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_round_trip() {
        for (i, c) in ErrorCode::KNOWN.iter().enumerate() {
            assert_eq!(usize::from(c.code()), i + 1);
            assert_eq!(ErrorCode::from_code(c.code()), *c);
            assert_eq!(ErrorCode::from_name(&c.to_string()), Some(*c));
        }
        assert_eq!(ErrorCode::from_code(12).to_string(), "checksum_mismatch");
        assert_eq!(ErrorCode::from_code(6).to_string(), "payload_too_large");
        assert_eq!(ErrorCode::from_code(99), ErrorCode::Unknown(99));
        assert_eq!(ErrorCode::Unknown(99).to_string(), "unknown_99");
        assert_eq!(ErrorCode::from_name("unknown_99"), Some(ErrorCode::Unknown(99)));
        assert_eq!(ErrorCode::from_name("nope"), None);
    }

    #[test]
    fn json_uses_names() {
        let j = serde_json::to_string(&ErrorCode::ChunkOutOfOrder).unwrap();
        assert_eq!(j, "\"chunk_out_of_order\"");
        let back: ErrorCode = serde_json::from_str(&j).unwrap();
        assert_eq!(back, ErrorCode::ChunkOutOfOrder);
        assert!(serde_json::from_str::<ErrorCode>("\"bogus\"").is_err());
    }
}
