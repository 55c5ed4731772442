//! jobd: Job execution behind compute backends; many workers per node.
//!
//! Shape shared by every service: [`opts`] (flags, env, file), [`runtime`] (`run`), [`error`].

pub mod error;
pub mod opts;
pub mod runtime;

pub use error::JobdError;
pub use opts::{JobdArgs, JobdConfig, JobdFile};
pub use runtime::run;
