//! jobd

pub mod backend;
pub mod pricing;
