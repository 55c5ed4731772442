//! The JSON shapes of lnd's REST API that the backend uses, as lnd documents them.
//!
//! lnd's REST gateway writes protobuf JSON with the proto field names: 64-bit integers as strings,
//! `bytes` as standard base64 in bodies (and URL-safe base64 in paths and queries), enums as their
//! names. Streaming calls answer with one JSON object per line, `{"result": ...}` or
//! `{"error": ...}`. Only the fields the backend reads are declared; unknown fields are ignored.

use serde::{Deserialize, Deserializer, Serialize};

/// A 64-bit integer that lnd writes as a string (and older versions sometimes as a number).
pub fn de_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Str(String),
        Num(u64),
    }
    match Option::<Either>::deserialize(d)? {
        None => Ok(0),
        Some(Either::Num(n)) => Ok(n),
        Some(Either::Str(s)) if s.is_empty() => Ok(0),
        Some(Either::Str(s)) => s.parse().map_err(serde::de::Error::custom),
    }
}

/// Encodes `bytes` as base64: the standard alphabet, or the URL-safe one; always padded (as Go's
/// `base64.StdEncoding` and `base64.URLEncoding`).
pub fn b64_encode(bytes: &[u8], url_safe: bool) -> String {
    let alphabet: &[u8; 64] = if url_safe {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes base64 in either alphabet, padded or not. `None` for anything else.
pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    }
    let s = s.trim().trim_end_matches('=');
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c)? << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    Some(out)
}

/// Decodes a 32-byte value lnd wrote as base64.
pub fn b64_32(s: &str) -> Option<[u8; 32]> {
    b64_decode(s)?.try_into().ok()
}

