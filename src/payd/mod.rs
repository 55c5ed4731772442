//! payd: payments behind payment backends (the embedded LDK channel engine on devnet; lnd).
//!
//! Shape shared by every service: [`opts`] (flags, env, file), [`runtime`] (`run`), [`error`].
//! The [`backend`] trait and its checks, the embedded LDK engine ([`ldk`]), the lnd REST backend
//! ([`lnd`]), and the conformance suite every backend must pass ([`conformance`]) are libraries
//! the runtime drives.

pub mod backend;
pub mod conformance;
pub mod error;
pub mod ldk;
pub mod lnd;
pub mod opts;
pub mod runtime;

pub use error::PaydServiceError;
pub use opts::{PaydArgs, PaydConfig, PaydFile};
pub use runtime::run;
