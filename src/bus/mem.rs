//! An in-memory bus (hub + transport) with the broker's semantics, for tests of protocol logic
//! without ZeroMQ.

use super::broker::{self, BrokerCore};
use super::transport::{Handler, Transport};
use super::{BusError, ServiceId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// The in-memory broker.
#[derive(Default)]
pub struct MemHub {
    core: Mutex<BrokerCore>,
    clients: Mutex<HashMap<ServiceId, Handler>>,
}

impl MemHub {
    /// A new hub.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Joins `id` to the hub (replacing an earlier connection with the same id, like ZeroMQ's
    /// router handover).
    pub fn connect(self: &Arc<Self>, id: ServiceId, handler: Handler) -> Arc<dyn Transport> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner).insert(id.clone(), handler);
        Arc::new(MemTransport { hub: self.clone(), id, closed: AtomicBool::new(false) })
    }

    /// Removes a participant, as if its process died.
    pub fn kill(&self, id: &ServiceId) {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
    }

    fn deliver(&self, from: &ServiceId, to: &ServiceId, frame: Vec<u8>) -> Result<(), (Vec<u8>, &'static str)> {
        let handler = self.clients.lock().unwrap_or_else(PoisonError::into_inner).get(to).cloned();
        match handler {
            None => Err((frame, "not connected")),
            Some(h) => {
                h(from.clone(), frame);
                Ok(())
            }
        }
    }
}

struct MemTransport {
    hub: Arc<MemHub>,
    id: ServiceId,
    closed: AtomicBool,
}

impl Transport for MemTransport {
    fn send(&self, to: &ServiceId, frame: Vec<u8>) -> Result<(), BusError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(BusError::Closed);
        }
        let reply = if *to == ServiceId::Broker {
            self.hub.core.lock().unwrap_or_else(PoisonError::into_inner).handle(&self.id, &frame, Instant::now())
        } else {
            match self.hub.deliver(&self.id, to, frame) {
                Ok(()) => None,
                Err((frame, why)) => broker::undeliverable(to, &frame, why),
            }
        };
        if let Some(r) = reply {
            // The sender's own queue; if it is gone the sender is gone too.
            let _ = self.hub.deliver(&ServiceId::Broker, &self.id, r);
        }
        Ok(())
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.hub.kill(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::api::{Body, Ctl};
    use crate::bus::{Bus, Corr, ErrorCode, RemoteError};
    use std::time::Duration;

    const T: Duration = Duration::from_secs(5);

    fn join(hub: &Arc<MemHub>, id: ServiceId) -> Bus {
        Bus::over(id.clone(), |h| Ok(hub.connect(id, h))).unwrap()
    }

    #[tokio::test]
    async fn handshake_request_reply_and_events() {
        let hub = MemHub::new();
        let a = join(&hub, ServiceId::Lcpd);
        let b = join(&hub, ServiceId::Payd);
        assert_ne!(a.wait_ready(T).await.unwrap(), 0);
        b.wait_ready(T).await.unwrap();
        // Echo and GetInfo are answered by the bus client itself.
        let r = a.request(&ServiceId::Payd, Body::Ctl(Ctl::Echo(b"hi".to_vec())), T).await.unwrap();
        assert_eq!(r, Body::Ctl(Ctl::Echo(b"hi".to_vec())));
        b.set_info(Some("02ab".into()), vec![]);
        match a.request(&ServiceId::Payd, Body::Ctl(Ctl::GetInfo), T).await.unwrap() {
            Body::Ctl(Ctl::Info(i)) => assert_eq!(i.node_id.as_deref(), Some("02ab")),
            other => panic!("{other:?}"),
        }
        // Requests of a service API reach its queue, with the real sender; the reply comes back.
        let mut rx = b.take_incoming().unwrap();
        assert!(b.take_incoming().is_none());
        let server = tokio::spawn(async move {
            let m = rx.recv().await.unwrap();
            assert_eq!(m.from, ServiceId::Lcpd);
            let Corr::Request(id) = m.corr else { panic!("not a request") };
            b.reply_err(&m.from, id, RemoteError::new(ErrorCode::NotFound, "no such invoice")).unwrap();
            let ev = rx.recv().await.unwrap();
            assert_eq!((ev.corr, ev.body), (Corr::Event, Body::Ctl(Ctl::Goodbye)));
        });
        let e = a.request(&ServiceId::Payd, Body::Ctl(Ctl::ListServices), T).await.unwrap_err();
        assert_eq!(e.to_string(), "not_found: no such invoice");
        a.send_event(&ServiceId::Payd, Body::Ctl(Ctl::Goodbye)).unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn unroutable_and_unhandled_requests_fail_fast() {
        let hub = MemHub::new();
        let a = join(&hub, ServiceId::Lcpd);
        a.wait_ready(T).await.unwrap();
        let e = a.request(&ServiceId::Jobd("w1".into()), Body::Ctl(Ctl::ListServices), T).await.unwrap_err();
        assert!(e.to_string().starts_with("unavailable: jobd/w1 is not reachable"), "{e}");
        // A service that dropped its queue answers `unimplemented`.
        let b = join(&hub, ServiceId::Payd);
        b.wait_ready(T).await.unwrap();
        drop(b.take_incoming());
        let e = a.request(&ServiceId::Payd, Body::Ctl(Ctl::ListServices), T).await.unwrap_err();
        assert!(matches!(e, BusError::Remote(RemoteError { code: ErrorCode::Unimplemented, .. })), "{e}");
        // A killed service is unreachable; requests do not hang.
        hub.kill(&ServiceId::Payd);
        let e = a.request(&ServiceId::Payd, Body::Ctl(Ctl::Echo(vec![])), T).await.unwrap_err();
        assert!(matches!(e, BusError::Remote(RemoteError { code: ErrorCode::Unavailable, .. })), "{e}");
    }

    #[tokio::test]
    async fn broker_lists_services_and_forgets_on_goodbye() {
        let hub = MemHub::new();
        let a = join(&hub, ServiceId::Lcpd);
        let b = join(&hub, ServiceId::Jobd("w1".into()));
        a.wait_ready(T).await.unwrap();
        b.wait_ready(T).await.unwrap();
        let list = |bus: Bus| async move {
            match bus.request(&ServiceId::Broker, Body::Ctl(Ctl::ListServices), T).await.unwrap() {
                Body::Ctl(Ctl::Services(s)) => s.into_iter().map(|s| s.id).collect::<Vec<_>>(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(list(a.clone()).await, vec![ServiceId::Lcpd, ServiceId::Jobd("w1".into())]);
        b.close();
        // Goodbye is an event; poll until the broker has processed it.
        let deadline = std::time::Instant::now() + T;
        while list(a.clone()).await.len() != 1 {
            assert!(std::time::Instant::now() < deadline, "goodbye not processed");
            tokio::task::yield_now().await;
        }
        assert!(matches!(b.request(&ServiceId::Lcpd, Body::Ctl(Ctl::Echo(vec![])), T).await, Err(BusError::Closed)));
    }

    #[tokio::test]
    async fn request_times_out_when_nobody_answers() {
        let hub = MemHub::new();
        let a = join(&hub, ServiceId::Lcpd);
        let b = join(&hub, ServiceId::Payd);
        a.wait_ready(T).await.unwrap();
        let _held = b.take_incoming(); // holds the queue, never answers
        let e = a.request(&ServiceId::Payd, Body::Ctl(Ctl::ListServices), Duration::from_millis(50)).await.unwrap_err();
        assert!(matches!(e, BusError::Timeout { .. }), "{e}");
    }
}
