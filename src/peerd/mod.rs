//! peerd: peer connections (BOLT #8 transport, BOLT #1 messages, routing of LCP and channel
//! messages to the services over the bus).
//!
//! Shape shared by every service: [`opts`] (flags, env, file), [`runtime`] (`run`), [`error`].
//! The BOLT #8 transport and per-connection actor are in [`transport`]; the lnd transport (LCP as
//! lnd custom messages over an existing lnd's peer connections) is [`lnd`].

pub mod error;
pub mod features;
pub mod lnd;
pub mod opts;
pub mod runtime;
pub mod transport;

pub use error::PeerdError;
pub use opts::{PeerdArgs, PeerdConfig, PeerdFile};
pub use runtime::run;
