//! The bridge between raw BOLT #1 messages (`u16` type, big-endian, then the payload) and LDK's
//! `ChannelMessageHandler`, replacing what LDK's `PeerManager` would do.

use lightning::bitcoin::secp256k1::PublicKey;
use lightning::ln::msgs::{self, ChannelMessageHandler, ErrorAction, MessageSendEvent};
use lightning::ln::wire::Type;
use lightning::util::ser::{LengthReadable, Writeable};

/// BOLT #1 `warning`.
pub const MSG_WARNING: u16 = 1;
/// BOLT #1 `init`.
pub const MSG_INIT: u16 = 16;
/// BOLT #1 `error`.
pub const MSG_ERROR: u16 = 17;
/// BOLT #1 `ping`.
pub const MSG_PING: u16 = 18;
/// BOLT #1 `pong`.
pub const MSG_PONG: u16 = 19;
/// BOLT #2 `open_channel`.
pub const MSG_OPEN_CHANNEL: u16 = 32;
/// BOLT #2 `accept_channel`.
pub const MSG_ACCEPT_CHANNEL: u16 = 33;
/// BOLT #2 `funding_created`.
pub const MSG_FUNDING_CREATED: u16 = 34;
/// BOLT #2 `funding_signed`.
pub const MSG_FUNDING_SIGNED: u16 = 35;
/// BOLT #2 `channel_ready`.
pub const MSG_CHANNEL_READY: u16 = 36;
/// BOLT #2 `shutdown`.
pub const MSG_SHUTDOWN: u16 = 38;
/// BOLT #2 `closing_signed`.
pub const MSG_CLOSING_SIGNED: u16 = 39;
/// BOLT #2 `update_add_htlc`.
pub const MSG_UPDATE_ADD_HTLC: u16 = 128;
/// BOLT #2 `update_fulfill_htlc`.
pub const MSG_UPDATE_FULFILL_HTLC: u16 = 130;
/// BOLT #2 `update_fail_htlc`.
pub const MSG_UPDATE_FAIL_HTLC: u16 = 131;
/// BOLT #2 `commitment_signed`.
pub const MSG_COMMITMENT_SIGNED: u16 = 132;
/// BOLT #2 `revoke_and_ack`.
pub const MSG_REVOKE_AND_ACK: u16 = 133;
/// BOLT #2 `update_fee`.
pub const MSG_UPDATE_FEE: u16 = 134;
/// BOLT #2 `update_fail_malformed_htlc`.
pub const MSG_UPDATE_FAIL_MALFORMED_HTLC: u16 = 135;
/// BOLT #2 `channel_reestablish`.
pub const MSG_CHANNEL_REESTABLISH: u16 = 136;
/// BOLT #7 `channel_announcement` (gossip; not for the channel engine).
pub const MSG_CHANNEL_ANNOUNCEMENT: u16 = 256;
/// BOLT #7 `node_announcement` (gossip).
pub const MSG_NODE_ANNOUNCEMENT: u16 = 257;
/// BOLT #7 `channel_update`: the channel engine needs the peer's for private channels too.
pub const MSG_CHANNEL_UPDATE: u16 = 258;
/// BOLT #7 `announcement_signatures`.
pub const MSG_ANNOUNCEMENT_SIGNATURES: u16 = 259;
/// BOLT #4 `onion_message` (not used for BOLT11 payments).
pub const MSG_ONION_MESSAGE: u16 = 513;

/// Message types payd wants from peerd: everything the channel engine handles.
pub const CHANNEL_MESSAGE_TYPES: &[u16] = &[
    MSG_WARNING,
    MSG_ERROR,
    MSG_OPEN_CHANNEL,
    MSG_ACCEPT_CHANNEL,
    MSG_FUNDING_CREATED,
    MSG_FUNDING_SIGNED,
    MSG_CHANNEL_READY,
    MSG_SHUTDOWN,
    MSG_CLOSING_SIGNED,
    MSG_UPDATE_ADD_HTLC,
    MSG_UPDATE_FULFILL_HTLC,
    MSG_UPDATE_FAIL_HTLC,
    MSG_COMMITMENT_SIGNED,
    MSG_REVOKE_AND_ACK,
    MSG_UPDATE_FEE,
    MSG_UPDATE_FAIL_MALFORMED_HTLC,
    MSG_CHANNEL_REESTABLISH,
    MSG_CHANNEL_UPDATE,
    MSG_ANNOUNCEMENT_SIGNATURES,
];

