//! peerd: Peer connections (BOLT #8 transport, BOLT #1 messages, routing of LCP and channel messages).
//!
//! Shape shared by every service: [`opts`] (flags, env, file), [`runtime`] (`run`), [`error`].

pub mod error;
pub mod opts;
pub mod runtime;

pub use error::PeerdError;
pub use opts::{PeerdArgs, PeerdConfig, PeerdFile};
pub use runtime::run;
