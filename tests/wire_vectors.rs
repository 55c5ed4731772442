//! LCP v0.2 section 8 test vectors (byte-exact, both directions), our own vectors for every
//! message, and one test per rejection rule of sections 2 and 8.

use lcp::wire::lcp::v02::*;
use lcp::wire::lcp::*;
use lcp::wire::tlv::UnknownTlv;
use lcp::wire::WireError;
use sha2::{Digest, Sha256};

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).expect("test hex")
}

fn env(msg: u8, expiry: u64) -> Envelope {
    Envelope { protocol_version: 2, job_id: [0x11; 32], msg_id: [msg; 32], expiry }
}

/// Envelope bytes: pv 2, job 11.., msg_id, expiry.
fn env_hex(msg: u8, expiry_hex: &str) -> String {
    let job = "11".repeat(32);
    let msg_id = format!("{msg:02x}").repeat(32);
    let len = expiry_hex.len() / 2;
    format!("010200020220{job}0320{msg_id}04{len:02x}{expiry_hex}")
}

fn both_ways(msg: LcpMessage, payload_hex: &str) {
    let (t, bytes) = msg.encode().expect("encode");
    assert_eq!(t, msg.msg_type());
    assert_eq!(hex::encode(&bytes), payload_hex, "{}", msg.name());
    assert_eq!(LcpMessage::decode(t, &h(payload_hex)).expect("decode"), msg);
}

fn default_manifest() -> Manifest {
    Manifest {
        protocol_version: 2,
        max_payload_bytes: 16384,
        supported_tasks: None,
        max_stream_bytes: 4_194_304,
        max_job_bytes: 8_388_608,
        max_inflight_jobs: None,
        extra: vec![],
    }
}

#[test]
fn v1_default_manifest() {
    both_ways(LcpMessage::Manifest(default_manifest()), "010200020b0240000e034000000f03800000");
}

#[test]
fn v2_params_model() {
    assert_eq!(hex::encode(Params::with_model("gpt-5.2").encode().unwrap()), "01076770742d352e32");
}

#[test]
fn v3_manifest_with_tasks() {
    let template = Some(h("01076770742d352e32"));
    let m = Manifest {
        supported_tasks: Some(vec![
            TaskTemplate { task_kind: TASK_OPENAI_CHAT.into(), params_template: template.clone(), extra: vec![] },
            TaskTemplate { task_kind: TASK_OPENAI_RESPONSES.into(), params_template: template, extra: vec![] },
        ]),
        ..default_manifest()
    };
    both_ways(LcpMessage::Manifest(m), "010200020b0240000c4a0227141a6f70656e61692e636861745f636f6d706c6574696f6e732e7631160901076770742d352e322014136f70656e61692e726573706f6e7365732e7631160901076770742d352e320e034000000f03800000");
    let inflight = Manifest { max_inflight_jobs: Some(4), ..default_manifest() };
    both_ways(LcpMessage::Manifest(inflight), "010200020b0240000e034000000f0380000010020004");
}

fn v5_request(params: &[u8]) -> QuoteRequest {
    QuoteRequest {
        envelope: env(0x22, 1234),
        task_kind: TASK_OPENAI_CHAT.into(),
        params: Some(params.to_vec()),
        extra: vec![],
    }
}

#[test]
fn v5_quote_request() {
    let base = "010200020220111111111111111111111111111111111111111111111111111111111111111103202222222222222222222222222222222222222222222222222222222222222222040204d2141a6f70656e61692e636861745f636f6d706c6574696f6e732e7631";
    both_ways(LcpMessage::QuoteRequest(v5_request(&h("010161"))), &format!("{base}1603010161"));
    both_ways(LcpMessage::QuoteRequest(v5_request(&h("01076d6f64656c2d61"))), &format!("{base}160901076d6f64656c2d61"));
    assert_eq!(env_hex(0x22, "04d2"), &base[..2 * 76]);
}

