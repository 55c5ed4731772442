//! Bus control messages, understood by every participant.

use crate::bus::ServiceId;
use serde::{Deserialize, Serialize};

/// Bus control.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Ctl {
    /// Service -> broker: register, and keep registered (sent at start until answered, then as
    /// a heartbeat). Answered with [`Ctl::Welcome`].
    Hello(ServiceInfo),
    /// Broker -> service: registration accepted. `epoch` changes when the broker restarts.
    Welcome {
        /// Random per broker start.
        epoch: u64,
    },
    /// Service -> broker: leaving now (clean shutdown).
    Goodbye,
    /// Anyone -> broker: which services are registered. Answered with [`Ctl::Services`].
    ListServices,
    /// Broker -> asker.
    Services(Vec<ServiceStatus>),
    /// Anyone -> a service: describe yourself. Answered with [`Ctl::Info`].
    GetInfo,
    /// A service's description.
    Info(ServiceInfo),
    /// Anyone -> anyone: answered with the same bytes (liveness probe, benchmarks).
    Echo(Vec<u8>),
}

/// What a service says about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// Crate version of the running binary.
    pub version: String,
    /// Operating-system process id.
    pub pid: u32,
    /// Unix seconds when the service started.
    pub started_at: u64,
    /// The Lightning node id (hex), for services that hold the node key.
    pub node_id: Option<String>,
    /// Service-specific facts for `lcp-cli status` (key, value).
    pub details: Vec<(String, String)>,
}

/// A registered service as the broker sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Who.
    pub id: ServiceId,
    /// Its last Hello.
    pub info: ServiceInfo,
    /// Milliseconds since its last Hello.
    pub last_seen_ms: u64,
}
