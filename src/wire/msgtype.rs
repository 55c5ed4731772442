//! Classification of BOLT #1 message types: which service a message goes to.

use super::bolt1;
use super::lcp::v02;

/// Where a message of a given type belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageClass {
    /// BOLT #1 control message handled by peerd itself (init, error, warning, ping, pong).
    Control,
    /// LCP v0.2 custom message (odd types 42081..=42097): routed to lcpd.
    Lcp,
    /// Channel, HTLC, splicing, interactive-tx, peer-storage and channel_update messages: routed
    /// to payd's channel engine.
    Channel,
    /// Gossip (announcements, queries) and onion messages: the suite runs no router, so these
    /// are known and may be ignored without disconnecting.
    Gossip,
    /// An unknown even type: BOLT #1 requires closing the connection.
    UnknownEven,
    /// An unknown odd type: BOLT #1 requires ignoring it.
    UnknownOdd,
}

/// Classifies a message type.
pub fn classify(msg_type: u16) -> MessageClass {
    match msg_type {
        bolt1::WARNING | bolt1::INIT | bolt1::ERROR | bolt1::PING | bolt1::PONG => MessageClass::Control,
        t if v02::is_lcp_type(t) => MessageClass::Lcp,
        // quiescence (stfu 2), peer storage (7, 9), channel establishment and close (32-39),
        // interactive tx / dual funding (64-74), splicing (77, 80, 81), start_batch (127),
        // HTLC and commitment updates (128-136), channel_update and announcement_signatures
        // (258, 259).
        2 | 7 | 9 | 32..=39 | 64..=74 | 77 | 80 | 81 | 127 | 128..=136 | 258 | 259 => MessageClass::Channel,
        // channel_announcement, node_announcement, gossip queries, onion_message.
        256 | 257 | 261..=265 | 513 => MessageClass::Gossip,
        t if t % 2 == 0 => MessageClass::UnknownEven,
        _ => MessageClass::UnknownOdd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_family() {
        for t in [1u16, 16, 17, 18, 19] {
            assert_eq!(classify(t), MessageClass::Control, "type {t}");
        }
        for t in (42081u16..=42097).step_by(2) {
            assert_eq!(classify(t), MessageClass::Lcp, "type {t}");
        }
        for t in [32u16, 33, 34, 35, 36, 38, 39, 128, 130, 131, 132, 133, 134, 135, 136, 258] {
            assert_eq!(classify(t), MessageClass::Channel, "type {t}");
        }
        for t in [2u16, 7, 9, 64, 74, 77, 80, 81, 127, 259] {
            assert_eq!(classify(t), MessageClass::Channel, "type {t}");
        }
        for t in [256u16, 257, 261, 265, 513] {
            assert_eq!(classify(t), MessageClass::Gossip, "type {t}");
        }
    }

    #[test]
    fn unknown_types_follow_parity() {
        // Even numbers inside the LCP range are not LCP.
        assert_eq!(classify(42082), MessageClass::UnknownEven);
        assert_eq!(classify(42099), MessageClass::UnknownOdd);
        assert_eq!(classify(42079), MessageClass::UnknownOdd);
        assert_eq!(classify(32768), MessageClass::UnknownEven);
        assert_eq!(classify(40), MessageClass::UnknownEven);
        assert_eq!(classify(3), MessageClass::UnknownOdd);
        assert_eq!(classify(65535), MessageClass::UnknownOdd);
    }
}
