//! The `wire` tool: decode to text or JSON, encode the JSON back to the exact bytes, terms-hash;
//! and the same through the `lcp-cli` binary (`wire decode --json HEX | wire encode`).

use lcp::cli::wire::{message_name, run, WireCliError, WireCmd};
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Output, Stdio};

const V1: &str = "a461010200020b0240000e034000000f03800000";
const V3: &str = "a461010200020b0240000c4a0227141a6f70656e61692e636861745f636f6d706c6574696f6e732e7631160901076770742d352e322014136f70656e61692e726573706f6e7365732e7631160901076770742d352e320e034000000f03800000";
const V5: &str = "a463010200020220111111111111111111111111111111111111111111111111111111111111111103202222222222222222222222222222222222222222222222222222222222222222040204d2141a6f70656e61692e636861745f636f6d706c6574696f6e732e76311603010161";

fn decode(hex: &str) -> Result<Value, WireCliError> {
    let out = run(&WireCmd::Decode { hex: hex.into() }, true, &mut std::io::empty())?;
    Ok(serde_json::from_str(&out).expect("decode --json prints JSON"))
}

fn decode_text(hex: &str) -> String {
    let out = run(&WireCmd::Decode { hex: hex.into() }, false, &mut std::io::empty()).expect("decodes");
    assert!(serde_json::from_str::<Value>(&out).is_err(), "the default output is not JSON:\n{out}");
    out
}

fn encode(json: &str) -> Result<String, WireCliError> {
    run(&WireCmd::Encode, false, &mut json.as_bytes())
}

fn terms_hash(json: bool, input: &str) -> Result<String, WireCliError> {
    run(&WireCmd::TermsHash, json, &mut input.as_bytes())
}

fn round_trip(hex: &str) -> Value {
    let v = decode(hex).expect("decodes");
    assert_eq!(encode(&v.to_string()).expect("encodes"), hex);
    let t = u16::from_str_radix(&hex[..4], 16).expect("type");
    assert_eq!(v["type"].as_str(), message_name(t));
    v
}

#[test]
fn section8_vectors_round_trip_through_json() {
    let v = round_trip(V1);
    assert_eq!(v["type"], "lcp_manifest");
    assert_eq!(v["protocol_version"], 2);
    assert_eq!(v["max_payload_bytes"], 16384);
    assert_eq!(v["max_stream_bytes"], 4_194_304);
    assert_eq!(v["max_job_bytes"], 8_388_608);

    let v = round_trip(V3);
    assert_eq!(v["supported_tasks"][0]["task_kind"], "openai.chat_completions.v1");
    assert_eq!(v["supported_tasks"][1]["params_template"]["model"], "gpt-5.2");

    let v = round_trip(V5);
    assert_eq!(v["type"], "lcp_quote_request");
    assert_eq!(v["job_id"], "11".repeat(32));
    assert_eq!(v["msg_id"], "22".repeat(32));
    assert_eq!(v["expiry"], 1234);
    assert_eq!(v["params"]["model"], "a");

    round_trip("a461010200020b0240000e034000000f0380000010020004");
}

#[test]
fn unknown_tlvs_are_listed_and_reproduced() {
    // V1 with an unknown even record 6 and odd record 255 (BigSize type fd00ff? no: 0xff < 0xfd
    // is false, so it needs fd00ff).
    let hex = "a461010200020602abcd0b0240000e034000000f03800000fd00ff0101";
    let v = round_trip(hex);
    assert_eq!(v["unknown_tlvs"][0]["type"], 6);
    assert_eq!(v["unknown_tlvs"][0]["value"], "abcd");
    assert_eq!(v["unknown_tlvs"][1]["type"], 255);
}

#[test]
fn non_standard_params_are_hex() {
    // params that are not a TLV stream stay hex.
    let hex = V5.replace("1603010161", "1602ffff");
    let v = round_trip(&hex);
    assert_eq!(v["params"], "ffff");
    // params with an unknown record.
    let hex = V5.replace("1603010161", "16060101610301aa");
    let v = round_trip(&hex);
    assert_eq!(v["params"]["model"], "a");
    assert_eq!(v["params"]["unknown_tlvs"][0]["type"], 3);
}

