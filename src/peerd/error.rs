//! peerd's error type and its mapping to stable bus codes.

use crate::bus::{BusError, ErrorCode, ToErrorCode};

/// Everything that can go wrong in peerd.
#[derive(Debug, thiserror::Error)]
pub enum PeerdError {
    #[error(transparent)]
    Datadir(#[from] crate::datadir::DatadirError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("transport: {0}")]
    Transport(super::transport::TransportError),
    #[error("lnd transport: {0}")]
    Lnd(String),
}

impl ToErrorCode for PeerdError {
    fn code(&self) -> ErrorCode {
        match self {
            PeerdError::Datadir(_) | PeerdError::Store(_) => ErrorCode::Internal,
            PeerdError::Bus(e) => e.code(),
            PeerdError::Transport(_) | PeerdError::Lnd(_) => ErrorCode::Unavailable,
        }
    }
}