/// Feature bits LDK provides but whose messages the bridge does not carry (quiescence 34/35,
/// provide_storage 42/43, splicing 62/63). They are cleared from our Init and from the peer's Init
/// before LDK sees it, so neither side ever negotiates them.
pub const UNSUPPORTED_FEATURE_BITS: &[usize] = &[34, 35, 42, 43, 62, 63];

/// Why an inbound message could not be handed to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundError {
    /// Fewer than two bytes: no type.
    Truncated,
    /// The payload did not decode as the message its type names.
    Decode {
        /// The message type.
        msg_type: u16,
        /// LDK's decode error.
        reason: String,
    },
    /// An even type the engine does not know ("it's OK to be odd").
    UnknownEven(u16),
    /// A message that must never arrive on the channel path (init after connect).
    Unexpected(u16),
}

impl std::fmt::Display for InboundError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InboundError::Truncated => f.write_str("message shorter than its 2-byte type"),
            InboundError::Decode { msg_type, reason } => {
                write!(f, "message type {msg_type} does not decode: {reason}")
            }
            InboundError::UnknownEven(t) => write!(f, "unknown even message type {t}"),
            InboundError::Unexpected(t) => write!(f, "message type {t} is not expected here"),
        }
    }
}

/// What happened to an inbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatched {
    /// Handed to the channel engine.
    Delivered(u16),
    /// Not for the channel engine (unknown odd, ping/pong, gossip, onion, warning): ignored.
    Ignored(u16),
    /// An error message for all channels (`channel_id` all zeros): delivered, then the
    /// connection must be dropped.
    DeliveredThenDisconnect(u16),
}

/// Split a raw message into its type and payload.
pub fn split_type(raw: &[u8]) -> Result<(u16, &[u8]), InboundError> {
    match raw {
        [a, b, payload @ ..] => Ok((u16::from_be_bytes([*a, *b]), payload)),
        _ => Err(InboundError::Truncated),
    }
}

fn decode<M: LengthReadable>(msg_type: u16, payload: &[u8]) -> Result<M, InboundError> {
    let mut reader = payload;
    M::read_from_fixed_length_buffer(&mut reader)
        .map_err(|e| InboundError::Decode { msg_type, reason: format!("{e:?}") })
}

/// Decode an inbound message and call the matching handler method of `h` for `peer`.
pub fn dispatch<H: ChannelMessageHandler>(h: &H, peer: PublicKey, raw: &[u8]) -> Result<Dispatched, InboundError> {
    let (t, p) = split_type(raw)?;
    match t {
        MSG_OPEN_CHANNEL => h.handle_open_channel(peer, &decode::<msgs::OpenChannel>(t, p)?),
        MSG_ACCEPT_CHANNEL => h.handle_accept_channel(peer, &decode::<msgs::AcceptChannel>(t, p)?),
        MSG_FUNDING_CREATED => h.handle_funding_created(peer, &decode::<msgs::FundingCreated>(t, p)?),
        MSG_FUNDING_SIGNED => h.handle_funding_signed(peer, &decode::<msgs::FundingSigned>(t, p)?),
        MSG_CHANNEL_READY => h.handle_channel_ready(peer, &decode::<msgs::ChannelReady>(t, p)?),
        MSG_SHUTDOWN => h.handle_shutdown(peer, &decode::<msgs::Shutdown>(t, p)?),
        MSG_CLOSING_SIGNED => h.handle_closing_signed(peer, &decode::<msgs::ClosingSigned>(t, p)?),
        MSG_UPDATE_ADD_HTLC => h.handle_update_add_htlc(peer, &decode::<msgs::UpdateAddHTLC>(t, p)?),
        MSG_UPDATE_FULFILL_HTLC => h.handle_update_fulfill_htlc(peer, decode::<msgs::UpdateFulfillHTLC>(t, p)?),
        MSG_UPDATE_FAIL_HTLC => h.handle_update_fail_htlc(peer, &decode::<msgs::UpdateFailHTLC>(t, p)?),
        MSG_UPDATE_FAIL_MALFORMED_HTLC => {
            h.handle_update_fail_malformed_htlc(peer, &decode::<msgs::UpdateFailMalformedHTLC>(t, p)?)
        }
        MSG_COMMITMENT_SIGNED => h.handle_commitment_signed(peer, &decode::<msgs::CommitmentSigned>(t, p)?),
        MSG_REVOKE_AND_ACK => h.handle_revoke_and_ack(peer, &decode::<msgs::RevokeAndACK>(t, p)?),
        MSG_UPDATE_FEE => h.handle_update_fee(peer, &decode::<msgs::UpdateFee>(t, p)?),
        MSG_CHANNEL_REESTABLISH => h.handle_channel_reestablish(peer, &decode::<msgs::ChannelReestablish>(t, p)?),
        MSG_CHANNEL_UPDATE => {
            ChannelMessageHandler::handle_channel_update(h, peer, &decode::<msgs::ChannelUpdate>(t, p)?);
        }
        MSG_ANNOUNCEMENT_SIGNATURES => {
            h.handle_announcement_signatures(peer, &decode::<msgs::AnnouncementSignatures>(t, p)?)
        }
        MSG_ERROR => {
            let msg = decode::<msgs::ErrorMessage>(t, p)?;
            let all = msg.channel_id.0 == [0u8; 32];
            h.handle_error(peer, &msg);
            h.message_received();
            return Ok(if all { Dispatched::DeliveredThenDisconnect(t) } else { Dispatched::Delivered(t) });
        }
        MSG_WARNING => {
            let msg = decode::<msgs::WarningMessage>(t, p)?;
            tracing::warn!(target: "payd::ldk", %peer, "peer warning: {}", msg.data);
            return Ok(Dispatched::Ignored(t));
        }
        MSG_INIT => return Err(InboundError::Unexpected(t)),
        MSG_PING | MSG_PONG | MSG_CHANNEL_ANNOUNCEMENT | MSG_NODE_ANNOUNCEMENT | MSG_ONION_MESSAGE => {
            return Ok(Dispatched::Ignored(t))
        }
        other if other % 2 == 1 => return Ok(Dispatched::Ignored(t)),
        other => return Err(InboundError::UnknownEven(other)),
    }
    h.message_received();
    Ok(Dispatched::Delivered(t))
}