// ---- our own vectors for every other message ---------------------------------------------

#[test]
fn own_quote_response_vector() {
    let m = QuoteResponse {
        envelope: env(0x33, 1234),
        price_msat: 1000,
        quote_expiry: 1_700_000_300,
        terms_hash: [0x44; 32],
        payment_request: "lnbcrt1".into(),
        extra: vec![],
    };
    let expected =
        format!("{}1e0203e81f046553f22c2020{}2107{}", env_hex(0x33, "04d2"), "44".repeat(32), hex::encode("lnbcrt1"));
    both_ways(LcpMessage::QuoteResponse(m), &expected);
}

#[test]
fn own_result_vectors() {
    let ok = LcpResult {
        envelope: env(0x55, 800),
        outcome: ResultOutcome::Ok(ResultOk {
            result_stream_id: [0x66; 32],
            result_hash: [0x77; 32],
            result_len: 16384,
            result_content_type: "application/json".into(),
            result_content_encoding: "identity".into(),
        }),
        extra: vec![],
    };
    let expected = format!(
        "{}64020000 6520{} 6620{} 67024000 6810{} 6908{}",
        env_hex(0x55, "0320"),
        "66".repeat(32),
        "77".repeat(32),
        hex::encode("application/json"),
        hex::encode("identity")
    )
    .replace(' ', "");
    both_ways(LcpMessage::Result(ok), &expected);

    // message (81) is placed before status (100).
    let failed = LcpResult {
        envelope: env(0x55, 800),
        outcome: ResultOutcome::Failed { message: Some("boom".into()) },
        extra: vec![],
    };
    let expected = format!("{}5104{}64020001", env_hex(0x55, "0320"), hex::encode("boom"));
    both_ways(LcpMessage::Result(failed), &expected);

    let cancelled =
        LcpResult { envelope: env(0x55, 800), outcome: ResultOutcome::Cancelled { message: None }, extra: vec![] };
    both_ways(LcpMessage::Result(cancelled), &format!("{}64020002", env_hex(0x55, "0320")));
}

#[test]
fn own_stream_vectors() {
    let begin = StreamBegin {
        envelope: env(0x22, 1234),
        stream_id: [0x99; 32],
        stream_kind: StreamKind::Input,
        total_len: Some(57),
        sha256: Some([0xaa; 32]),
        content_type: "application/json; charset=utf-8".into(),
        content_encoding: "identity".into(),
        extra: vec![],
    };
    let expected = format!(
        "{}5a20{}5b0200015c01395d20{}5e1f{}5f08{}",
        env_hex(0x22, "04d2"),
        "99".repeat(32),
        "aa".repeat(32),
        hex::encode("application/json; charset=utf-8"),
        hex::encode("identity")
    );
    both_ways(LcpMessage::StreamBegin(begin), &expected);

    // seq 0 is a zero-length value `60 00`; the msg_id is SHA256(stream_id || 00000000).
    let chunk = StreamChunk {
        protocol_version: 2,
        job_id: [0x11; 32],
        expiry: 1234,
        stream_id: [0x99; 32],
        seq: 0,
        data: b"hi".to_vec(),
        extra: vec![],
    };
    let mut pre = vec![0x99; 32];
    pre.extend([0, 0, 0, 0]);
    let msg_id = hex::encode(Sha256::digest(&pre));
    let expected =
        format!("01020002 0220{} 0320{} 040204d2 5a20{} 6000 61026869", "11".repeat(32), msg_id, "99".repeat(32))
            .replace(' ', "");
    both_ways(LcpMessage::StreamChunk(chunk.clone()), &expected);
    let chunk1 = StreamChunk { seq: 1, ..chunk };
    let (_, bytes) = LcpMessage::StreamChunk(chunk1).encode().unwrap();
    assert!(hex::encode(bytes).contains("600101"));

    let end =
        StreamEnd { envelope: env(0x23, 1234), stream_id: [0x99; 32], total_len: 0, sha256: [0xbb; 32], extra: vec![] };
    let expected = format!("{}5a20{}5c005d20{}", env_hex(0x23, "04d2"), "99".repeat(32), "bb".repeat(32));
    both_ways(LcpMessage::StreamEnd(end), &expected);
}