#[test]
fn bolt1_messages_round_trip() {
    // ping: num_pong_bytes 4, 2 ignored bytes.
    let v = round_trip("0012000400020000");
    assert_eq!(v["type"], "ping");
    assert_eq!(v["num_pong_bytes"], 4);
    round_trip("0013000100");
    let mut err = format!("0011{}0002", "00".repeat(32));
    err.push_str(&hex::encode("hi"));
    let v = round_trip(&err);
    assert_eq!(v["type"], "error");
    assert_eq!(v["data_text"], "hi");
    let warn = err.replacen("0011", "0001", 1);
    assert_eq!(round_trip(&warn)["type"], "warning");
    // init with features 0x0200, networks (one chain) and an odd extension.
    let init = format!("001000000002020001 20{} 0501ff", "6f".repeat(32)).replace(' ', "");
    let v = round_trip(&init);
    assert_eq!(v["features"], "0200");
    assert_eq!(v["networks"][0], "6f".repeat(32));
}

#[test]
fn every_lcp_message_name_round_trips() {
    let env = format!("01020002 0220{} 0320{} 04020320", "11".repeat(32), "33".repeat(32)).replace(' ', "");
    let cases = [
        (
            "a465",
            format!("{env}1e0203e81f0201f42020{}2103{}", "44".repeat(32), hex::encode("lnb")),
            "lcp_quote_response",
        ),
        ("a467", format!("{env}5102{}64020002", hex::encode("no")), "lcp_result"),
        ("a469", format!("{env}5a20{}5b0200025e01615f0169", "99".repeat(32)), "lcp_stream_begin"),
        ("a46d", format!("{env}5a20{}5c005d20{}", "99".repeat(32), "bb".repeat(32)), "lcp_stream_end"),
        ("a46f", format!("{env}4600"), "lcp_cancel"),
        ("a471", format!("{env}5002000c"), "lcp_error"),
    ];
    for (t, payload, name) in cases {
        let hex = format!("{t}{payload}");
        let v = round_trip(&hex);
        assert_eq!(v["type"], name, "{hex}");
    }
    let v = decode(&format!("a471{env}5002000c")).unwrap();
    assert_eq!(v["code"], 12);
    assert_eq!(v["code_name"], "checksum_mismatch");
}

#[test]
fn message_names_cover_exactly_the_decodable_types() {
    let named: Vec<u16> = (0..=u16::MAX).filter(|t| message_name(*t).is_some()).collect();
    let mut expected = vec![1u16, 16, 17, 18, 19];
    expected.extend((42081u16..=42097).step_by(2));
    assert_eq!(named, expected);
}

#[test]
fn chunk_msg_id_is_checked_on_encode() {
    let c = lcp::wire::lcp::StreamChunk {
        protocol_version: 2,
        job_id: [1; 32],
        expiry: 9,
        stream_id: [2; 32],
        seq: 3,
        data: vec![1, 2, 3],
        extra: vec![],
    };
    let whole = hex::encode(lcp::wire::Message::Lcp(lcp::wire::LcpMessage::StreamChunk(c)).encode().unwrap());
    let mut v = round_trip(&whole);
    v["msg_id"] = Value::String("00".repeat(32));
    let err = encode(&v.to_string()).unwrap_err().to_string();
    assert!(err.starts_with("msg_id:"), "{err}");
    // Without msg_id it is computed.
    v.as_object_mut().unwrap().remove("msg_id");
    assert_eq!(encode(&v.to_string()).unwrap(), whole);
}

