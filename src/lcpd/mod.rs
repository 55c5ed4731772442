//! lcpd: LCP v0.2 sessions for provider and requester.
//!
//! Shape shared by every service: [`opts`] (flags, env, file), [`runtime`] (`run`), [`error`].

pub mod dispatch;
pub mod engine;
pub mod error;
pub mod opts;
pub mod runtime;
pub mod store;
pub mod workers;

pub use error::LcpdError;
pub use opts::{LcpdArgs, LcpdConfig, LcpdFile};
pub use runtime::run;
