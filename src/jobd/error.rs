//! jobd's error type and its mapping to stable bus codes.

use crate::bus::{BusError, ErrorCode, ToErrorCode};

/// Everything that can go wrong in jobd.
#[derive(Debug, thiserror::Error)]
pub enum JobdError {
    #[error(transparent)]
    Datadir(#[from] crate::datadir::DatadirError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("pricing: {0}")]
    Pricing(#[from] super::pricing::PricingError),
    #[error("compute backend: {0}")]
    Compute(#[from] super::backend::ComputeError),
}

impl ToErrorCode for JobdError {
    fn code(&self) -> ErrorCode {
        match self {
            JobdError::Datadir(_) | JobdError::Store(_) => ErrorCode::Internal,
            JobdError::Bus(e) => e.code(),
            JobdError::Pricing(_) | JobdError::Compute(_) => ErrorCode::FailedPrecondition,
        }
    }
}