#[test]
fn bad_input_gives_one_line_reasons() {
    for (hex, want) in [
        ("zz", "hex: invalid hex"),
        ("a4", "message: 1 bytes"),
        ("a461", "protocol_version: required field missing"),
        ("a4610b024000", "protocol_version: required field missing"),
        ("0040", "message type 64"),
        ("a461010200020b000e034000000f03800000", "max_payload_bytes: invalid value"),
    ] {
        let e = decode(hex).unwrap_err().to_string();
        assert!(e.contains(want), "{hex}: {e}");
        assert!(!e.contains('\n'), "{e}");
    }
    for (json, want) in [
        ("not json", "invalid JSON"),
        ("{}", "type: required"),
        (r#"{"type":"lcp_nope"}"#, "unknown message name"),
        (r#"{"type":"pong","ignored":"","extra_key":1}"#, "extra_key: unexpected key"),
        (r#"{"type":"pong","ignored":"0g"}"#, "ignored: invalid hex"),
        (r#"{"type":"ping","num_pong_bytes":70000,"ignored":""}"#, "num_pong_bytes: 70000 is out of range"),
    ] {
        let e = encode(json).unwrap_err().to_string();
        assert!(e.contains(want), "{json}: {e}");
    }
}

#[test]
fn terms_hash_reproduces_section8_vt() {
    let input = r#"{"model":"a","messages":[{"role":"user","content":"hi"}]}"#;
    let base = serde_json::json!({
        "job_id": "11".repeat(32),
        "price_msat": 1000,
        "quote_expiry": 500,
        "task_kind": "openai.chat_completions.v1",
        "input": input,
        "params": "010161",
        "input_content_type": "application/json; charset=utf-8",
        "input_content_encoding": "identity",
    });
    let out = terms_hash(true, &base.to_string()).unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["terms_hash"], "3ddf768b69e99198c377f718d88a4bf45b04ce9abcb0a63b167cea8fb5dce313");
    assert_eq!(v["input_len"], 57);

    // The same with input_hex and params as an object.
    let mut alt = base.clone();
    let o = alt.as_object_mut().unwrap();
    o.remove("input");
    o.insert("input_hex".into(), hex::encode(input).into());
    o.insert("params".into(), serde_json::json!({"model": "a"}));
    let out = terms_hash(true, &alt.to_string()).unwrap();
    let w: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(w["terms_hash"], v["terms_hash"]);

    // Both inputs: an error.
    let mut both = base.clone();
    both.as_object_mut().unwrap().insert("input_hex".into(), "00".into());
    assert!(terms_hash(true, &both.to_string()).is_err());
    assert!(terms_hash(false, &both.to_string()).is_err());

    // The text form: the hash first, then the rest, labelled, with the JSON form's values.
    let text = terms_hash(false, &base.to_string()).unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    let lines: Vec<(&str, &str)> =
        text.lines().map(|l| l.split_once(':').map(|(k, v)| (k, v.trim())).expect("label: value")).collect();
    let labels: Vec<&str> = lines.iter().map(|(k, _)| *k).collect();
    assert_eq!(labels, ["terms_hash", "terms_tlv", "input_hash", "params_hash", "input_len"], "{text}");
    for (k, val) in lines {
        assert_eq!(v[k].to_string().trim_matches('"'), val, "{k}");
    }
}

#[test]
fn clap_subcommand_names() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: WireCmd,
    }
    let c = Cli::try_parse_from(["lcp-cli", "decode", "a461"]).unwrap();
    assert_eq!(c.cmd, WireCmd::Decode { hex: "a461".into() });
    // --json is lcp-cli's global flag, accepted before or after the subcommand.
    let c = lcp::cli::Cli::try_parse_from(["lcp-cli", "wire", "decode", "--json", "a461"]).unwrap();
    assert!(c.json);
    let c = lcp::cli::Cli::try_parse_from(["lcp-cli", "--json", "wire", "decode", "a461"]).unwrap();
    assert!(c.json);
    let c = Cli::try_parse_from(["lcp-cli", "decode", "a461"]).unwrap();
    assert_eq!(c.cmd, WireCmd::Decode { hex: "a461".into() });
    let c = Cli::try_parse_from(["lcp-cli", "encode"]).unwrap();
    assert_eq!(c.cmd, WireCmd::Encode);
    let c = Cli::try_parse_from(["lcp-cli", "terms-hash"]).unwrap();
    assert_eq!(c.cmd, WireCmd::TermsHash);
    assert!(Cli::try_parse_from(["lcp-cli", "decode"]).is_err());
}

#[test]
fn decode_prints_text_by_default() {
    let text = decode_text(V5);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "lcp_quote_request (type 42083)",
            "protocol_version: 2",
            &format!("job_id: {}", "11".repeat(32)),
            &format!("msg_id: {}", "22".repeat(32)),
            "expiry: 1234",
            "task_kind: \"openai.chat_completions.v1\"",
            "params:",
            "  model: \"a\"",
        ]
    );

    // A nested list of TLV records, each under its marker.
    let text = decode_text(V3);
    assert!(text.starts_with("lcp_manifest (type 42081)\nprotocol_version: 2\nmax_payload_bytes: 16384\n"), "{text}");
    assert!(
        text.contains(
            "supported_tasks:\n  - task_kind: \"openai.chat_completions.v1\"\n    params_template:\n      model: \"gpt-5.2\"\n  - task_kind: \"openai.responses.v1\"\n"
        ),
        "{text}"
    );
    assert!(text.ends_with("max_stream_bytes: 4194304\nmax_job_bytes: 8388608"), "{text}");

    // Unknown records, params that are not a TLV stream, and the readable notes.
    let text = decode_text("a461010200020602abcd0b0240000e034000000f03800000fd00ff0101");
    assert!(text.contains("unknown_tlvs:\n  - type: 6\n    value: abcd\n  - type: 255\n    value: 01"), "{text}");
    assert!(decode_text(&V5.replace("1603010161", "1602ffff")).ends_with("\nparams: ffff"));
    let env = format!("01020002 0220{} 0320{} 04020320", "11".repeat(32), "33".repeat(32)).replace(' ', "");
    assert!(decode_text(&format!("a471{env}5002000c")).contains("\ncode: 12 (checksum_mismatch)"));
    assert!(decode_text(&format!("a467{env}5102{}64020002", hex::encode("no"))).contains("\nstatus: 2 (cancelled)\n"));
    let err = format!("0011{}0002{}", "00".repeat(32), hex::encode("hi"));
    let text = decode_text(&err);
    assert!(text.starts_with("error (type 17)\n") && text.contains("\ndata: 6869 (hi)"), "{text}");
    assert_eq!(decode_text("0013000100"), "pong (type 19)\nignored: 00");
    assert_eq!(decode_text("00130000"), "pong (type 19)\nignored: (empty)");

    // Errors are the same in both forms.
    let e = run(&WireCmd::Decode { hex: "a4".into() }, false, &mut std::io::empty()).unwrap_err();
    assert!(e.to_string().contains("message: 1 bytes"), "{e}");
}

