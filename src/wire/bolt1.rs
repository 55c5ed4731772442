//! BOLT #1 control messages: `init` (16), `error` (17), `warning` (1), `ping` (18), `pong` (19).
//!
//! Every message may end with an extension TLV stream; in these streams the BOLT #1 even/odd
//! rule applies: an unknown even type fails the decode, unknown odd records are kept (in
//! `extra`) so that re-encoding reproduces the input.
//!
//! Divergence from LDK, on purpose: `error`/`warning` `data` is kept as bytes, as BOLT #1
//! defines it; LDK refuses a message whose data is not UTF-8. [`ErrorMessage::text`] gives the
//! text when there is one.

use super::error::WireError;
use super::fundamental::{read_u16_be, take};
use super::tlv::{TlvReader, TlvWriter, UnknownTlv};

/// Type of `warning`.
pub const WARNING: u16 = 1;
/// Type of `init`.
pub const INIT: u16 = 16;
/// Type of `error`.
pub const ERROR: u16 = 17;
/// Type of `ping`.
pub const PING: u16 = 18;
/// Type of `pong`.
pub const PONG: u16 = 19;

/// `init` TLV type of `networks` (a list of 32-byte chain hashes).
pub const INIT_TLV_NETWORKS: u64 = 1;
/// `init` TLV type of `remote_addr` (one BOLT #7 address descriptor).
pub const INIT_TLV_REMOTE_ADDR: u64 = 3;

/// Largest BOLT #1 message payload (65535 bytes for type and payload together).
pub const MAX_PAYLOAD: usize = 65_533;

/// Largest `num_pong_bytes` that asks for a reply (BOLT #1: 65532 and above means "no pong").
pub const PONG_THRESHOLD: u16 = 65_532;

/// The `init` message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Init {
    /// `globalfeatures`, big-endian bit field as on the wire.
    pub global_features: Vec<u8>,
    /// `features` (the "local" features), big-endian bit field as on the wire.
    pub features: Vec<u8>,
    /// TLV 1 `networks`: chain hashes the sender is interested in.
    pub networks: Option<Vec<[u8; 32]>>,
    /// TLV 3 `remote_addr`: the raw address descriptor (BOLT #7 encoding), not interpreted.
    pub remote_addr: Option<Vec<u8>>,
    /// Unknown odd extension records.
    pub extra: Vec<UnknownTlv>,
}

/// The `error` message (also the shape of `warning`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorMessage {
    /// Channel the error is about; all zeros means "all channels / the connection".
    pub channel_id: [u8; 32],
    /// `data`: opaque bytes, usually human-readable text.
    pub data: Vec<u8>,
    /// Unknown odd extension records.
    pub extra: Vec<UnknownTlv>,
}

/// The `ping` message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ping {
    /// How many bytes the pong should carry (65532 or more: do not reply).
    pub num_pong_bytes: u16,
    /// Padding (should be zeros; receivers must not check).
    pub ignored: Vec<u8>,
    /// Unknown odd extension records.
    pub extra: Vec<UnknownTlv>,
}

/// The `pong` message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pong {
    /// Padding; its length answers the ping's `num_pong_bytes`.
    pub ignored: Vec<u8>,
    /// Unknown odd extension records.
    pub extra: Vec<UnknownTlv>,
}

impl Ping {
    /// The pong BOLT #1 requires in reply, or `None` when `num_pong_bytes >= 65532`.
    pub fn reply(&self) -> Option<Pong> {
        (self.num_pong_bytes < PONG_THRESHOLD)
            .then(|| Pong { ignored: vec![0; usize::from(self.num_pong_bytes)], extra: Vec::new() })
    }
}

/// One decoded BOLT #1 control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bolt1Message {
    /// `init`.
    Init(Init),
    /// `error`.
    Error(ErrorMessage),
    /// `warning`.
    Warning(ErrorMessage),
    /// `ping`.
    Ping(Ping),
    /// `pong`.
    Pong(Pong),
}

/// Reads a u16-length-prefixed byte field.
fn read_u16_bytes<'a>(buf: &mut &'a [u8], field: &'static str) -> Result<&'a [u8], WireError> {
    let len = read_u16_be(buf, field)?;
    take(buf, usize::from(len), field)
}

