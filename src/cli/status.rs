//! `lcp-cli status`.

use super::{to_json, CliError};
use crate::bus::api::{Body, Ctl, ServiceStatus};
use crate::bus::{Bus, Endpoint, ServiceId};
use serde::Serialize;
use std::fmt::Write;
use std::time::Duration;

/// What `status` reports.
#[derive(Debug, Serialize)]
pub struct Status {
    /// The Lightning node id: peerd's (the one peers see), else that of another service holding the
    /// node key.
    pub node_id: Option<String>,
    /// The bus endpoint used.
    pub bus: String,
    /// Registered services.
    pub services: Vec<ServiceRow>,
}

/// One service.
#[derive(Debug, Serialize)]
pub struct ServiceRow {
    /// Bus id.
    pub id: String,
    /// Binary version.
    pub version: String,
    /// Process id.
    pub pid: u32,
    /// Seconds since it started.
    pub uptime_secs: u64,
    /// Milliseconds since its last heartbeat.
    pub last_seen_ms: u64,
    /// The node id this service holds (peerd, payd and lcpd; they must agree).
    pub node_id: Option<String>,
    /// Service-specific facts.
    pub details: Vec<(String, String)>,
}

/// Asks the broker for the registered services.
pub async fn list(bus: &Bus, timeout: Duration) -> Result<Vec<ServiceStatus>, CliError> {
    match bus.request(&ServiceId::Broker, Body::Ctl(Ctl::ListServices), timeout).await? {
        Body::Ctl(Ctl::Services(s)) => Ok(s),
        other => Err(CliError::Other(format!("unexpected answer from the broker: {other:?}"))),
    }
}

/// Runs `status`.
pub async fn run(bus: &Bus, ep: &Endpoint, json: bool, timeout: Duration) -> Result<String, CliError> {
    let now = crate::clock::now_secs();
    let listed = list(bus, timeout).await?;
    // peerd's node id is the one peers see (with the lnd transport, lnd's); else any service's.
    let peerd = listed.iter().find(|s| s.id == ServiceId::Peerd).and_then(|s| s.info.node_id.clone());
    let node_id = peerd.or_else(|| listed.iter().find_map(|s| s.info.node_id.clone()));
    let services: Vec<ServiceRow> = listed
        .into_iter()
        .filter(|s| !matches!(s.id, ServiceId::Client(_)))
        .map(|s| ServiceRow {
            id: s.id.to_string(),
            version: s.info.version,
            pid: s.info.pid,
            uptime_secs: now.saturating_sub(s.info.started_at),
            last_seen_ms: s.last_seen_ms,
            node_id: s.info.node_id,
            details: s.info.details,
        })
        .collect();
    let st = Status { node_id, bus: ep.to_string(), services };
    if json {
        return to_json(&st);
    }
    let mut out = String::new();
    let _ = writeln!(out, "node id:  {}", st.node_id.as_deref().unwrap_or("(no service holding the node key is up)"));
    let _ = writeln!(out, "bus:      {}", st.bus);
    let _ = writeln!(out);
    let _ =
        writeln!(out, "{:<24} {:<9} {:>8} {:>10} {:>10}  DETAILS", "SERVICE", "VERSION", "PID", "UPTIME", "LAST SEEN");
    for s in &st.services {
        let details: Vec<String> = s.details.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(
            out,
            "{:<24} {:<9} {:>8} {:>10} {:>8}ms  {}",
            s.id,
            s.version,
            s.pid,
            human_secs(s.uptime_secs),
            s.last_seen_ms,
            details.join(" ")
        );
    }
    if st.services.is_empty() {
        let _ = writeln!(out, "(no services registered)");
    }
    Ok(out.trim_end().to_string())
}

/// `3725` -> `1h2m5s`.
pub fn human_secs(s: u64) -> String {
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{h}h{m}m{sec}s")
    } else if m > 0 {
        format!("{m}m{sec}s")
    } else {
        format!("{sec}s")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_secs_formats() {
        assert_eq!(super::human_secs(5), "5s");
        assert_eq!(super::human_secs(65), "1m5s");
        assert_eq!(super::human_secs(3725), "1h2m5s");
    }
}
