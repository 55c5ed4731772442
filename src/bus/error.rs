//! Bus errors and the small set of stable error codes every service maps its errors into.

use serde::{Deserialize, Serialize};

/// Stable error codes carried over the bus. A service error enum maps each of its variants to one
/// of these with an exhaustive `match` (see [`ToErrorCode`]), so a new error can never silently
/// become "unknown". Numbers are part of the bus protocol: never renumber, only append.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u16)]
pub enum ErrorCode {
    /// The request was malformed or a value was out of range.
    InvalidArgument = 1,
    /// The thing asked about does not exist.
    NotFound = 2,
    /// The system is not in a state where the request can be honoured.
    FailedPrecondition = 3,
    /// The service (or one it depends on) cannot be reached now; retrying may help.
    Unavailable = 4,
    /// A limit was hit.
    ResourceExhausted = 5,
    /// The request did not finish in time.
    DeadlineExceeded = 6,
    /// The request was cancelled.
    Cancelled = 7,
    /// The caller may not do this.
    PermissionDenied = 8,
    /// The service does not implement this request.
    Unimplemented = 9,
    /// A bug or an unexpected failure inside the service.
    Internal = 10,
    /// The thing to create exists already.
    AlreadyExists = 11,
}

impl ErrorCode {
    /// Short snake_case name, as printed by `lcp-cli`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::NotFound => "not_found",
            ErrorCode::FailedPrecondition => "failed_precondition",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::ResourceExhausted => "resource_exhausted",
            ErrorCode::DeadlineExceeded => "deadline_exceeded",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::Unimplemented => "unimplemented",
            ErrorCode::Internal => "internal",
            ErrorCode::AlreadyExists => "already_exists",
        }
    }
}

/// Implemented by every service error enum: the exhaustive mapping to a stable bus code.
pub trait ToErrorCode {
    /// The bus code for this error.
    fn code(&self) -> ErrorCode;
}

/// An error as it travels over the bus, in a reply to a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{}: {message}", code.name())]
pub struct RemoteError {
    /// Stable code.
    pub code: ErrorCode,
    /// Human-readable, one line.
    pub message: String,
}

impl RemoteError {
    /// Builds a remote error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// From any service error that maps itself to a code.
    pub fn from_err<E: ToErrorCode + std::fmt::Display>(e: &E) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

/// Errors of the bus itself.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error(transparent)]
    Endpoint(#[from] super::EndpointError),
    #[error("zeromq: {0}")]
    Zmq(#[from] zmq::Error),
    #[error("bus frame: {0}")]
    Decode(String),
    #[error("bus envelope version {0} is not supported (this build speaks {ver})", ver = super::envelope::BUS_VERSION)]
    Version(u16),
    #[error("bus keys: {0}")]
    Keys(String),
    #[error("the bus is closed")]
    Closed,
    #[error("no reply from {to} within {ms} ms")]
    Timeout { to: String, ms: u128 },
    #[error("the outgoing bus queue is full (the broker is not keeping up)")]
    Backpressure,
    #[error("the broker did not answer the readiness handshake within {0} ms")]
    NotReady(u128),
    #[error("{0}")]
    Remote(#[from] RemoteError),
    #[error("the incoming queue of this bus handle was taken already")]
    Taken,
    #[error("unexpected reply: {0}")]
    UnexpectedReply(String),
}

impl ToErrorCode for BusError {
    fn code(&self) -> ErrorCode {
        match self {
            BusError::Endpoint(_) | BusError::Decode(_) | BusError::Version(_) => ErrorCode::InvalidArgument,
            BusError::Keys(_) => ErrorCode::PermissionDenied,
            BusError::Zmq(_) | BusError::Closed | BusError::NotReady(_) => ErrorCode::Unavailable,
            BusError::Timeout { .. } => ErrorCode::DeadlineExceeded,
            BusError::Backpressure => ErrorCode::ResourceExhausted,
            BusError::Remote(r) => r.code,
            BusError::UnexpectedReply(_) | BusError::Taken => ErrorCode::Internal,
        }
    }
}
