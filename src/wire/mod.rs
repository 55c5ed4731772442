//! Wire codecs: BOLT #1 and LCP v0.2 messages.
//!
//! - [`fundamental`] and [`tlv`]: BigSize, truncated integers, TLV streams;
//! - [`bolt1`]: init, error, warning, ping, pong;
//! - [`msgtype`]: which service a message type goes to;
//! - [`lcp`]: the LCP v0.2 messages, terms_hash, stream chunking, error codes.
//!
//! Decoders never panic on input; every failure is a [`WireError`] naming the field.

pub mod bolt1;
pub mod error;
pub mod fundamental;
pub mod lcp;
pub mod msgtype;
pub mod tlv;

pub use bolt1::Bolt1Message;
pub use error::WireError;
pub use lcp::LcpMessage;
pub use msgtype::{classify, MessageClass};

/// A decoded message of a type this crate understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A BOLT #1 control message.
    Bolt1(Bolt1Message),
    /// An LCP v0.2 message.
    Lcp(LcpMessage),
}

impl Message {
    /// Decodes a whole message (`u16 type || payload`).
    pub fn decode(msg: &[u8]) -> Result<Self, WireError> {
        let (t, payload) = bolt1::split_message(msg)?;
        Self::decode_typed(t, payload)
    }

    /// Decodes a payload of type `msg_type`.
    pub fn decode_typed(msg_type: u16, payload: &[u8]) -> Result<Self, WireError> {
        match classify(msg_type) {
            MessageClass::Control => Bolt1Message::decode(msg_type, payload).map(Self::Bolt1),
            MessageClass::Lcp => LcpMessage::decode(msg_type, payload).map(Self::Lcp),
            _ => Err(WireError::UnknownMessageType { msg_type }),
        }
    }

    /// Encodes a whole message (`u16 type || payload`).
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let (t, payload) = match self {
            Self::Bolt1(m) => m.encode()?,
            Self::Lcp(m) => m.encode()?,
        };
        Ok(bolt1::join_message(t, &payload))
    }
}