/// Encode one LDK message as raw bytes (type then payload).
pub fn encode<M: Type + Writeable>(msg: &M) -> Vec<u8> {
    let mut raw = msg.type_id().to_be_bytes().to_vec();
    raw.extend_from_slice(&msg.encode());
    raw
}

/// What the engine must do for one outbound event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// Send these bytes to the peer.
    Send(PublicKey, Vec<u8>),
    /// Drop the connection to the peer (after sending what precedes this item).
    Disconnect(PublicKey),
}

/// Turn one `MessageSendEvent` into raw messages in `PeerManager`'s order.
/// Gossip broadcasts of public channels are not produced for private channels and are skipped.
pub fn encode_event(event: MessageSendEvent, out: &mut Vec<Outbound>) {
    use MessageSendEvent as E;
    match event {
        E::SendAcceptChannel { node_id, msg } => out.push(Outbound::Send(node_id, encode(&msg))),
        E::SendOpenChannel { node_id, msg } => out.push(Outbound::Send(node_id, encode(&msg))),
        E::SendFundingCreated { node_id, msg } => out.push(Outbound::Send(node_id, encode(&msg))),
        E::SendFundingSigned { node_id, msg } => out.push(Outbound::Send(node_id, encode(&msg))),
        E::SendChannelReady { node_id, msg } => out.push(Outbound::Send(node_id, encode(&msg))),
        E::SendAnnouncementSignatures { node_id, msg } => out.push(Outbound::Send(node_id, encode(&msg))),
        E::SendRevokeAndACK { node_id, msg } => out.push(Outbound::Send(node_id, encode(&msg))),
        E::SendClosingSigned { node_id, msg } => out.push(Outbound::Send(node_id, encode(&msg))),
        E::SendShutdown { node_id, msg } => out.push(Outbound::Send(node_id, encode(&msg))),
        E::SendChannelReestablish { node_id, msg } => out.push(Outbound::Send(node_id, encode(&msg))),
        E::SendChannelUpdate { node_id, msg } => out.push(Outbound::Send(node_id, encode(&msg))),
        E::UpdateHTLCs { node_id, updates, .. } => {
            for m in &updates.update_fulfill_htlcs {
                out.push(Outbound::Send(node_id, encode(m)));
            }
            for m in &updates.update_fail_htlcs {
                out.push(Outbound::Send(node_id, encode(m)));
            }
            for m in &updates.update_fail_malformed_htlcs {
                out.push(Outbound::Send(node_id, encode(m)));
            }
            for m in &updates.update_add_htlcs {
                out.push(Outbound::Send(node_id, encode(m)));
            }
            if let Some(m) = &updates.update_fee {
                out.push(Outbound::Send(node_id, encode(m)));
            }
            if updates.commitment_signed.len() > 1 {
                if let Some(first) = updates.commitment_signed.first() {
                    let batch = msgs::StartBatch {
                        channel_id: first.channel_id,
                        batch_size: updates.commitment_signed.len() as u16,
                        message_type: Some(MSG_COMMITMENT_SIGNED),
                    };
                    out.push(Outbound::Send(node_id, encode(&batch)));
                }
            }
            for m in &updates.commitment_signed {
                out.push(Outbound::Send(node_id, encode(m)));
            }
        }
        E::HandleError { node_id, action } => match action {
            ErrorAction::SendErrorMessage { msg } => out.push(Outbound::Send(node_id, encode(&msg))),
            ErrorAction::SendWarningMessage { msg, .. } => out.push(Outbound::Send(node_id, encode(&msg))),
            ErrorAction::DisconnectPeer { msg } => {
                if let Some(msg) = msg {
                    out.push(Outbound::Send(node_id, encode(&msg)));
                }
                out.push(Outbound::Disconnect(node_id));
            }
            ErrorAction::DisconnectPeerWithWarning { msg } => {
                out.push(Outbound::Send(node_id, encode(&msg)));
                out.push(Outbound::Disconnect(node_id));
            }
            ErrorAction::IgnoreError | ErrorAction::IgnoreAndLog(_) | ErrorAction::IgnoreDuplicateGossip => {}
        },
        other => {
            tracing::debug!(target: "payd::ldk", "outbound event not carried by the bridge: {other:?}");
        }
    }
}