#[test]
fn own_cancel_and_error_vectors() {
    let c = Cancel { envelope: env(0x24, 1234), reason: Some("request canceled".into()), extra: vec![] };
    let expected = format!("{}4610{}", env_hex(0x24, "04d2"), hex::encode("request canceled"));
    both_ways(LcpMessage::Cancel(c), &expected);
    let c = Cancel { envelope: env(0x24, 0), reason: None, extra: vec![] };
    // expiry 0 is a zero-length tu64.
    both_ways(LcpMessage::Cancel(c), &env_hex(0x24, ""));

    let e = LcpError {
        envelope: env(0x25, 800),
        code: ErrorCode::InvalidState,
        message: Some("manifest not exchanged".into()),
        extra: vec![],
    };
    let expected = format!("{}5002000a5116{}", env_hex(0x25, "0320"), hex::encode("manifest not exchanged"));
    both_ways(LcpMessage::Error(e), &expected);
    let unknown = LcpError { envelope: env(0x25, 800), code: ErrorCode::Unknown(4242), message: None, extra: vec![] };
    both_ways(LcpMessage::Error(unknown), &format!("{}50021092", env_hex(0x25, "0320")));
}

#[test]
fn tu_examples_from_section2() {
    for (v, hx) in [(1234u64, "04d2"), (16384, "4000"), (4_194_304, "400000"), (1_700_000_300, "6553f22c")] {
        let m = Cancel { envelope: env(0x24, v), reason: None, extra: vec![] };
        assert_eq!(hex::encode(m.encode().unwrap()), env_hex(0x24, hx));
    }
}

// ---- accepted by the reference decoder ----------------------------------------------------

#[test]
fn accepts_unknown_tlvs_of_either_parity_between_envelope_and_body() {
    // quote_request with unknown 6 (even) and 7 (odd) between expiry (4) and task_kind (20),
    // and 200 (even) after params.
    let payload = format!("{}0601aa0700141a{}1603010161c800", env_hex(0x22, "04d2"), hex::encode(TASK_OPENAI_CHAT));
    let m = QuoteRequest::decode(&h(&payload)).unwrap();
    assert_eq!(
        m.extra,
        vec![
            UnknownTlv { tlv_type: 6, value: vec![0xaa] },
            UnknownTlv { tlv_type: 7, value: vec![] },
            UnknownTlv { tlv_type: 200, value: vec![] },
        ]
    );
    assert_eq!(hex::encode(m.encode().unwrap()), payload);
}

#[test]
fn accepts_ok_result_with_message_and_keeps_it_as_extra() {
    let payload = format!(
        "{}5102686964020000 6520{} 6620{} 6700 6801 61 6901 62",
        env_hex(0x55, "0320"),
        "66".repeat(32),
        "77".repeat(32)
    )
    .replace(' ', "");
    let r = LcpResult::decode(&h(&payload)).unwrap();
    assert!(matches!(r.outcome, ResultOutcome::Ok(_)));
    assert_eq!(r.extra[0].tlv_type, TLV_MESSAGE);
    assert_eq!(hex::encode(r.encode().unwrap()), payload);
    // The encoder refuses a non-UTF-8 message record the decoder would refuse.
    let mut bad = r.clone();
    bad.extra[0].value = vec![0xff];
    assert_eq!(bad.encode(), Err(WireError::InvalidUtf8 { field: "message" }));
}