fn write_u16_bytes(out: &mut Vec<u8>, bytes: &[u8], field: &'static str) -> Result<(), WireError> {
    let len = u16::try_from(bytes.len()).map_err(|_| WireError::TooLong {
        field,
        len: bytes.len(),
        max: usize::from(u16::MAX),
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// Decodes an extension stream in which only odd unknown types are allowed.
fn read_extension(buf: &[u8]) -> Result<Vec<UnknownTlv>, WireError> {
    let mut extra = Vec::new();
    for r in TlvReader::new(buf, usize::MAX) {
        let r = r?;
        if r.tlv_type % 2 == 0 {
            return Err(WireError::UnknownEvenTlv { tlv_type: r.tlv_type });
        }
        extra.push(UnknownTlv::from_record(r));
    }
    Ok(extra)
}

fn write_extension(out: &mut Vec<u8>, extra: &[UnknownTlv]) -> Result<(), WireError> {
    TlvWriter::new(out, extra, usize::MAX).reject_even_extra().finish()
}

impl Init {
    /// Decodes an `init` payload.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut buf = payload;
        let global_features = read_u16_bytes(&mut buf, "init.globalfeatures")?.to_vec();
        let features = read_u16_bytes(&mut buf, "init.features")?.to_vec();
        let mut init = Init { global_features, features, ..Init::default() };
        for r in TlvReader::new(buf, usize::MAX) {
            let r = r?;
            match r.tlv_type {
                INIT_TLV_NETWORKS => {
                    if r.value.len() % 32 != 0 {
                        return Err(WireError::InvalidValue {
                            field: "init.networks",
                            reason: format!("length {} is not a multiple of 32", r.value.len()),
                        });
                    }
                    let chains = r
                        .value
                        .chunks_exact(32)
                        .map(|c| {
                            let mut h = [0u8; 32];
                            h.copy_from_slice(c);
                            h
                        })
                        .collect();
                    init.networks = Some(chains);
                }
                INIT_TLV_REMOTE_ADDR => init.remote_addr = Some(r.value.to_vec()),
                t if t % 2 == 0 => return Err(WireError::UnknownEvenTlv { tlv_type: t }),
                _ => init.extra.push(UnknownTlv::from_record(r)),
            }
        }
        Ok(init)
    }

    /// Encodes the `init` payload (canonical; fails only on oversize fields or bad extras).
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::with_capacity(4 + self.global_features.len() + self.features.len() + 64 + 32 * 4);
        write_u16_bytes(&mut out, &self.global_features, "init.globalfeatures")?;
        write_u16_bytes(&mut out, &self.features, "init.features")?;
        let mut w = TlvWriter::new(&mut out, &self.extra, usize::MAX).reject_even_extra();
        if let Some(networks) = &self.networks {
            let flat: Vec<u8> = networks.iter().flatten().copied().collect();
            w.record(INIT_TLV_NETWORKS, &flat)?;
        }
        if let Some(addr) = &self.remote_addr {
            w.record(INIT_TLV_REMOTE_ADDR, addr)?;
        }
        w.finish()?;
        Ok(out)
    }
}

impl ErrorMessage {
    /// Decodes an `error` or `warning` payload.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut buf = payload;
        let id = take(&mut buf, 32, "channel_id")?;
        let mut channel_id = [0u8; 32];
        channel_id.copy_from_slice(id);
        let data = read_u16_bytes(&mut buf, "data")?.to_vec();
        let extra = read_extension(buf)?;
        Ok(Self { channel_id, data, extra })
    }

    /// Encodes an `error` or `warning` payload.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::with_capacity(34 + self.data.len());
        out.extend_from_slice(&self.channel_id);
        write_u16_bytes(&mut out, &self.data, "data")?;
        write_extension(&mut out, &self.extra)?;
        Ok(out)
    }

    /// `data` as text, if it is valid UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.data).ok()
    }
}

impl Ping {
    /// Decodes a `ping` payload.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut buf = payload;
        let num_pong_bytes = read_u16_be(&mut buf, "num_pong_bytes")?;
        let ignored = read_u16_bytes(&mut buf, "ignored")?.to_vec();
        let extra = read_extension(buf)?;
        Ok(Self { num_pong_bytes, ignored, extra })
    }

    /// Encodes a `ping` payload.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::with_capacity(4 + self.ignored.len());
        out.extend_from_slice(&self.num_pong_bytes.to_be_bytes());
        write_u16_bytes(&mut out, &self.ignored, "ignored")?;
        write_extension(&mut out, &self.extra)?;
        Ok(out)
    }
}

impl Pong {
    /// Decodes a `pong` payload.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut buf = payload;
        let ignored = read_u16_bytes(&mut buf, "ignored")?.to_vec();
        let extra = read_extension(buf)?;
        Ok(Self { ignored, extra })
    }

    /// Encodes a `pong` payload.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::with_capacity(2 + self.ignored.len());
        write_u16_bytes(&mut out, &self.ignored, "ignored")?;
        write_extension(&mut out, &self.extra)?;
        Ok(out)
    }
}

