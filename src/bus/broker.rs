//! The broker's routing-independent logic: registrations, liveness, control answers.
//!
//! Shared by the ZeroMQ broker and the in-memory hub, so its behaviour is tested without sockets.

use super::api::{Body, Ctl, ServiceStatus};
use super::envelope::{Corr, Envelope};
use super::{ErrorCode, RemoteError, ServiceId};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How often a registered service repeats its Hello.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(1000);
/// A service whose last Hello is older than this is no longer listed.
pub const REGISTRATION_TTL: Duration = Duration::from_millis(3500);

/// Registrations and control answers.
pub struct BrokerCore {
    epoch: u64,
    services: BTreeMap<ServiceId, (super::api::ServiceInfo, Instant)>,
}

impl Default for BrokerCore {
    fn default() -> Self {
        Self::new(rand::random::<u64>() | 1)
    }
}

impl BrokerCore {
    /// A broker with a given epoch (non-zero; random per start in production).
    pub fn new(epoch: u64) -> Self {
        Self { epoch, services: BTreeMap::new() }
    }

    /// This broker's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Handles a frame addressed to the broker; returns the reply frame, if any.
    pub fn handle(&mut self, from: &ServiceId, frame: &[u8], now: Instant) -> Option<Vec<u8>> {
        let env = match Envelope::decode(frame) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(target: "bus", %from, "undecodable frame for the broker: {e}");
                return error_reply(frame, ErrorCode::InvalidArgument, &format!("broker: {e}"));
            }
        };
        let id = match env.corr {
            Corr::Request(id) => Some(id),
            _ => None,
        };
        let answer = match env.body {
            Body::Ctl(Ctl::Hello(info)) => {
                if !self.services.contains_key(from) {
                    if matches!(from, ServiceId::Client(_)) {
                        tracing::debug!(target: "bus", client = %from, "client joined the bus");
                    } else {
                        tracing::info!(target: "bus", service = %from, version = %info.version, "service joined the bus");
                    }
                }
                self.services.insert(from.clone(), (info, now));
                Body::Ctl(Ctl::Welcome { epoch: self.epoch })
            }
            Body::Ctl(Ctl::Goodbye) => {
                if self.services.remove(from).is_some() && !matches!(from, ServiceId::Client(_)) {
                    tracing::info!(target: "bus", service = %from, "service left the bus");
                }
                return None;
            }
            Body::Ctl(Ctl::ListServices) => Body::Ctl(Ctl::Services(self.list(now))),
            Body::Ctl(Ctl::Echo(b)) => Body::Ctl(Ctl::Echo(b)),
            Body::Ctl(Ctl::GetInfo) => Body::Ctl(Ctl::Info(super::api::ServiceInfo {
                version: env!("CARGO_PKG_VERSION").to_string(),
                pid: std::process::id(),
                ..Default::default()
            })),
            other => Body::Error(RemoteError::new(
                ErrorCode::Unimplemented,
                format!("the broker does not handle {}", body_name(&other)),
            )),
        };
        let id = id?;
        Envelope { corr: Corr::Reply(id), body: answer }.encode().ok()
    }

    /// Live registrations, expiring the stale ones.
    pub fn list(&mut self, now: Instant) -> Vec<ServiceStatus> {
        self.services.retain(|id, (_, seen)| {
            let alive = now.saturating_duration_since(*seen) <= REGISTRATION_TTL;
            // Clients (lcp-cli, health checks every few seconds) come and go at debug level, as
            // they join.
            if !alive && matches!(id, ServiceId::Client(_)) {
                tracing::debug!(target: "bus", client = %id, "client stopped sending heartbeats");
            } else if !alive {
                tracing::info!(target: "bus", service = %id, "service stopped sending heartbeats");
            }
            alive
        });
        self.services
            .iter()
            .map(|(id, (info, seen))| ServiceStatus {
                id: id.clone(),
                info: info.clone(),
                last_seen_ms: now.saturating_duration_since(*seen).as_millis() as u64,
            })
            .collect()
    }
}