#[test]
fn accepts_input_begin_without_len_and_hash_and_any_version() {
    let payload = format!(
        "{}5a20{}5b0200015e0161 5f0169",
        env_hex(0x22, "04d2").replacen("01020002", "01020063", 1),
        "99".repeat(32)
    )
    .replace(' ', "");
    let b = StreamBegin::decode(&h(&payload)).unwrap();
    assert_eq!(b.envelope.protocol_version, 99);
    assert_eq!((b.total_len, b.sha256), (None, None));
    assert_eq!(b.stream_kind, StreamKind::Input);
}

#[test]
fn accepts_chunk_with_empty_data_and_record_of_65535_bytes() {
    let mk = |data: Vec<u8>| StreamChunk {
        protocol_version: 2,
        job_id: [1; 32],
        expiry: 5,
        stream_id: [2; 32],
        seq: 7,
        data,
        extra: vec![],
    };
    for c in [mk(vec![]), mk(vec![0xcd; 65_535])] {
        let bytes = c.encode().unwrap();
        assert_eq!(StreamChunk::decode(&bytes).unwrap(), c);
    }
    // 65536 bytes is refused by the encoder too.
    assert!(matches!(mk(vec![0; 65_536]).encode(), Err(WireError::RecordTooLarge { .. })));
}

#[test]
fn accepts_unknown_params_tlvs() {
    let p = Params::decode(&h("0101610301ff")).unwrap();
    assert_eq!(p.extra.len(), 1);
    // ...and hashes them.
    assert_ne!(params_hash(Some(&h("0101610301ff"))).unwrap(), params_hash(Some(&h("010161"))).unwrap());
}

// ---- rejected (section 8 negative cases and section 2) ------------------------------------

fn manifest_hex() -> String {
    "010200020b0240000e034000000f03800000".into()
}

#[test]
fn rejects_manifest_with_envelope_tlvs() {
    for (ins, field) in [
        (format!("0220{}", "11".repeat(32)), "job_id"),
        (format!("0320{}", "11".repeat(32)), "msg_id"),
        ("040104".to_string(), "expiry"),
    ] {
        let p = format!("01020002{ins}0b0240000e034000000f03800000");
        assert!(
            matches!(Manifest::decode(&h(&p)), Err(WireError::NotAllowed { field: f, .. }) if f == field),
            "{field}"
        );
    }
}

#[test]
fn rejects_out_of_order_and_duplicate_records() {
    assert_eq!(
        Manifest::decode(&h("0b0240000102000 20e034000000f03800000".replace(' ', "").as_str())),
        Err(WireError::TlvNotAscending { tlv_type: 1, previous: 11 })
    );
    assert!(matches!(
        Manifest::decode(&h("01020002010200020b0240000e034000000f03800000")),
        Err(WireError::TlvNotAscending { .. })
    ));
}

#[test]
fn rejects_non_minimal_truncated_integers() {
    let base = env_hex(0x24, "04d2");
    let padded = base.replace("040204d2", "04030004d2");
    assert!(matches!(Cancel::decode(&h(&padded)), Err(WireError::BadTruncatedInt { field: "expiry", .. })));
    let zero = base.replace("040204d2", "040100");
    assert!(matches!(Cancel::decode(&h(&zero)), Err(WireError::BadTruncatedInt { field: "expiry", .. })));
    let long = base.replace("040204d2", "0409010000000000000000");
    assert!(matches!(Cancel::decode(&h(&long)), Err(WireError::BadTruncatedInt { field: "expiry", .. })));
    // tu32 longer than 4 bytes.
    let m = manifest_hex().replace("0b024000", "0b050100000000");
    assert!(matches!(Manifest::decode(&h(&m)), Err(WireError::BadTruncatedInt { field: "max_payload_bytes", .. })));
}

