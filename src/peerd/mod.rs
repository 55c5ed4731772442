//! peerd

pub mod transport;
