//! jobd: job execution behind compute backends; many workers per node.
//!
//! Shape shared by every service: [`opts`] (flags, env, file), [`runtime`] (`run`), [`error`].
//! The backends ([`backend`]) and pricing ([`pricing`]) are pure libraries the runtime drives.

pub mod backend;
pub mod error;
pub mod opts;
pub mod pricing;
pub mod runtime;

pub use error::JobdError;
pub use opts::{JobdArgs, JobdConfig, JobdFile};
pub use runtime::run;
