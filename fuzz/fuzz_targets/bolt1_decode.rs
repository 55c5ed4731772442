//! BOLT #1 control messages: decoding never panics, and whatever decodes re-encodes to the
//! same bytes (the codec is canonical).
#![no_main]

use lcp_wire_fuzz::wire::bolt1::{split_message, Bolt1Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((t, payload)) = split_message(data) else {
        return;
    };
    // Steer most inputs to the five control types.
    let t = match t % 8 {
        0 => 1,
        1 => 16,
        2 => 17,
        3 => 18,
        4 => 19,
        _ => t,
    };
    if let Ok(m) = Bolt1Message::decode(t, payload) {
        let (t2, bytes) = m.encode().expect("a decoded message encodes");
        assert_eq!(t2, t);
        assert_eq!(bytes, payload, "re-encoding is not byte-exact");
    }
});
