//! payd's error type and its mapping to stable bus codes.

use crate::bus::{BusError, ErrorCode, ToErrorCode};

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
}

impl ToErrorCode for PaydServiceError {
    fn code(&self) -> ErrorCode {
        match self {
            PaydServiceError::Datadir(_) | PaydServiceError::Store(_) => ErrorCode::Internal,
            PaydServiceError::Bus(e) => e.code(),
            PaydServiceError::Engine(_) => ErrorCode::Internal,
        }
    }
}
