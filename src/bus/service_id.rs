//! Typed service identities. Each bus participant uses its id as its ZeroMQ routing identity.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Longest instance name of a `jobd` worker or a client.
pub const MAX_INSTANCE_NAME: usize = 64;

/// A participant on the bus.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ServiceId {
    /// The broker that routes between the others (hosted by `lcpd` or `lcpnode`).
    Broker,
    /// Peer connections.
    Peerd,
    /// LCP sessions.
    Lcpd,
    /// Payments.
    Payd,
    /// A job worker; many can join one node, each with its own instance name.
    Jobd(String),
    /// The OpenAI-compatible gateway.
    Gateway,
    /// An operator or requester client (`lcp-cli`), with a per-connection name.
    Client(String),
}

/// Why a service id was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid service id {0:?}: {1}")]
pub struct ServiceIdError(pub String, pub &'static str);

impl ServiceId {
    /// The service kind without instance (`jobd`, `client`, ...), used as log target and in status.
    pub fn kind(&self) -> &'static str {
        match self {
            ServiceId::Broker => "broker",
            ServiceId::Peerd => "peerd",
            ServiceId::Lcpd => "lcpd",
            ServiceId::Payd => "payd",
            ServiceId::Jobd(_) => "jobd",
            ServiceId::Gateway => "gateway",
            ServiceId::Client(_) => "client",
        }
    }

    /// The ZeroMQ routing identity.
    pub fn to_identity(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    /// Parses a routing identity received from ZeroMQ.
    pub fn from_identity(bytes: &[u8]) -> Result<Self, ServiceIdError> {
        let s = std::str::from_utf8(bytes)
            .map_err(|_| ServiceIdError(String::from_utf8_lossy(bytes).into_owned(), "not UTF-8"))?;
        s.parse()
    }

    /// Checks an instance name: 1-64 characters of `[A-Za-z0-9-_.]`.
    pub fn validate_instance(name: &str) -> Result<(), ServiceIdError> {
        if name.is_empty() || name.len() > MAX_INSTANCE_NAME {
            return Err(ServiceIdError(name.to_string(), "instance name must be 1-64 characters"));
        }
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            return Err(ServiceIdError(name.to_string(), "instance name may only use [A-Za-z0-9-_.]"));
        }
        Ok(())
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceId::Jobd(n) => write!(f, "jobd/{n}"),
            ServiceId::Client(n) => write!(f, "client/{n}"),
            other => f.write_str(other.kind()),
        }
    }
}

impl FromStr for ServiceId {
    type Err = ServiceIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let id = match s.split_once('/') {
            Some(("jobd", n)) => ServiceId::Jobd(n.to_string()),
            Some(("client", n)) => ServiceId::Client(n.to_string()),
            Some(_) => return Err(ServiceIdError(s.to_string(), "only jobd/NAME and client/NAME take an instance")),
            None => match s {
                "broker" => ServiceId::Broker,
                "peerd" => ServiceId::Peerd,
                "lcpd" => ServiceId::Lcpd,
                "payd" => ServiceId::Payd,
                "gateway" => ServiceId::Gateway,
                _ => return Err(ServiceIdError(s.to_string(), "unknown service")),
            },
        };
        if let ServiceId::Jobd(n) | ServiceId::Client(n) = &id {
            Self::validate_instance(n)?;
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip() {
        for id in [
            ServiceId::Broker,
            ServiceId::Peerd,
            ServiceId::Lcpd,
            ServiceId::Payd,
            ServiceId::Gateway,
            ServiceId::Jobd("gpu-1".into()),
            ServiceId::Client("cli.42".into()),
        ] {
            assert_eq!(ServiceId::from_identity(&id.to_identity()), Ok(id));
        }
    }

    #[test]
    fn rejects_bad_identities() {
        for bad in ["", "jobd", "jobd/", "peerd/x", "jobd/a b", "client/ü", "lnd"] {
            assert!(bad.parse::<ServiceId>().is_err(), "{bad}");
        }
        assert!(ServiceId::from_identity(&[0xff, 0x00]).is_err());
        assert!(format!("jobd/{}", "a".repeat(65)).parse::<ServiceId>().is_err());
    }
}