/// Clear `bits` from a big-endian feature bit field (as carried in Init).
pub fn clear_feature_bits_be(features_be: &mut [u8], bits: &[usize]) {
    let len = features_be.len();
    for &bit in bits {
        let byte = bit / 8;
        if byte < len {
            features_be[len - 1 - byte] &= !(1u8 << (bit % 8));
        }
    }
}

/// Whether bit `bit` is set in a big-endian feature bit field.
pub fn feature_bit_set_be(features_be: &[u8], bit: usize) -> bool {
    let len = features_be.len();
    let byte = bit / 8;
    byte < len && features_be[len - 1 - byte] & (1u8 << (bit % 8)) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_type_rejects_short_input() {
        assert_eq!(split_type(&[]), Err(InboundError::Truncated));
        assert_eq!(split_type(&[0]), Err(InboundError::Truncated));
        assert_eq!(split_type(&[0, 128, 9]), Ok((128, &[9u8][..])));
    }

    #[test]
    fn feature_bits_clear() {
        let mut f = vec![0x80, 0x08, 0x98, 0x08, 0x0a, 0x0a, 0x51, 0x21];
        assert!(feature_bit_set_be(&f, 63));
        assert!(feature_bit_set_be(&f, 43));
        assert!(feature_bit_set_be(&f, 35));
        assert!(feature_bit_set_be(&f, 12));
        clear_feature_bits_be(&mut f, UNSUPPORTED_FEATURE_BITS);
        assert!(!feature_bit_set_be(&f, 63));
        assert!(!feature_bit_set_be(&f, 43));
        assert!(!feature_bit_set_be(&f, 35));
        assert!(feature_bit_set_be(&f, 12));
        assert!(feature_bit_set_be(&f, 51));
        assert!(!feature_bit_set_be(&f, 200));
    }

    #[test]
    fn error_round_trips_through_encode_and_split() {
        let msg = msgs::ErrorMessage { channel_id: lightning::ln::types::ChannelId([3; 32]), data: "bad".into() };
        let raw = encode(&msg);
        let (t, p) = split_type(&raw).expect("typed");
        assert_eq!(t, MSG_ERROR);
        let back: msgs::ErrorMessage = decode(t, p).expect("decodes");
        assert_eq!(back, msg);
        let truncated = &raw[..raw.len() - 1];
        let (t, p) = split_type(truncated).expect("typed");
        assert!(matches!(decode::<msgs::ErrorMessage>(t, p), Err(InboundError::Decode { msg_type: MSG_ERROR, .. })));
    }
}
