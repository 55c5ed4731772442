//! The one versioned envelope every bus frame carries.
//!
//! Frame layout: `u16 BE version` then the postcard encoding of [`Envelope`]. Sender and receiver
//! are not in the envelope: they travel as ZeroMQ routing frames set by the broker, so a frame
//! cannot lie about who sent it. postcard is deterministic and has a stable, documented wire
//! format; enum variants may only be appended, and any incompatible change bumps [`BUS_VERSION`].

use super::api::Body;
use super::BusError;
use serde::{Deserialize, Serialize};

/// Version of the envelope and all service APIs it carries. 2: payd sends channel messages as
/// `PeerdApi::ChannelSend` with a sequence number, which a peerd of version 1 cannot carry, so
/// daemons of the two versions refuse each other's frames instead of stalling channels.
pub const BUS_VERSION: u16 = 2;

/// How a frame relates to others.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Corr {
    /// A request expecting exactly one reply with the same id.
    Request(u64),
    /// The reply to the request with this id.
    Reply(u64),
    /// A one-way message (notification, stream item).
    Event,
}

/// A decoded bus frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Correlation.
    pub corr: Corr,
    /// The message, one sub-enum per service API.
    pub body: Body,
}

impl Envelope {
    /// Encodes to a frame.
    pub fn encode(&self) -> Result<Vec<u8>, BusError> {
        Self::encode_ref(self.corr, &self.body)
    }

    /// Encodes a frame from a borrowed body (same bytes as [`Envelope::encode`]).
    pub fn encode_ref(corr: Corr, body: &Body) -> Result<Vec<u8>, BusError> {
        #[derive(Serialize)]
        struct Borrowed<'a> {
            corr: Corr,
            body: &'a Body,
        }
        let mut out = BUS_VERSION.to_be_bytes().to_vec();
        postcard::to_io(&Borrowed { corr, body }, &mut out).map_err(|e| BusError::Decode(format!("encode: {e}")))?;
        Ok(out)
    }

    /// Decodes a frame; refuses other versions and trailing bytes.
    pub fn decode(frame: &[u8]) -> Result<Self, BusError> {
        let rest = check_version(frame)?;
        let (env, tail): (Envelope, &[u8]) =
            postcard::take_from_bytes(rest).map_err(|e| BusError::Decode(e.to_string()))?;
        if !tail.is_empty() {
            return Err(BusError::Decode(format!("{} trailing bytes", tail.len())));
        }
        Ok(env)
    }

    /// Reads only the correlation of a frame (what the broker needs to answer an undeliverable
    /// request without decoding the body).
    pub fn peek_corr(frame: &[u8]) -> Result<Corr, BusError> {
        let rest = check_version(frame)?;
        let (corr, _): (Corr, _) = postcard::take_from_bytes(rest).map_err(|e| BusError::Decode(e.to_string()))?;
        Ok(corr)
    }
}

fn check_version(frame: &[u8]) -> Result<&[u8], BusError> {
    let (v, rest) =
        frame.split_first_chunk::<2>().ok_or_else(|| BusError::Decode("frame shorter than 2 bytes".into()))?;
    let v = u16::from_be_bytes(*v);
    if v != BUS_VERSION {
        return Err(BusError::Version(v));
    }
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::api::Ctl;
    use crate::bus::{ErrorCode, RemoteError};

    #[test]
    fn round_trip_and_peek() {
        let env = Envelope { corr: Corr::Request(77), body: Body::Ctl(Ctl::Echo(vec![1, 2, 3])) };
        let f = env.encode().unwrap();
        assert_eq!(&f[..2], &[0, 2]);
        assert_eq!(Envelope::encode_ref(env.corr, &env.body).unwrap(), f);
        assert_eq!(Envelope::decode(&f).unwrap(), env);
        assert_eq!(Envelope::peek_corr(&f).unwrap(), Corr::Request(77));
        let err = Envelope { corr: Corr::Reply(1), body: Body::Error(RemoteError::new(ErrorCode::NotFound, "x")) };
        assert_eq!(Envelope::decode(&err.encode().unwrap()).unwrap(), err);
    }

    #[test]
    fn refuses_other_versions_truncation_and_trailing_bytes() {
        let mut f = Envelope { corr: Corr::Event, body: Body::Ctl(Ctl::ListServices) }.encode().unwrap();
        for other in [1, 3] {
            let mut v = f.clone();
            v[1] = other;
            assert!(matches!(Envelope::decode(&v), Err(BusError::Version(n)) if n == u16::from(other)));
        }
        assert!(matches!(Envelope::decode(&f[..1]), Err(BusError::Decode(_))));
        assert!(matches!(Envelope::decode(&f[..2]), Err(BusError::Decode(_))));
        f.push(0);
        assert!(matches!(Envelope::decode(&f), Err(BusError::Decode(_))));
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for len in 0..300usize {
            let mut buf = vec![0u8, 2];
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            let _ = Envelope::decode(&buf);
            let _ = Envelope::peek_corr(&buf);
        }
    }
}
