//! lcpd's error type and its mapping to stable bus codes.

use crate::bus::{BusError, ErrorCode, ToErrorCode};

/// Everything that can go wrong in lcpd.
#[derive(Debug, thiserror::Error)]
pub enum LcpdError {
    #[error(transparent)]
    Datadir(#[from] crate::datadir::DatadirError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("job store: {0}")]
    Jobs(String),
}

impl ToErrorCode for LcpdError {
    fn code(&self) -> ErrorCode {
        match self {
            LcpdError::Datadir(_) | LcpdError::Store(_) | LcpdError::Jobs(_) => ErrorCode::Internal,
            LcpdError::Bus(e) => e.code(),
        }
    }
}