#[test]
fn rejects_u16_fields_of_wrong_length() {
    let m = manifest_hex().replace("01020002", "0103000002");
    assert!(matches!(
        Manifest::decode(&h(&m)),
        Err(WireError::BadLength { field: "protocol_version", len: 3, expected: 2 })
    ));
    let e = format!("{}500100", env_hex(0x25, "0320"));
    assert!(matches!(LcpError::decode(&h(&e)), Err(WireError::BadLength { field: "code", .. })));
    let r = format!("{}6401 00", env_hex(0x25, "0320")).replace(' ', "");
    assert!(matches!(LcpResult::decode(&h(&r)), Err(WireError::BadLength { field: "status", .. })));
    let b = format!("{}5a20{}5b01015e01615f0169", env_hex(0x22, "04d2"), "99".repeat(32));
    assert!(matches!(StreamBegin::decode(&h(&b)), Err(WireError::BadLength { field: "stream_kind", .. })));
}

#[test]
fn rejects_32_byte_fields_of_other_lengths() {
    let short_job =
        env_hex(0x24, "04d2").replace(&format!("0220{}", "11".repeat(32)), &format!("021f{}", "11".repeat(31)));
    assert!(matches!(Cancel::decode(&h(&short_job)), Err(WireError::BadLength { field: "job_id", len: 31, .. })));
    let long_msg =
        env_hex(0x24, "04d2").replace(&format!("0320{}", "24".repeat(32)), &format!("0321{}", "24".repeat(33)));
    assert!(matches!(Cancel::decode(&h(&long_msg)), Err(WireError::BadLength { field: "msg_id", len: 33, .. })));
    let qr = format!("{}1e0203e81f0201f4201f{}2101 61", env_hex(0x33, "04d2"), "44".repeat(31)).replace(' ', "");
    assert!(matches!(QuoteResponse::decode(&h(&qr)), Err(WireError::BadLength { field: "terms_hash", .. })));
    let end = format!("{}5a10{}5c005d20{}", env_hex(0x23, "04d2"), "99".repeat(16), "bb".repeat(32));
    assert!(matches!(StreamEnd::decode(&h(&end)), Err(WireError::BadLength { field: "stream_id", .. })));
}

#[test]
fn rejects_chunk_with_wrong_msg_id() {
    // A chunk whose msg_id is 33.. instead of SHA256(stream_id || seq).
    let p = format!("{}5a20{}6000 61026869", env_hex(0x33, "04d2"), "99".repeat(32)).replace(' ', "");
    assert!(matches!(StreamChunk::decode(&h(&p)), Err(WireError::InvalidValue { field: "msg_id", .. })));
    // The right id for seq 0 but the chunk says seq 1.
    let c = StreamChunk {
        protocol_version: 2,
        job_id: [0x11; 32],
        expiry: 1234,
        stream_id: [0x99; 32],
        seq: 0,
        data: vec![1],
        extra: vec![],
    };
    let good = hex::encode(c.encode().unwrap());
    let bad = good.replace("5a20".to_string().as_str(), "5a20").replace("6000", "600101");
    assert!(matches!(StreamChunk::decode(&h(&bad)), Err(WireError::InvalidValue { field: "msg_id", .. })));
}

#[test]
fn rejects_bad_result_status_combinations() {
    let e = env_hex(0x55, "0320");
    let ok_fields = format!("6520{}6620{}67006801616901 62", "66".repeat(32), "77".repeat(32)).replace(' ', "");
    assert!(matches!(
        LcpResult::decode(&h(&format!("{e}64020003"))),
        Err(WireError::InvalidValue { field: "status", .. })
    ));
    assert!(matches!(
        LcpResult::decode(&h(&format!("{e}64020001{ok_fields}"))),
        Err(WireError::NotAllowed { field: "result_stream_id", .. })
    ));
    assert!(matches!(
        LcpResult::decode(&h(&format!("{e}64020002670105"))),
        Err(WireError::NotAllowed { field: "result_len", .. })
    ));
    // ok missing each of 101..105 in turn.
    let parts = [
        format!("6520{}", "66".repeat(32)),
        format!("6620{}", "77".repeat(32)),
        "6700".to_string(),
        "680161".to_string(),
        "690162".to_string(),
    ];
    let names = ["result_stream_id", "result_hash", "result_len", "result_content_type", "result_content_encoding"];
    for (skip, name) in names.iter().enumerate() {
        let body: String = parts.iter().enumerate().filter(|(i, _)| *i != skip).map(|(_, p)| p.as_str()).collect();
        assert_eq!(LcpResult::decode(&h(&format!("{e}64020000{body}"))), Err(WireError::Missing { field: name }));
    }
    // And the encoder refuses an empty content type.
    let r = LcpResult {
        envelope: env(0x55, 800),
        outcome: ResultOutcome::Ok(ResultOk {
            result_stream_id: [0; 32],
            result_hash: [0; 32],
            result_len: 0,
            result_content_type: String::new(),
            result_content_encoding: "identity".into(),
        }),
        extra: vec![],
    };
    assert_eq!(r.encode(), Err(WireError::Empty { field: "result_content_type" }));
}