#[test]
fn encode_prints_hex_or_json() {
    let json = decode(V1).unwrap().to_string();
    assert_eq!(run(&WireCmd::Encode, false, &mut json.as_bytes()).unwrap(), V1);
    let out = run(&WireCmd::Encode, true, &mut json.as_bytes()).unwrap();
    let v: Value = serde_json::from_str(&out).expect("encode --json prints JSON");
    assert_eq!(v, serde_json::json!({ "hex": V1 }));
}

// ---------------------------------------------------------------------------------------------
// The binary

/// Runs `lcp-cli` (with an empty data directory: the wire commands need no node).
fn lcp_cli(args: &[&str], stdin: &[u8]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lcp-cli"))
        .args(args)
        .env("LCP_DATADIR", dir.path())
        .env_remove("LCP_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lcp-cli starts");
    child.stdin.take().expect("stdin").write_all(stdin).expect("write stdin");
    child.wait_with_output().expect("lcp-cli ends")
}

fn stdout_of(args: &[&str], stdin: &[u8]) -> String {
    let out = lcp_cli(args, stdin);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn binary_decode_json_pipes_into_encode_byte_for_byte() {
    let init = format!("001000000002020001 20{} 0501ff", "6f".repeat(32)).replace(' ', "");
    for hex in [V1, V3, V5, "a461010200020602abcd0b0240000e034000000f03800000fd00ff0101", &init] {
        let json = stdout_of(&["wire", "decode", "--json", hex], b"");
        let v: Value = serde_json::from_str(&json).expect("--json prints JSON");
        assert_eq!(v, decode(hex).unwrap());
        // `lcp-cli wire decode --json HEX | lcp-cli wire encode`
        assert_eq!(stdout_of(&["wire", "encode"], json.as_bytes()), format!("{hex}\n"));
        // The global flag before the command means the same.
        assert_eq!(stdout_of(&["--json", "wire", "decode", hex], b""), json);
        // Without it: the text form.
        let text = stdout_of(&["wire", "decode", hex], b"");
        assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
        assert_eq!(text, format!("{}\n", decode_text(hex)));
    }
}

#[test]
fn binary_errors_are_one_line_with_exit_code_1() {
    for (args, stdin, want) in [
        (&["wire", "decode", "zz"][..], &b""[..], "hex: invalid hex"),
        (&["wire", "decode", "--json", "a4"][..], &b""[..], "message: 1 bytes"),
        (&["wire", "encode"][..], &b"{\"type\":\"lcp_nope\"}"[..], "unknown message name"),
        (&["wire", "terms-hash"][..], &b"{}"[..], "job_id: required"),
    ] {
        let out = lcp_cli(args, stdin);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("lcp-cli: error: ") && err.contains(want), "{args:?}: {err}");
    }
}
