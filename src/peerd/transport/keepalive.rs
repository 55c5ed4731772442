//! Ping/pong hooks of the connection actor.
//!
//! The actor owns the keepalive timer and the dead-peer decision; what a ping looks like and how
//! inbound pings are answered is injected through [`PingHooks`], so the BOLT #1 codec can be
//! plugged in by its owner. [`Bolt1Pings`] builds the two messages by hand from BOLT #1:
//! `ping = type 18 || u16 num_pong_bytes || u16 byteslen || byteslen bytes` and
//! `pong = type 19 || u16 byteslen || byteslen bytes`.

use super::message::RawMessage;

/// BOLT #1 `ping` message type.
pub const PING_TYPE: u16 = 18;
/// BOLT #1 `pong` message type.
pub const PONG_TYPE: u16 = 19;

/// What the actor does with one inbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intercept {
    /// Hand it to the consumer.
    Deliver,
    /// Drop it (it has been handled, e.g. a pong).
    Consume,
    /// Drop it and send this reply (e.g. the pong for a ping).
    Reply(RawMessage),
}

/// Keepalive message construction and inbound ping handling.
///
/// Contract: both methods are cheap and never block (they run on the connection's tasks);
/// `on_inbound` is called for every inbound message, in order, before it is delivered.
pub trait PingHooks: Send + Sync + 'static {
    /// The ping sent after the configured interval of silence.
    fn ping(&self) -> RawMessage;
    /// Decides whether an inbound message is delivered, swallowed, or answered.
    fn on_inbound(&self, msg: &RawMessage) -> Intercept;
}

/// BOLT #1 pings built as raw bytes: pings ask for `num_pong_bytes`; inbound pings are answered
/// with a pong of the requested size (none if it is 65532 or more, as BOLT #1 says); pings and
/// pongs are not delivered to the consumer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bolt1Pings {
    /// `num_pong_bytes` of our pings.
    pub num_pong_bytes: u16,
}

/// BOLT #1: a ping asking for this many pong bytes or more must not be answered.
const PONG_SIZE_NO_REPLY: u16 = 65532;
/// Largest `byteslen` of a ping that fits in one message: 65535 - 2 - 4.
const MAX_PING_BYTESLEN: u16 = 65529;

impl Bolt1Pings {
    /// Builds `ping(num_pong_bytes, byteslen zero bytes)`; `byteslen` is clamped to 65529 so
    /// the message fits in 65535 bytes.
    pub fn build_ping(num_pong_bytes: u16, byteslen: u16) -> RawMessage {
        let byteslen = byteslen.min(MAX_PING_BYTESLEN);
        let mut bytes = Vec::with_capacity(6 + usize::from(byteslen));
        bytes.extend_from_slice(&PING_TYPE.to_be_bytes());
        bytes.extend_from_slice(&num_pong_bytes.to_be_bytes());
        bytes.extend_from_slice(&byteslen.to_be_bytes());
        bytes.resize(6 + usize::from(byteslen), 0);
        RawMessage::from_checked(bytes)
    }

    /// Builds `pong(byteslen zero bytes)`; `byteslen` is clamped to 65531 (BOLT #1 bound).
    pub fn build_pong(byteslen: u16) -> RawMessage {
        let byteslen = byteslen.min(PONG_SIZE_NO_REPLY - 1);
        let mut bytes = Vec::with_capacity(4 + usize::from(byteslen));
        bytes.extend_from_slice(&PONG_TYPE.to_be_bytes());
        bytes.extend_from_slice(&byteslen.to_be_bytes());
        bytes.resize(4 + usize::from(byteslen), 0);
        RawMessage::from_checked(bytes)
    }