/// Percent-encodes a path segment or query value (everything but unreserved characters).
pub fn url_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET /v1/getinfo`.
#[derive(Clone, Debug, Deserialize)]
pub struct GetInfo {
    /// The node id, hex.
    pub identity_pubkey: String,
    /// Whether lnd has caught up with the chain.
    #[serde(default)]
    pub synced_to_chain: bool,
    /// The chains lnd runs on.
    #[serde(default)]
    pub chains: Vec<Chain>,
}

/// One entry of `GetInfo::chains`.
#[derive(Clone, Debug, Deserialize)]
pub struct Chain {
    /// `bitcoin`.
    #[serde(default)]
    pub chain: String,
    /// `mainnet`, `testnet`, `signet`, `regtest`, `simnet`.
    #[serde(default)]
    pub network: String,
}

/// `POST /v1/invoices` request (`lnrpc.Invoice`, the fields we set).
#[derive(Clone, Debug, Serialize)]
pub struct AddInvoice {
    /// Amount, msat (a string, as int64 fields are).
    pub value_msat: String,
    /// The 32-byte description hash, standard base64.
    pub description_hash: String,
    /// Seconds until it expires (a string).
    pub expiry: String,
    /// Include route hints for private channels.
    pub private: bool,
}

/// `POST /v1/invoices` response.
#[derive(Clone, Debug, Deserialize)]
pub struct AddInvoiceResponse {
    /// Payment hash, standard base64.
    pub r_hash: String,
    /// The BOLT11 string.
    pub payment_request: String,
    /// Index of the invoice in lnd's add order.
    #[serde(default, deserialize_with = "de_u64")]
    pub add_index: u64,
}

/// An invoice as lnd reports it (lookup and subscription).
#[derive(Clone, Debug, Deserialize)]
pub struct Invoice {
    /// Payment hash, standard base64.
    #[serde(default)]
    pub r_hash: String,
    /// `OPEN`, `SETTLED`, `CANCELED` or `ACCEPTED`.
    #[serde(default)]
    pub state: String,
    /// Amount paid, msat.
    #[serde(default, deserialize_with = "de_u64")]
    pub amt_paid_msat: u64,
    /// Settlement time, unix seconds.
    #[serde(default, deserialize_with = "de_u64")]
    pub settle_date: u64,
    /// Index of the settlement in lnd's settle order.
    #[serde(default, deserialize_with = "de_u64")]
    pub settle_index: u64,
}

/// `GET /v1/payreq/{pay_req}`.
#[derive(Clone, Debug, Deserialize)]
pub struct PayReq {
    /// Payee node id, hex.
    #[serde(default)]
    pub destination: String,
    /// Payment hash, hex.
    #[serde(default)]
    pub payment_hash: String,
    /// Amount, msat.
    #[serde(default, deserialize_with = "de_u64")]
    pub num_msat: u64,
    /// Description hash, hex (empty if the invoice has a plain description).
    #[serde(default)]
    pub description_hash: String,
    /// Creation time, unix seconds.
    #[serde(default, deserialize_with = "de_u64")]
    pub timestamp: u64,
    /// Validity, seconds.
    #[serde(default, deserialize_with = "de_u64")]
    pub expiry: u64,
}

/// `POST /v2/router/send` request (`routerrpc.SendPaymentRequest`, the fields we set).
#[derive(Clone, Debug, Serialize)]
pub struct SendPayment {
    /// The BOLT11 string.
    pub payment_request: String,
    /// How long the router keeps trying routes, seconds (0 would mean 60).
    pub timeout_seconds: i32,
    /// Fee limit, msat (a string; 0 allows only fee-free routes).
    pub fee_limit_msat: String,
    /// Stream only the final state.
    pub no_inflight_updates: bool,
}

/// A payment as lnd's router reports it (send and track streams).
#[derive(Clone, Debug, Deserialize)]
pub struct Payment {
    /// Payment hash, hex.
    #[serde(default)]
    pub payment_hash: String,
    /// `IN_FLIGHT`, `SUCCEEDED`, `FAILED` (`INITIATED`, `UNKNOWN` on newer and older versions).
    #[serde(default)]
    pub status: String,
    /// Preimage, hex, once succeeded.
    #[serde(default)]
    pub payment_preimage: String,
    /// Amount sent, msat.
    #[serde(default, deserialize_with = "de_u64")]
    pub value_msat: u64,
    /// Routing fees, msat.
    #[serde(default, deserialize_with = "de_u64")]
    pub fee_msat: u64,
    /// `FAILURE_REASON_NONE`, `FAILURE_REASON_NO_ROUTE`, ...
    #[serde(default)]
    pub failure_reason: String,
}

/// `GET /v1/channels`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ListChannels {
    /// Open channels.
    #[serde(default)]
    pub channels: Vec<Channel>,
}

/// One open channel.
#[derive(Clone, Debug, Deserialize)]
pub struct Channel {
    /// Whether the peer is online and the channel can be used.
    #[serde(default)]
    pub active: bool,
    /// The peer, hex.
    #[serde(default)]
    pub remote_pubkey: String,
    /// Our balance, sat.
    #[serde(default, deserialize_with = "de_u64")]
    pub local_balance: u64,
    /// The peer's balance, sat.
    #[serde(default, deserialize_with = "de_u64")]
    pub remote_balance: u64,
    /// What we must keep.
    #[serde(default)]
    pub local_constraints: Option<Constraints>,
    /// What the peer must keep.
    #[serde(default)]
    pub remote_constraints: Option<Constraints>,
}

/// Channel constraints of one side.
#[derive(Clone, Debug, Deserialize)]
pub struct Constraints {
    /// The reserve that side must keep, sat.
    #[serde(default, deserialize_with = "de_u64")]
    pub chan_reserve_sat: u64,
}

/// A gRPC status as lnd's gateway writes it, in an error body or an in-stream `{"error": ...}`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Status {
    /// gRPC code (5 not found, 6 already exists, 16 unauthenticated, ...).
    #[serde(default)]
    pub code: i32,
    /// lnd's message.
    #[serde(default)]
    pub message: String,
}

/// gRPC code NotFound.
pub const CODE_NOT_FOUND: i32 = 5;
/// gRPC code AlreadyExists.
pub const CODE_ALREADY_EXISTS: i32 = 6;

/// One line of a streaming answer.
#[derive(Clone, Debug, Deserialize)]
pub struct StreamLine<T> {
    /// The message.
    pub result: Option<T>,
    /// Or an error.
    pub error: Option<Status>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_in_both_alphabets() {
        for len in 0..40usize {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 250) as u8).collect();
            for url in [false, true] {
                let s = b64_encode(&data, url);
                assert_eq!(s.len() % 4, 0);
                assert_eq!(b64_decode(&s).as_deref(), Some(&data[..]), "{s}");
                assert_eq!(b64_decode(s.trim_end_matches('=')).as_deref(), Some(&data[..]));
            }
        }
        assert_eq!(b64_encode(b"foob", false), "Zm9vYg==");
        assert_eq!(b64_encode(&[0xfb, 0xff], false), "+/8=");
        assert_eq!(b64_encode(&[0xfb, 0xff], true), "-_8=");
        assert_eq!(b64_decode("Zm9vYmFy").as_deref(), Some(&b"foobar"[..]));
        assert!(b64_decode("Zm9v!").is_none());
        assert!(b64_decode("Z").is_none());
        assert_eq!(b64_32(&b64_encode(&[7; 32], false)), Some([7; 32]));
        assert_eq!(b64_32("Zm9v"), None);
    }

    #[test]
    fn int64_strings_and_lnd_shapes_decode() {
        let p: Payment = serde_json::from_str(
            r#"{"payment_hash":"ab","status":"SUCCEEDED","payment_preimage":"cd","value_msat":"1000","fee_msat":"3",
               "failure_reason":"FAILURE_REASON_NONE","htlcs":[]}"#,
        )
        .expect("payment");
        assert_eq!((p.value_msat, p.fee_msat, p.status.as_str()), (1000, 3, "SUCCEEDED"));
        let i: Invoice =
            serde_json::from_str(r#"{"state":"SETTLED","amt_paid_msat":42,"settle_index":"7"}"#).expect("inv");
        assert_eq!((i.amt_paid_msat, i.settle_index), (42, 7));
        let line: StreamLine<Payment> =
            serde_json::from_str(r#"{"error":{"code":6,"message":"invoice is already paid","details":[]}}"#)
                .expect("line");
        assert_eq!(line.error.map(|e| e.code), Some(CODE_ALREADY_EXISTS));
        assert!(serde_json::from_str::<Payment>(r#"{"value_msat":"x"}"#).is_err());
        let body = serde_json::to_value(SendPayment {
            payment_request: "lnbcrt1".into(),
            timeout_seconds: 60,
            fee_limit_msat: "10".into(),
            no_inflight_updates: true,
        })
        .expect("json");
        assert_eq!(body["fee_limit_msat"], "10");
        assert_eq!(url_escape("a+b/c="), "a%2Bb%2Fc%3D");
    }
}
