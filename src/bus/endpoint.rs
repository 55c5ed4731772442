//! Bus endpoints, parsed strictly: `inproc://NAME`, `ipc://PATH`, `tcp://HOST:PORT`.
//!
//! Anything else is an error, never a silent fallback. `tcp://HOST:0` asks the broker to bind an
//! ephemeral port; the bound endpoint is then reported by the broker.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A parsed bus endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// In-process transport; only services in the same process can reach it.
    Inproc(String),
    /// Unix domain socket at a filesystem path.
    Ipc(String),
    /// TCP; always authenticated and encrypted with CURVE.
    Tcp {
        /// Host name or IP address.
        host: String,
        /// Port; 0 asks for an ephemeral port when binding.
        port: u16,
    },
}

/// Why an endpoint string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    #[error("bus endpoint {0:?}: unknown scheme (use inproc://NAME, ipc://PATH or tcp://HOST:PORT)")]
    UnknownScheme(String),
    #[error("bus endpoint {0:?}: {1}")]
    Invalid(String, &'static str),
}

impl Endpoint {
    /// Whether the endpoint crosses a process boundary (and so needs CURVE keys).
    pub fn is_remote(&self) -> bool {
        !matches!(self, Endpoint::Inproc(_))
    }

    /// The string libzmq expects when binding (`tcp://h:0` becomes `tcp://h:*`).
    pub fn zmq_bind_addr(&self) -> String {
        match self {
            Endpoint::Tcp { host, port: 0 } => format!("tcp://{}:*", bracket(host)),
            other => other.to_string(),
        }
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Inproc(n) => write!(f, "inproc://{n}"),
            Endpoint::Ipc(p) => write!(f, "ipc://{p}"),
            Endpoint::Tcp { host, port } => write!(f, "tcp://{}:{port}", bracket(host)),
        }
    }
}

fn valid_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why| EndpointError::Invalid(s.to_string(), why);
        if let Some(name) = s.strip_prefix("inproc://") {
            if name.is_empty() || name.len() > 200 || !name.chars().all(valid_name_char) {
                return Err(bad("inproc name must be 1-200 characters of [A-Za-z0-9-_./]"));
            }
            return Ok(Endpoint::Inproc(name.to_string()));
        }
        if let Some(path) = s.strip_prefix("ipc://") {
            if path.is_empty() {
                return Err(bad("ipc path is empty"));
            }
            // sockaddr_un.sun_path holds 107 bytes plus the terminator.
            if path.len() > 107 {
                return Err(bad("ipc path is longer than 107 bytes"));
            }
            if path.chars().any(|c| c.is_control() || c == '*') {
                return Err(bad("ipc path contains a control character or '*'"));
            }
            return Ok(Endpoint::Ipc(path.to_string()));
        }
        if let Some(rest) = s.strip_prefix("tcp://") {
            let (host, port) = if let Some(r) = rest.strip_prefix('[') {
                let (h, p) = r.split_once("]:").ok_or_else(|| bad("expected tcp://[IPV6]:PORT"))?;
                if h.parse::<std::net::Ipv6Addr>().is_err() {
                    return Err(bad("invalid IPv6 address"));
                }
                (h, p)
            } else {
                rest.rsplit_once(':').ok_or_else(|| bad("expected tcp://HOST:PORT"))?
            };
            if host.is_empty() {
                return Err(bad("host is empty"));
            }
            if host == "*" {
                return Err(bad("wildcard host '*' is not allowed; name an address (0.0.0.0 to listen on all)"));
            }
            if !host.contains(':')
                && host.parse::<IpAddr>().is_err()
                && !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            {
                return Err(bad("host is neither an IP address nor a DNS name"));
            }
            let port: u16 = port.parse().map_err(|_| bad("port must be a number 0-65535"))?;
            return Ok(Endpoint::Tcp { host: host.to_string(), port });
        }
        Err(EndpointError::UnknownScheme(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_schemes() {
        assert_eq!("inproc://lcp-bus".parse(), Ok(Endpoint::Inproc("lcp-bus".into())));
        assert_eq!("ipc:///tmp/x.sock".parse(), Ok(Endpoint::Ipc("/tmp/x.sock".into())));
        assert_eq!("tcp://127.0.0.1:7000".parse(), Ok(Endpoint::Tcp { host: "127.0.0.1".into(), port: 7000 }));
        assert_eq!("tcp://[::1]:7".parse(), Ok(Endpoint::Tcp { host: "::1".into(), port: 7 }));
        assert_eq!("tcp://payd.local:9".parse::<Endpoint>().map(|e| e.to_string()), Ok("tcp://payd.local:9".into()));
    }

    #[test]
    fn round_trips_through_display() {
        for s in ["inproc://a", "ipc://./b.sock", "tcp://10.0.0.1:1", "tcp://[::1]:65535"] {
            assert_eq!(s.parse::<Endpoint>().map(|e| e.to_string()), Ok(s.to_string()));
        }
    }

    #[test]
    fn rejects_everything_else_with_a_reason() {
        for s in [
            "",
            "127.0.0.1:9",
            "udp://1.2.3.4:5",
            "tcp://1.2.3.4",
            "tcp://:5",
            "tcp://*:5",
            "tcp://h:70000",
            "tcp://h:x",
            "inproc://",
            "inproc://a b",
            "ipc://",
            "tcp://[zz]:1",
            "epgm://x",
            "TCP://h:1",
        ] {
            let e = s.parse::<Endpoint>().expect_err(s);
            assert!(e.to_string().contains(&format!("{s:?}")), "{e}");
        }
    }

    #[test]
    fn ephemeral_port_binds_with_a_wildcard() {
        let e: Endpoint = "tcp://127.0.0.1:0".parse().unwrap();
        assert_eq!(e.zmq_bind_addr(), "tcp://127.0.0.1:*");
        assert!(e.is_remote());
        assert!(!Endpoint::Inproc("x".into()).is_remote());
    }
}