    /// Reads `num_pong_bytes` from a ping payload; `None` if the payload is malformed
    /// (shorter than its fields or than the announced `byteslen`).
    pub fn parse_ping(payload: &[u8]) -> Option<u16> {
        let (num, rest) = payload.split_first_chunk::<2>()?;
        let (len, ignored) = rest.split_first_chunk::<2>()?;
        if ignored.len() < usize::from(u16::from_be_bytes(*len)) {
            return None;
        }
        Some(u16::from_be_bytes(*num))
    }
}

impl PingHooks for Bolt1Pings {
    fn ping(&self) -> RawMessage {
        Self::build_ping(self.num_pong_bytes, 0)
    }

    fn on_inbound(&self, msg: &RawMessage) -> Intercept {
        match msg.msg_type() {
            PING_TYPE => match Self::parse_ping(msg.payload()) {
                Some(n) if n < PONG_SIZE_NO_REPLY => Intercept::Reply(Self::build_pong(n)),
                // Malformed pings are left for the consumer to judge.
                None => Intercept::Deliver,
                Some(_) => Intercept::Consume,
            },
            PONG_TYPE => Intercept::Consume,
            _ => Intercept::Deliver,
        }
    }
}

/// Delivers every message (pings and pongs included) and sends [`Bolt1Pings`] pings: for a
/// consumer that answers pings itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassThrough;

impl PingHooks for PassThrough {
    fn ping(&self) -> RawMessage {
        Bolt1Pings::build_ping(0, 0)
    }

    fn on_inbound(&self, _msg: &RawMessage) -> Intercept {
        Intercept::Deliver
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_bytes_follow_bolt1() {
        let p = Bolt1Pings::build_ping(4, 2);
        assert_eq!(p.as_bytes(), &[0, 18, 0, 4, 0, 2, 0, 0]);
        let p = Bolt1Pings::build_ping(0, 0);
        assert_eq!(p.as_bytes(), &[0, 18, 0, 0, 0, 0]);
        let p = Bolt1Pings::build_ping(1, u16::MAX);
        assert!(p.len() <= 65535);
    }

    #[test]
    fn pong_bytes_follow_bolt1() {
        assert_eq!(Bolt1Pings::build_pong(3).as_bytes(), &[0, 19, 0, 3, 0, 0, 0]);
        assert_eq!(Bolt1Pings::build_pong(u16::MAX).payload().len(), 2 + 65531);
    }

    #[test]
    fn ping_is_answered_with_requested_size() {
        let hooks = Bolt1Pings { num_pong_bytes: 0 };
        let ping = Bolt1Pings::build_ping(7, 3);
        match hooks.on_inbound(&ping) {
            Intercept::Reply(pong) => {
                assert_eq!(pong.msg_type(), PONG_TYPE);
                assert_eq!(pong.payload().get(..2), Some(&[0u8, 7][..]));
                assert_eq!(pong.payload().len(), 9);
            }
            other => panic!("expected a pong, got {other:?}"),
        }
    }

    #[test]
    fn huge_pong_request_and_pongs_are_consumed() {
        let hooks = Bolt1Pings::default();
        assert_eq!(hooks.on_inbound(&Bolt1Pings::build_ping(65532, 0)), Intercept::Consume);
        assert_eq!(hooks.on_inbound(&Bolt1Pings::build_pong(5)), Intercept::Consume);
    }

    #[test]
    fn malformed_ping_and_other_types_are_delivered() {
        let hooks = Bolt1Pings::default();
        let truncated = RawMessage::new(PING_TYPE, &[0, 1, 0, 9, 0]).expect("small");
        assert_eq!(hooks.on_inbound(&truncated), Intercept::Deliver);
        let short = RawMessage::new(PING_TYPE, &[0]).expect("small");
        assert_eq!(hooks.on_inbound(&short), Intercept::Deliver);
        let custom = RawMessage::new(42081, b"x").expect("small");
        assert_eq!(hooks.on_inbound(&custom), Intercept::Deliver);
        assert_eq!(PassThrough.on_inbound(&Bolt1Pings::build_ping(1, 0)), Intercept::Deliver);
    }
}
