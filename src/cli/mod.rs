//! cli
pub mod wire;
