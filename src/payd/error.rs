//! payd's error type and its mapping to stable bus codes.

use crate::bus::{BusError, ErrorCode, ToErrorCode};

/// Everything that can go wrong in payd.
#[derive(Debug, thiserror::Error)]
pub enum PaydError {
    #[error(transparent)]
    Datadir(#[from] crate::datadir::DatadirError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

impl ToErrorCode for PaydError {
    fn code(&self) -> ErrorCode {
        match self {
            PaydError::Datadir(_) | PaydError::Store(_) => ErrorCode::Internal,
            PaydError::Bus(e) => e.code(),
        }
    }
}
