//! `lcp-cli health`: whether given services are registered on the bus and answer, for container
//! health checks (exit code 0 or 1).

use super::{status, to_json, CliError};
use crate::bus::api::{Body, Ctl};
use crate::bus::{Bus, ServiceId};
use serde::Serialize;
use std::time::Duration;

/// What the all-in-one node runs, checked when no service is named.
pub const NODE_SERVICES: &[&str] = &["lcpd", "peerd", "payd", "jobd"];

/// One checked service.
#[derive(Debug, Serialize)]
pub struct Check {
    /// As asked (`jobd` alone: any worker).
    pub service: String,
    /// The registered id that answered, if any.
    pub id: Option<String>,
    /// Whether it is registered and answered `GetInfo`.
    pub ok: bool,
    /// Why not, or its pid and uptime.
    pub detail: String,
}

/// A service to check: one id (`lcpd`, `jobd/w1`, ...) or, for `jobd` alone, any worker.
enum Wanted {
    AnyWorker,
    Id(ServiceId),
}

impl Wanted {
    fn parse(name: &str) -> Result<Self, CliError> {
        if name == "jobd" {
            return Ok(Wanted::AnyWorker);
        }
        name.parse().map(Wanted::Id).map_err(|e| CliError::Other(format!("{e}")))
    }

    fn matches(&self, id: &ServiceId) -> bool {
        match self {
            Wanted::AnyWorker => matches!(id, ServiceId::Jobd(_)),
            Wanted::Id(want) => want == id,
        }
    }
}

/// Checks `names` (default [`NODE_SERVICES`]); an error names every service that failed.
pub async fn run(bus: &Bus, names: &[String], json: bool, timeout: Duration) -> Result<String, CliError> {
    let names: Vec<String> =
        if names.is_empty() { NODE_SERVICES.iter().map(|s| s.to_string()).collect() } else { names.to_vec() };
    let listed = status::list(bus, timeout).await?;
    let mut checks = Vec::with_capacity(names.len());
    for name in &names {
        let wanted = Wanted::parse(name)?;
        let Some(s) = listed.iter().find(|s| wanted.matches(&s.id)) else {
            checks.push(Check { service: name.clone(), id: None, ok: false, detail: "not registered".into() });
            continue;
        };
        // Registered means a heartbeat in the last 3.5 s; an answer proves its bus I/O works now.
        let check = match bus.request(&s.id, Body::Ctl(Ctl::GetInfo), timeout).await {
            Ok(Body::Ctl(Ctl::Info(info))) => Check {
                service: name.clone(),
                id: Some(s.id.to_string()),
                ok: true,
                detail: format!("pid {}, last seen {} ms ago", info.pid, s.last_seen_ms),
            },
            Ok(other) => Check {
                service: name.clone(),
                id: Some(s.id.to_string()),
                ok: false,
                detail: format!("unexpected answer {other:?}"),
            },
            Err(e) => Check { service: name.clone(), id: Some(s.id.to_string()), ok: false, detail: e.to_string() },
        };
        checks.push(check);
    }
    let failed: Vec<String> =
        checks.iter().filter(|c| !c.ok).map(|c| format!("{} ({})", c.service, c.detail)).collect();
    if !failed.is_empty() {
        return Err(CliError::Other(format!("unhealthy: {}", failed.join(", "))));
    }
    if json {
        return to_json(&checks);
    }
    Ok(checks
        .iter()
        .map(|c| format!("ok  {:<16} {}", c.id.as_deref().unwrap_or(&c.service), c.detail))
        .collect::<Vec<_>>()
        .join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_ids_and_jobd_matches_any_worker() {
        let any = Wanted::parse("jobd").unwrap();
        assert!(any.matches(&ServiceId::Jobd("w1".into())) && !any.matches(&ServiceId::Lcpd));
        let w1 = Wanted::parse("jobd/w1").unwrap();
        assert!(w1.matches(&ServiceId::Jobd("w1".into())) && !w1.matches(&ServiceId::Jobd("w2".into())));
        assert!(Wanted::parse("peerd").unwrap().matches(&ServiceId::Peerd));
        assert!(Wanted::parse("nonsense").is_err());
    }
}
