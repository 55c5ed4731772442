//! LCP v0.2 messages and params: decoding never panics, and whatever decodes re-encodes to the
//! same bytes (the codec is canonical and keeps unknown records).
#![no_main]

use lcp_wire_fuzz::wire::lcp::{v02, LcpMessage, Params};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    // One of the nine types, chosen by the first byte.
    let t = v02::MSG_FIRST + 2 * u16::from(selector % 9);
    if let Ok(m) = LcpMessage::decode(t, payload) {
        let (t2, bytes) = m.encode().expect("a decoded message encodes");
        assert_eq!(t2, t);
        assert_eq!(bytes, payload, "re-encoding is not byte-exact");
    }
    if let Ok(p) = Params::decode(payload) {
        assert_eq!(p.encode().expect("params encode"), payload);
    }
});
