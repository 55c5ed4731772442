//! payd

pub mod backend;
pub mod conformance;
pub mod ldk;