/// The reply a sender gets when its request could not be routed to `to`.
pub fn undeliverable(to: &ServiceId, frame: &[u8], why: &str) -> Option<Vec<u8>> {
    error_reply(frame, ErrorCode::Unavailable, &format!("{to} is not reachable on the bus: {why}"))
}

/// An error reply to the request in `frame` (none for events and replies).
pub fn error_reply(frame: &[u8], code: ErrorCode, msg: &str) -> Option<Vec<u8>> {
    match Envelope::peek_corr(frame) {
        Ok(Corr::Request(id)) => {
            Envelope { corr: Corr::Reply(id), body: Body::Error(RemoteError::new(code, msg)) }.encode().ok()
        }
        _ => None,
    }
}

/// Short name of a body's API, for messages.
pub fn body_name(b: &Body) -> &'static str {
    match b {
        Body::Ctl(_) => "control messages of this kind",
        Body::Error(_) => "errors",
        Body::Peerd(_) => "peerd requests",
        Body::Lcpd(_) => "lcpd requests",
        Body::Jobd(_) => "jobd requests",
        Body::Payd(_) => "payd requests",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::api::ServiceInfo;

    fn req(id: u64, body: Body) -> Vec<u8> {
        Envelope { corr: Corr::Request(id), body }.encode().unwrap()
    }

    fn reply(frame: Option<Vec<u8>>) -> Envelope {
        Envelope::decode(&frame.expect("a reply")).unwrap()
    }

    #[test]
    fn hello_registers_and_expires() {
        let mut b = BrokerCore::new(42);
        let t0 = Instant::now();
        let info = ServiceInfo { version: "1".into(), ..Default::default() };
        let r = reply(b.handle(&ServiceId::Peerd, &req(1, Body::Ctl(Ctl::Hello(info.clone()))), t0));
        assert_eq!(r, Envelope { corr: Corr::Reply(1), body: Body::Ctl(Ctl::Welcome { epoch: 42 }) });
        let listed = b.list(t0 + Duration::from_millis(10));
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, ServiceId::Peerd);
        assert_eq!(listed[0].last_seen_ms, 10);
        assert!(b.list(t0 + REGISTRATION_TTL + Duration::from_millis(1)).is_empty());
    }

    #[test]
    fn goodbye_unregisters_and_events_get_no_reply() {
        let mut b = BrokerCore::new(1);
        let t = Instant::now();
        b.handle(&ServiceId::Payd, &req(1, Body::Ctl(Ctl::Hello(ServiceInfo::default()))), t);
        let bye = Envelope { corr: Corr::Event, body: Body::Ctl(Ctl::Goodbye) }.encode().unwrap();
        assert!(b.handle(&ServiceId::Payd, &bye, t).is_none());
        assert!(b.list(t).is_empty());
    }

    #[test]
    fn bad_frames_and_unknown_requests_get_errors() {
        let mut b = BrokerCore::new(1);
        let t = Instant::now();
        let mut f = req(9, Body::Ctl(Ctl::ListServices));
        f.truncate(f.len() - 1);
        f.push(0xff);
        f.push(0xff);
        let r = reply(b.handle(&ServiceId::Lcpd, &f, t));
        assert!(matches!(r.body, Body::Error(RemoteError { code: ErrorCode::InvalidArgument, .. })), "{r:?}");
        let r = reply(b.handle(&ServiceId::Lcpd, &req(3, Body::Error(RemoteError::new(ErrorCode::Internal, "x"))), t));
        assert!(matches!(r.body, Body::Error(RemoteError { code: ErrorCode::Unimplemented, .. })));
        let u = reply(undeliverable(&ServiceId::Payd, &req(5, Body::Ctl(Ctl::GetInfo)), "not connected"));
        assert_eq!(u.corr, Corr::Reply(5));
        assert!(matches!(u.body, Body::Error(RemoteError { code: ErrorCode::Unavailable, .. })));
    }
}