impl Bolt1Message {
    /// Decodes the payload of a message of type `msg_type` (one of the five control types).
    pub fn decode(msg_type: u16, payload: &[u8]) -> Result<Self, WireError> {
        Ok(match msg_type {
            INIT => Self::Init(Init::decode(payload)?),
            ERROR => Self::Error(ErrorMessage::decode(payload)?),
            WARNING => Self::Warning(ErrorMessage::decode(payload)?),
            PING => Self::Ping(Ping::decode(payload)?),
            PONG => Self::Pong(Pong::decode(payload)?),
            other => return Err(WireError::UnknownMessageType { msg_type: other }),
        })
    }

    /// Encodes to `(type, payload)`.
    pub fn encode(&self) -> Result<(u16, Vec<u8>), WireError> {
        Ok(match self {
            Self::Init(m) => (INIT, m.encode()?),
            Self::Error(m) => (ERROR, m.encode()?),
            Self::Warning(m) => (WARNING, m.encode()?),
            Self::Ping(m) => (PING, m.encode()?),
            Self::Pong(m) => (PONG, m.encode()?),
        })
    }

    /// The BOLT #1 message type.
    pub fn msg_type(&self) -> u16 {
        match self {
            Self::Init(_) => INIT,
            Self::Error(_) => ERROR,
            Self::Warning(_) => WARNING,
            Self::Ping(_) => PING,
            Self::Pong(_) => PONG,
        }
    }
}

/// Splits a whole message (`u16 type || payload`) into its type and payload.
pub fn split_message(msg: &[u8]) -> Result<(u16, &[u8]), WireError> {
    match msg {
        [a, b, rest @ ..] => Ok((u16::from_be_bytes([*a, *b]), rest)),
        _ => Err(WireError::NoMessageType { len: msg.len() }),
    }
}

/// Joins a type and a payload into a whole message.
pub fn join_message(msg_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + payload.len());
    out.extend_from_slice(&msg_type.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_layout_uses_u16_lengths() {
        // The lnp-core bug: the ignored length must be a u16, not a BigSize.
        let p = Ping { num_pong_bytes: 4, ignored: vec![], extra: vec![] };
        assert_eq!(p.encode().unwrap(), vec![0x00, 0x04, 0x00, 0x00]);
        assert_eq!(Ping::decode(&[0x00, 0x04, 0x00, 0x00]).unwrap(), p);
        assert!(matches!(Ping::decode(&[0x00, 0x04, 0x00]), Err(WireError::Truncated { .. })));
    }

    #[test]
    fn ping_reply_respects_threshold() {
        let p = Ping { num_pong_bytes: 3, ..Ping::default() };
        assert_eq!(p.reply().unwrap().ignored, vec![0, 0, 0]);
        let p = Ping { num_pong_bytes: PONG_THRESHOLD, ..Ping::default() };
        assert_eq!(p.reply(), None);
    }

    #[test]
    fn init_even_unknown_tlv_is_an_error_odd_is_kept() {
        // features empty, then TLV 5 (odd) kept.
        let odd = [0, 0, 0, 0, 5, 1, 0xaa];
        let init = Init::decode(&odd).unwrap();
        assert_eq!(init.extra[0].tlv_type, 5);
        assert_eq!(init.encode().unwrap(), odd.to_vec());
        let even = [0, 0, 0, 0, 4, 1, 0xaa];
        assert_eq!(Init::decode(&even), Err(WireError::UnknownEvenTlv { tlv_type: 4 }));
    }

    #[test]
    fn init_networks_must_be_whole_hashes() {
        let mut bad = vec![0, 0, 0, 0, 1, 31];
        bad.extend([7u8; 31]);
        assert!(matches!(Init::decode(&bad), Err(WireError::InvalidValue { field: "init.networks", .. })));
    }

    #[test]
    fn error_extension_rejects_even_types() {
        let mut m = vec![0u8; 32];
        m.extend([0, 2, b'h', b'i', 2, 0]);
        assert_eq!(ErrorMessage::decode(&m), Err(WireError::UnknownEvenTlv { tlv_type: 2 }));
    }

    #[test]
    fn split_message_needs_two_bytes() {
        assert_eq!(split_message(&[0x00]), Err(WireError::NoMessageType { len: 1 }));
        assert_eq!(split_message(&[0x00, 0x12, 9]).unwrap(), (18, &[9u8][..]));
    }
}
