//! payd's error type and its mapping to stable bus codes.

use super::backend::PaydError;
use crate::bus::{BusError, ErrorCode, RemoteError, ToErrorCode};

/// Everything that can go wrong in payd.
#[derive(Debug, thiserror::Error)]
pub enum PaydServiceError {
    #[error(transparent)]
    Datadir(#[from] crate::datadir::DatadirError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("channel engine: {0}")]
    Engine(String),
    #[error("payment backend: {0}")]
    Backend(#[from] PaydError),
}

impl ToErrorCode for PaydServiceError {
    fn code(&self) -> ErrorCode {
        match self {
            PaydServiceError::Datadir(_) | PaydServiceError::Store(_) => ErrorCode::Internal,
            PaydServiceError::Bus(e) => e.code(),
            PaydServiceError::Engine(_) => ErrorCode::Internal,
            PaydServiceError::Backend(e) => e.code(),
        }
    }
}

/// Every backend error has one stable code: refused checks and states that forbid the request
/// are `failed_precondition` (nothing was paid), bad arguments `invalid_argument`, an unreachable
/// backend `unavailable`, an unknown outcome after the timeout `deadline_exceeded`.
impl ToErrorCode for PaydError {
    fn code(&self) -> ErrorCode {
        match self {
            PaydError::InvalidInvoice { .. } | PaydError::InvalidArgument { .. } => ErrorCode::InvalidArgument,
            PaydError::WrongNetwork { .. }
            | PaydError::MissingAmount
            | PaydError::WrongAmount { .. }
            | PaydError::WrongPayee { .. }
            | PaydError::MissingDescriptionHash
            | PaydError::WrongDescriptionHash { .. }
            | PaydError::InvoiceExpired { .. }
            | PaydError::InvoiceOutlivesQuote { .. }
            | PaydError::InsufficientCapacity { .. }
            | PaydError::PaymentFailed { .. }
            | PaydError::ChainSourceRequired { .. }
            | PaydError::DevnetOnly { .. }
            | PaydError::PeerProtocol { .. }
            | PaydError::PeerNotConnected { .. }
            | PaydError::Ldk { .. }
            | PaydError::BackendRefused { .. } => ErrorCode::FailedPrecondition,
            PaydError::Timeout { .. } | PaydError::OperationTimeout { .. } => ErrorCode::DeadlineExceeded,
            // Not `failed_precondition`, which says nothing was paid: the outcome is not known
            // and never will be. payd's `Pay` answers it with `PaydApi::PaymentStranded` instead.
            PaydError::PaymentStranded { .. } => ErrorCode::DeadlineExceeded,
            // No usable channel *yet* (e.g. a peer reconnecting after a restart): nothing was sent,
            // and asking again later can succeed, so the caller must not treat it as final.
            PaydError::BackendUnavailable { .. } | PaydError::NoChannel { .. } => ErrorCode::Unavailable,
            PaydError::UnknownChannel { .. } => ErrorCode::NotFound,
            PaydError::Storage { .. } | PaydError::Io { .. } | PaydError::CorruptState { .. } => ErrorCode::Internal,
        }
    }
}

/// The bus form of a backend error: its stable code and its message.
pub fn remote(e: &PaydError) -> RemoteError {
    RemoteError::from_err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_failures_are_failed_precondition_and_name_the_problem() {
        let e = PaydError::WrongAmount { expected_msat: 1, got_msat: 2 };
        let r = remote(&e);
        assert_eq!(r.code, ErrorCode::FailedPrecondition);
        assert_eq!(r.to_string(), "failed_precondition: invoice amount is 2 msat but 1 msat was expected");
        let r = remote(&PaydError::BackendUnavailable { reason: "connection refused".into() });
        assert_eq!(r.code, ErrorCode::Unavailable);
        assert!(r.message.contains("connection refused"));
        let r = remote(&PaydError::UnknownChannel { channel_id: "ab".into() });
        assert_eq!(r.code, ErrorCode::NotFound);
    }
}
