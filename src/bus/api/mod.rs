//! The bus APIs: one sub-enum per service, all carried by [`Body`].
//!
//! Variants are only ever appended (postcard encodes the variant index); an incompatible change
//! bumps [`super::envelope::BUS_VERSION`].

mod ctl;
pub mod jobd;
pub mod lcpd;
pub mod payd;
pub mod peerd;
pub use ctl::{Ctl, ServiceInfo, ServiceStatus};
pub use jobd::JobdApi;
pub use lcpd::LcpdApi;
pub use payd::PaydApi;
pub use peerd::PeerdApi;

use super::RemoteError;
use serde::{Deserialize, Serialize};

/// What a bus frame carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Body {
    /// Bus control: registration, liveness, status, echo. Every participant understands it.
    Ctl(Ctl),
    /// The error reply to a request.
    Error(RemoteError),
    /// peerd's API.
    Peerd(PeerdApi),
    /// lcpd's API.
    Lcpd(LcpdApi),
    /// jobd's API.
    Jobd(JobdApi),
    /// payd's API.
    Payd(PaydApi),
}