#[test]
fn rejects_error_code_zero() {
    let p = format!("{}50020000", env_hex(0x25, "0320"));
    assert!(matches!(LcpError::decode(&h(&p)), Err(WireError::InvalidValue { field: "code", .. })));
    let e = LcpError { envelope: env(0x25, 800), code: ErrorCode::Unknown(0), message: None, extra: vec![] };
    assert!(e.encode().is_err());
}

#[test]
fn rejects_empty_or_invalid_utf8_strings() {
    let e = env_hex(0x22, "04d2");
    assert_eq!(QuoteRequest::decode(&h(&format!("{e}1400"))), Err(WireError::Empty { field: "task_kind" }));
    assert_eq!(QuoteRequest::decode(&h(&format!("{e}1402c328"))), Err(WireError::InvalidUtf8 { field: "task_kind" }));
    let sid = format!("5a20{}5b020001", "99".repeat(32));
    assert_eq!(
        StreamBegin::decode(&h(&format!("{e}{sid}5e005f0169"))),
        Err(WireError::Empty { field: "content_type" })
    );
    assert_eq!(
        StreamBegin::decode(&h(&format!("{e}{sid}5e01615f01ff"))),
        Err(WireError::InvalidUtf8 { field: "content_encoding" })
    );
    assert_eq!(
        StreamBegin::decode(&h(&format!("{e}{sid}5e01615f00"))),
        Err(WireError::Empty { field: "content_encoding" })
    );
    assert_eq!(Params::decode(&h("0100")), Err(WireError::Empty { field: "params.model" }));
    let qr = format!("{}1e0203e81f0201f42020{}2100", env_hex(0x33, "04d2"), "44".repeat(32));
    assert_eq!(QuoteResponse::decode(&h(&qr)), Err(WireError::Empty { field: "payment_request" }));
    // Encoders refuse the same.
    let mut q = v5_request(&h("010161"));
    q.task_kind.clear();
    assert_eq!(q.encode(), Err(WireError::Empty { field: "task_kind" }));
}

#[test]
fn rejects_stream_kind_other_than_1_and_2() {
    for k in ["0000", "0003", "ffff"] {
        let b = format!("{}5a20{}5b02{k}5e01615f0169", env_hex(0x22, "04d2"), "99".repeat(32));
        assert!(matches!(StreamBegin::decode(&h(&b)), Err(WireError::InvalidValue { field: "stream_kind", .. })));
    }
}

#[test]
fn rejects_manifest_zero_limits_and_missing_fields() {
    for (from, to, field) in [
        ("0b024000", "0b00", "max_payload_bytes"),
        ("0e03400000", "0e00", "max_stream_bytes"),
        ("0f03800000", "0f00", "max_job_bytes"),
    ] {
        let m = manifest_hex().replace(from, to);
        assert!(
            matches!(Manifest::decode(&h(&m)), Err(WireError::InvalidValue { field: f, .. }) if f == field),
            "{field}"
        );
    }
    for (rec, field) in [
        ("01020002", "protocol_version"),
        ("0b024000", "max_payload_bytes"),
        ("0e03400000", "max_stream_bytes"),
        ("0f03800000", "max_job_bytes"),
    ] {
        let m = manifest_hex().replace(rec, "");
        assert_eq!(Manifest::decode(&h(&m)), Err(WireError::Missing { field }));
    }
    let mut zero = default_manifest();
    zero.max_payload_bytes = 0;
    assert!(zero.encode().is_err());
}

