//! payd: Payments behind payment backends (embedded LDK channel engine, lnd).
//!
//! Shape shared by every service: [`opts`] (flags, env, file), [`runtime`] (`run`), [`error`].

pub mod error;
pub mod opts;
pub mod runtime;

pub use error::PaydError;
pub use opts::{PaydArgs, PaydConfig, PaydFile};
pub use runtime::run;