#[test]
fn rejects_bad_supported_tasks_lists() {
    let elem = "140161";
    let list = |body: &str| {
        let len = body.len() / 2;
        format!("010200020b0240000c{len:02x}{body}0e034000000f03800000")
    };
    // Good: one element "a".
    let good = list(&format!("0103{elem}"));
    assert_eq!(Manifest::decode(&h(&good)).unwrap().supported_tasks.unwrap()[0].task_kind, "a");
    // Trailing bytes after the last element.
    assert!(matches!(Manifest::decode(&h(&list(&format!("0103{elem}00")))), Err(WireError::TrailingBytes { .. })));
    // An element with an empty task_kind.
    assert_eq!(Manifest::decode(&h(&list("01021400"))), Err(WireError::Empty { field: "supported_tasks.task_kind" }));
    // An element without task_kind.
    assert_eq!(
        Manifest::decode(&h(&list("0103160100"))),
        Err(WireError::Missing { field: "supported_tasks.task_kind" })
    );
    // A count above 1024.
    assert!(matches!(Manifest::decode(&h(&list("fd0401"))), Err(WireError::InvalidValue { .. })));
    // Count says 2, one element present.
    assert!(matches!(Manifest::decode(&h(&list(&format!("0203{elem}")))), Err(WireError::Truncated { .. })));
}

#[test]
fn rejects_empty_payload_truncation_nonminimal_bigsize_and_huge_records() {
    for t in [
        MSG_MANIFEST,
        MSG_QUOTE_REQUEST,
        MSG_QUOTE_RESPONSE,
        MSG_RESULT,
        MSG_STREAM_BEGIN,
        MSG_STREAM_CHUNK,
        MSG_STREAM_END,
        MSG_CANCEL,
        MSG_ERROR,
    ] {
        assert!(matches!(LcpMessage::decode(t, &[]), Err(WireError::Missing { .. })), "type {t}");
    }
    let full = h(&env_hex(0x24, "04d2"));
    for cut in [1, 3, 40, full.len() - 1] {
        assert!(matches!(Cancel::decode(&full[..cut]), Err(WireError::Truncated { .. })), "cut at {cut}");
    }
    let nonmin = env_hex(0x24, "04d2").replace("01020002", "01fd00020002");
    assert!(matches!(Cancel::decode(&h(&nonmin)), Err(WireError::NonMinimalBigSize { .. })));
    let mut huge = h(&env_hex(0x24, "04d2"));
    huge.extend([0x46, 0xfe, 0x00, 0x01, 0x00, 0x00]);
    huge.resize(huge.len() + 65_536, b'a');
    assert_eq!(Cancel::decode(&huge), Err(WireError::RecordTooLarge { tlv_type: 70, len: 65_536, max: 65_535 }));
}

#[test]
fn rejects_unknown_message_types() {
    assert_eq!(LcpMessage::decode(42099, &[]), Err(WireError::UnknownMessageType { msg_type: 42099 }));
}

#[test]
fn encoders_refuse_extras_that_collide() {
    let mut m = default_manifest();
    m.extra = vec![UnknownTlv { tlv_type: 3, value: vec![0; 32] }];
    assert_eq!(m.encode(), Err(WireError::DuplicateRecord { tlv_type: 3 }));
    let mut q = v5_request(&h("010161"));
    q.extra = vec![UnknownTlv { tlv_type: TLV_TASK_KIND, value: b"x".to_vec() }];
    assert_eq!(q.encode(), Err(WireError::DuplicateRecord { tlv_type: 20 }));
}
