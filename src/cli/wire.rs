//! `lcp-cli wire ...`: decode a BOLT #1 / LCP message to JSON, encode JSON back to the exact
//! bytes, and compute an LCP terms_hash.
//!
//! JSON shape: `"type"` is the message name (`lcp_manifest`, ..., `init`, `error`, `warning`,
//! `ping`, `pong`); the other keys are the spec's field names; byte fields are lowercase hex,
//! integers are numbers, text is a string. `params` / `params_template` are an object
//! `{"model": ..., "unknown_tlvs": [...]}` when they parse as the standard params stream and a
//! hex string otherwise. Records the codec does not interpret are listed as
//! `"unknown_tlvs": [{"type": N, "value": "hex"}]`, so `encode(decode(x)) == x` for every
//! message that decodes. Derived keys that `decode` adds for reading (`code_name` of
//! `lcp_error`, `data_text` of `error`/`warning`, `msg_id` of a chunk) are checked or ignored by
//! `encode`; any other unexpected key is an error.

use std::io::Read;

use serde_json::{json, Map, Value};
use thiserror::Error;

use crate::wire::bolt1::{self, Bolt1Message, ErrorMessage, Init, Ping, Pong};
use crate::wire::lcp::{
    messages::chunk_msg_id, Cancel, Envelope, ErrorCode, LcpError, LcpMessage, LcpResult, Manifest, Params,
    QuoteRequest, QuoteResponse, ResultOk, ResultOutcome, StreamBegin, StreamChunk, StreamEnd, StreamKind,
    TaskTemplate, Terms,
};
use crate::wire::tlv::UnknownTlv;
use crate::wire::{Message, WireError};

/// The `wire` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum WireCmd {
    /// Decode a whole message (2-byte type then payload, hex) to JSON.
    Decode {
        /// The message in hex.
        hex: String,
    },
    /// Encode a message given as JSON on stdin; prints the whole message in hex.
    Encode,
    /// Compute terms_hash from JSON on stdin: protocol_version (default 2), job_id (hex),
    /// price_msat, quote_expiry, task_kind, input (UTF-8 text) or input_hex (bytes), params
    /// (hex or {"model": ...}; absent = no params), input_content_type, input_content_encoding.
    TermsHash,
}

/// Errors of the `wire` commands (each prints as one line).
#[derive(Debug, Error)]
pub enum WireCliError {
    /// The argument or a JSON field was not valid hex.
    #[error("{field}: invalid hex ({reason})")]
    Hex {
        /// Where the hex was.
        field: String,
        /// Why it failed.
        reason: String,
    },
    /// The bytes did not decode or the message did not encode.
    #[error("{0}")]
    Wire(#[from] WireError),
    /// stdin was not valid JSON.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// A JSON field is missing or has the wrong shape.
    #[error("{field}: {reason}")]
    Field {
        /// The JSON key.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// stdin could not be read.
    #[error("reading stdin: {0}")]
    Io(String),
}

fn field_err(field: &str, reason: impl Into<String>) -> WireCliError {
    WireCliError::Field { field: field.to_owned(), reason: reason.into() }
}

/// Runs one `wire` command; returns what to print.
pub fn run(cmd: &WireCmd, stdin: &mut dyn Read) -> Result<String, WireCliError> {
    match cmd {
        WireCmd::Decode { hex } => {
            let bytes = parse_hex("hex", hex.trim())?;
            let v = decode_to_json(&bytes)?;
            pretty(&v)
        }
        WireCmd::Encode => {
            let v = read_json(stdin)?;
            Ok(hex::encode(encode_from_json(&v)?))
        }
        WireCmd::TermsHash => {
            let v = read_json(stdin)?;
            pretty(&terms_hash_json(&v)?)
        }
    }
}

fn pretty(v: &Value) -> Result<String, WireCliError> {
    serde_json::to_string_pretty(v).map_err(|e| WireCliError::Json(e.to_string()))
}

fn read_json(stdin: &mut dyn Read) -> Result<Value, WireCliError> {
    let mut s = String::new();
    stdin.read_to_string(&mut s).map_err(|e| WireCliError::Io(e.to_string()))?;
    serde_json::from_str(&s).map_err(|e| WireCliError::Json(e.to_string()))
}

fn parse_hex(field: &str, s: &str) -> Result<Vec<u8>, WireCliError> {
    hex::decode(s).map_err(|e| WireCliError::Hex { field: field.to_owned(), reason: e.to_string() })
}

// ---------------------------------------------------------------------------------------------
// decode -> JSON

/// Decodes a whole message to its JSON form.
pub fn decode_to_json(msg: &[u8]) -> Result<Value, WireCliError> {
    Ok(match Message::decode(msg)? {
        Message::Bolt1(m) => bolt1_json(&m),
        Message::Lcp(m) => lcp_json(&m),
    })
}

fn unknown_json(extra: &[UnknownTlv]) -> Value {
    Value::Array(extra.iter().map(|x| json!({"type": x.tlv_type, "value": hex::encode(&x.value)})).collect())
}

fn put_unknown(o: &mut Map<String, Value>, extra: &[UnknownTlv]) {
    if !extra.is_empty() {
        o.insert("unknown_tlvs".into(), unknown_json(extra));
    }
}

fn put_envelope(o: &mut Map<String, Value>, e: &Envelope) {
    o.insert("protocol_version".into(), json!(e.protocol_version));
    o.insert("job_id".into(), json!(hex::encode(e.job_id)));
    o.insert("msg_id".into(), json!(hex::encode(e.msg_id)));
    o.insert("expiry".into(), json!(e.expiry));
}

fn params_json(p: &[u8]) -> Value {
    match Params::decode(p) {
        Ok(params) => {
            let mut o = Map::new();
            o.insert("model".into(), json!(params.model));
            put_unknown(&mut o, &params.extra);
            Value::Object(o)
        }
        Err(_) => json!(hex::encode(p)),
    }
}

fn bolt1_json(m: &Bolt1Message) -> Value {
    let mut o = Map::new();
    let (name, extra) = match m {
        Bolt1Message::Init(i) => {
            o.insert("global_features".into(), json!(hex::encode(&i.global_features)));
            o.insert("features".into(), json!(hex::encode(&i.features)));
            if let Some(n) = &i.networks {
                o.insert("networks".into(), Value::Array(n.iter().map(|h| json!(hex::encode(h))).collect()));
            }
            if let Some(a) = &i.remote_addr {
                o.insert("remote_addr".into(), json!(hex::encode(a)));
            }
            ("init", &i.extra)
        }
        Bolt1Message::Error(e) | Bolt1Message::Warning(e) => {
            o.insert("channel_id".into(), json!(hex::encode(e.channel_id)));
            o.insert("data".into(), json!(hex::encode(&e.data)));
            if let Some(t) = e.text() {
                o.insert("data_text".into(), json!(t));
            }
            let name = if matches!(m, Bolt1Message::Error(_)) { "error" } else { "warning" };
            (name, &e.extra)
        }
        Bolt1Message::Ping(p) => {
            o.insert("num_pong_bytes".into(), json!(p.num_pong_bytes));
            o.insert("ignored".into(), json!(hex::encode(&p.ignored)));
            ("ping", &p.extra)
        }
        Bolt1Message::Pong(p) => {
            o.insert("ignored".into(), json!(hex::encode(&p.ignored)));
            ("pong", &p.extra)
        }
    };
    put_unknown(&mut o, extra);
    o.insert("type".into(), json!(name));
    Value::Object(o)
}

fn lcp_json(m: &LcpMessage) -> Value {
    let mut o = Map::new();
    o.insert("type".into(), json!(m.name()));
    let extra = match m {
        LcpMessage::Manifest(m) => {
            o.insert("protocol_version".into(), json!(m.protocol_version));
            o.insert("max_payload_bytes".into(), json!(m.max_payload_bytes));
            if let Some(tasks) = &m.supported_tasks {
                let list = tasks
                    .iter()
                    .map(|t| {
                        let mut e = Map::new();
                        e.insert("task_kind".into(), json!(t.task_kind));
                        if let Some(p) = &t.params_template {
                            e.insert("params_template".into(), params_json(p));
                        }
                        put_unknown(&mut e, &t.extra);
                        Value::Object(e)
                    })
                    .collect();
                o.insert("supported_tasks".into(), Value::Array(list));
            }
            o.insert("max_stream_bytes".into(), json!(m.max_stream_bytes));
            o.insert("max_job_bytes".into(), json!(m.max_job_bytes));
            if let Some(n) = m.max_inflight_jobs {
                o.insert("max_inflight_jobs".into(), json!(n));
            }
            &m.extra
        }
        LcpMessage::QuoteRequest(m) => {
            put_envelope(&mut o, &m.envelope);
            o.insert("task_kind".into(), json!(m.task_kind));
            if let Some(p) = &m.params {
                o.insert("params".into(), params_json(p));
            }
            &m.extra
        }
        LcpMessage::QuoteResponse(m) => {
            put_envelope(&mut o, &m.envelope);
            o.insert("price_msat".into(), json!(m.price_msat));
            o.insert("quote_expiry".into(), json!(m.quote_expiry));
            o.insert("terms_hash".into(), json!(hex::encode(m.terms_hash)));
            o.insert("payment_request".into(), json!(m.payment_request));
            &m.extra
        }
        LcpMessage::Result(m) => {
            put_envelope(&mut o, &m.envelope);
            o.insert("status".into(), json!(m.outcome.status()));
            match &m.outcome {
                ResultOutcome::Ok(ok) => {
                    o.insert("result_stream_id".into(), json!(hex::encode(ok.result_stream_id)));
                    o.insert("result_hash".into(), json!(hex::encode(ok.result_hash)));
                    o.insert("result_len".into(), json!(ok.result_len));
                    o.insert("result_content_type".into(), json!(ok.result_content_type));
                    o.insert("result_content_encoding".into(), json!(ok.result_content_encoding));
                }
                ResultOutcome::Failed { message } | ResultOutcome::Cancelled { message } => {
                    if let Some(msg) = message {
                        o.insert("message".into(), json!(msg));
                    }
                }
            }
            &m.extra
        }
        LcpMessage::StreamBegin(m) => {
            put_envelope(&mut o, &m.envelope);
            o.insert("stream_id".into(), json!(hex::encode(m.stream_id)));
            o.insert("stream_kind".into(), json!(m.stream_kind.code()));
            if let Some(t) = m.total_len {
                o.insert("total_len".into(), json!(t));
            }
            if let Some(h) = &m.sha256 {
                o.insert("sha256".into(), json!(hex::encode(h)));
            }
            o.insert("content_type".into(), json!(m.content_type));
            o.insert("content_encoding".into(), json!(m.content_encoding));
            &m.extra
        }
        LcpMessage::StreamChunk(m) => {
            put_envelope(&mut o, &m.envelope());
            o.insert("stream_id".into(), json!(hex::encode(m.stream_id)));
            o.insert("seq".into(), json!(m.seq));
            o.insert("data".into(), json!(hex::encode(&m.data)));
            &m.extra
        }
        LcpMessage::StreamEnd(m) => {
            put_envelope(&mut o, &m.envelope);
            o.insert("stream_id".into(), json!(hex::encode(m.stream_id)));
            o.insert("total_len".into(), json!(m.total_len));
            o.insert("sha256".into(), json!(hex::encode(m.sha256)));
            &m.extra
        }
        LcpMessage::Cancel(m) => {
            put_envelope(&mut o, &m.envelope);
            if let Some(r) = &m.reason {
                o.insert("reason".into(), json!(r));
            }
            &m.extra
        }
        LcpMessage::Error(m) => {
            put_envelope(&mut o, &m.envelope);
            o.insert("code".into(), json!(m.code.code()));
            o.insert("code_name".into(), json!(m.code.to_string()));
            if let Some(msg) = &m.message {
                o.insert("message".into(), json!(msg));
            }
            &m.extra
        }
    };
    put_unknown(&mut o, extra);
    Value::Object(o)
}

// ---------------------------------------------------------------------------------------------
// JSON -> encode

/// A JSON object being read; remembers which keys were used so leftovers can be reported.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    ctx: &'static str,
    used: Vec<&'static str>,
}

impl<'a> Obj<'a> {
    fn new(v: &'a Value, ctx: &'static str) -> Result<Self, WireCliError> {
        match v {
            Value::Object(map) => Ok(Self { map, ctx, used: Vec::new() }),
            _ => Err(field_err(ctx, "must be a JSON object")),
        }
    }

    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.used.push(key);
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn opt_u64(&mut self, key: &'static str) -> Result<Option<u64>, WireCliError> {
        self.get(key).map(|v| v.as_u64().ok_or_else(|| field_err(key, "must be a non-negative integer"))).transpose()
    }

    fn u64(&mut self, key: &'static str) -> Result<u64, WireCliError> {
        self.opt_u64(key)?.ok_or_else(|| field_err(key, format!("required in {}", self.ctx)))
    }

    fn opt_small<T: TryFrom<u64>>(&mut self, key: &'static str) -> Result<Option<T>, WireCliError> {
        self.opt_u64(key)?
            .map(|v| T::try_from(v).map_err(|_| field_err(key, format!("{v} is out of range"))))
            .transpose()
    }

    fn small<T: TryFrom<u64>>(&mut self, key: &'static str) -> Result<T, WireCliError> {
        self.opt_small(key)?.ok_or_else(|| field_err(key, format!("required in {}", self.ctx)))
    }

    fn opt_str(&mut self, key: &'static str) -> Result<Option<&'a str>, WireCliError> {
        self.get(key).map(|v| v.as_str().ok_or_else(|| field_err(key, "must be a string"))).transpose()
    }

    fn string(&mut self, key: &'static str) -> Result<String, WireCliError> {
        self.opt_str(key)?.map(str::to_owned).ok_or_else(|| field_err(key, format!("required in {}", self.ctx)))
    }

    fn opt_hex(&mut self, key: &'static str) -> Result<Option<Vec<u8>>, WireCliError> {
        self.opt_str(key)?.map(|s| parse_hex(key, s)).transpose()
    }

    fn hex(&mut self, key: &'static str) -> Result<Vec<u8>, WireCliError> {
        self.opt_hex(key)?.ok_or_else(|| field_err(key, format!("required in {}", self.ctx)))
    }

    fn opt_hex32(&mut self, key: &'static str) -> Result<Option<[u8; 32]>, WireCliError> {
        self.opt_hex(key)?
            .map(|b| {
                <[u8; 32]>::try_from(b.as_slice()).map_err(|_| field_err(key, format!("{} bytes, must be 32", b.len())))
            })
            .transpose()
    }

    fn hex32(&mut self, key: &'static str) -> Result<[u8; 32], WireCliError> {
        self.opt_hex32(key)?.ok_or_else(|| field_err(key, format!("required in {}", self.ctx)))
    }

    fn unknown(&mut self) -> Result<Vec<UnknownTlv>, WireCliError> {
        let Some(v) = self.get("unknown_tlvs") else {
            return Ok(Vec::new());
        };
        let arr = v.as_array().ok_or_else(|| field_err("unknown_tlvs", "must be an array"))?;
        arr.iter()
            .map(|item| {
                let mut o = Obj::new(item, "unknown_tlvs element")?;
                let r = UnknownTlv { tlv_type: o.u64("type")?, value: o.hex("value")? };
                o.done(&[])?;
                Ok(r)
            })
            .collect()
    }

    fn envelope(&mut self) -> Result<Envelope, WireCliError> {
        Ok(Envelope {
            protocol_version: self.small("protocol_version")?,
            job_id: self.hex32("job_id")?,
            msg_id: self.hex32("msg_id")?,
            expiry: self.u64("expiry")?,
        })
    }

    /// Fails if a key was neither used nor listed in `ignored`.
    fn done(self, ignored: &[&str]) -> Result<(), WireCliError> {
        match self.map.keys().find(|k| !self.used.contains(&k.as_str()) && !ignored.contains(&k.as_str())) {
            Some(k) => Err(field_err(k, format!("unexpected key in {}", self.ctx))),
            None => Ok(()),
        }
    }
}

fn params_from_json(v: &Value, key: &'static str) -> Result<Vec<u8>, WireCliError> {
    match v {
        Value::String(s) => parse_hex(key, s),
        Value::Object(_) => {
            let mut o = Obj::new(v, "params")?;
            let p = Params { model: o.string("model")?, extra: o.unknown()? };
            o.done(&[])?;
            Ok(p.encode()?)
        }
        _ => Err(field_err(key, "must be a hex string or an object with model")),
    }
}

/// Encodes the JSON form of a message to the whole message bytes.
pub fn encode_from_json(v: &Value) -> Result<Vec<u8>, WireCliError> {
    let mut o = Obj::new(v, "message")?;
    let name = o.string("type")?;
    let mut ignored: &[&str] = &[];
    let msg = match name.as_str() {
        "init" => Message::Bolt1(Bolt1Message::Init(Init {
            global_features: o.hex("global_features")?,
            features: o.hex("features")?,
            networks: match o.get("networks") {
                None => None,
                Some(Value::Array(a)) => Some(
                    a.iter()
                        .map(|h| {
                            let s = h.as_str().ok_or_else(|| field_err("networks", "elements must be hex"))?;
                            let b = parse_hex("networks", s)?;
                            <[u8; 32]>::try_from(b.as_slice())
                                .map_err(|_| field_err("networks", "each chain hash is 32 bytes"))
                        })
                        .collect::<Result<_, _>>()?,
                ),
                Some(_) => return Err(field_err("networks", "must be an array")),
            },
            remote_addr: o.opt_hex("remote_addr")?,
            extra: o.unknown()?,
        })),
        "error" | "warning" => {
            ignored = &["data_text"];
            let e = ErrorMessage { channel_id: o.hex32("channel_id")?, data: o.hex("data")?, extra: o.unknown()? };
            Message::Bolt1(if name == "error" { Bolt1Message::Error(e) } else { Bolt1Message::Warning(e) })
        }
        "ping" => Message::Bolt1(Bolt1Message::Ping(Ping {
            num_pong_bytes: o.small("num_pong_bytes")?,
            ignored: o.hex("ignored")?,
            extra: o.unknown()?,
        })),
        "pong" => Message::Bolt1(Bolt1Message::Pong(Pong { ignored: o.hex("ignored")?, extra: o.unknown()? })),
        _ => Message::Lcp(lcp_from_json(&name, &mut o, &mut ignored)?),
    };
    o.done(ignored)?;
    Ok(msg.encode()?)
}

fn lcp_from_json(name: &str, o: &mut Obj<'_>, ignored: &mut &[&str]) -> Result<LcpMessage, WireCliError> {
    Ok(match name {
        "lcp_manifest" => LcpMessage::Manifest(Manifest {
            protocol_version: o.small("protocol_version")?,
            max_payload_bytes: o.small("max_payload_bytes")?,
            supported_tasks: match o.get("supported_tasks") {
                None => None,
                Some(Value::Array(a)) => Some(
                    a.iter()
                        .map(|t| {
                            let mut e = Obj::new(t, "supported_tasks element")?;
                            let task = TaskTemplate {
                                task_kind: e.string("task_kind")?,
                                params_template: e
                                    .get("params_template")
                                    .map(|p| params_from_json(p, "params_template"))
                                    .transpose()?,
                                extra: e.unknown()?,
                            };
                            e.done(&[])?;
                            Ok(task)
                        })
                        .collect::<Result<_, WireCliError>>()?,
                ),
                Some(_) => return Err(field_err("supported_tasks", "must be an array")),
            },
            max_stream_bytes: o.u64("max_stream_bytes")?,
            max_job_bytes: o.u64("max_job_bytes")?,
            max_inflight_jobs: o.opt_small("max_inflight_jobs")?,
            extra: o.unknown()?,
        }),
        "lcp_quote_request" => LcpMessage::QuoteRequest(QuoteRequest {
            envelope: o.envelope()?,
            task_kind: o.string("task_kind")?,
            params: o.get("params").map(|p| params_from_json(p, "params")).transpose()?,
            extra: o.unknown()?,
        }),
        "lcp_quote_response" => LcpMessage::QuoteResponse(QuoteResponse {
            envelope: o.envelope()?,
            price_msat: o.u64("price_msat")?,
            quote_expiry: o.u64("quote_expiry")?,
            terms_hash: o.hex32("terms_hash")?,
            payment_request: o.string("payment_request")?,
            extra: o.unknown()?,
        }),
        "lcp_result" => {
            let envelope = o.envelope()?;
            let status: u16 = o.small("status")?;
            let outcome = match status {
                0 => ResultOutcome::Ok(ResultOk {
                    result_stream_id: o.hex32("result_stream_id")?,
                    result_hash: o.hex32("result_hash")?,
                    result_len: o.u64("result_len")?,
                    result_content_type: o.string("result_content_type")?,
                    result_content_encoding: o.string("result_content_encoding")?,
                }),
                1 => ResultOutcome::Failed { message: o.opt_str("message")?.map(str::to_owned) },
                2 => ResultOutcome::Cancelled { message: o.opt_str("message")?.map(str::to_owned) },
                other => {
                    return Err(field_err("status", format!("{other} is not 0 (ok), 1 (failed) or 2 (cancelled)")))
                }
            };
            LcpMessage::Result(LcpResult { envelope, outcome, extra: o.unknown()? })
        }
        "lcp_stream_begin" => LcpMessage::StreamBegin(StreamBegin {
            envelope: o.envelope()?,
            stream_id: o.hex32("stream_id")?,
            stream_kind: StreamKind::from_code(o.small("stream_kind")?)?,
            total_len: o.opt_u64("total_len")?,
            sha256: o.opt_hex32("sha256")?,
            content_type: o.string("content_type")?,
            content_encoding: o.string("content_encoding")?,
            extra: o.unknown()?,
        }),
        "lcp_stream_chunk" => {
            let stream_id = o.hex32("stream_id")?;
            let seq: u32 = o.small("seq")?;
            if let Some(id) = o.opt_hex32("msg_id")? {
                if id != chunk_msg_id(&stream_id, seq) {
                    return Err(field_err(
                        "msg_id",
                        "must be SHA256(stream_id || u32be(seq)); omit it to have it computed",
                    ));
                }
            }
            LcpMessage::StreamChunk(StreamChunk {
                protocol_version: o.small("protocol_version")?,
                job_id: o.hex32("job_id")?,
                expiry: o.u64("expiry")?,
                stream_id,
                seq,
                data: o.hex("data")?,
                extra: o.unknown()?,
            })
        }
        "lcp_stream_end" => LcpMessage::StreamEnd(StreamEnd {
            envelope: o.envelope()?,
            stream_id: o.hex32("stream_id")?,
            total_len: o.u64("total_len")?,
            sha256: o.hex32("sha256")?,
            extra: o.unknown()?,
        }),
        "lcp_cancel" => LcpMessage::Cancel(Cancel {
            envelope: o.envelope()?,
            reason: o.opt_str("reason")?.map(str::to_owned),
            extra: o.unknown()?,
        }),
        "lcp_error" => {
            *ignored = &["code_name"];
            LcpMessage::Error(LcpError {
                envelope: o.envelope()?,
                code: ErrorCode::from_code(o.small("code")?),
                message: o.opt_str("message")?.map(str::to_owned),
                extra: o.unknown()?,
            })
        }
        other => return Err(field_err("type", format!("unknown message name {other:?}"))),
    })
}

// ---------------------------------------------------------------------------------------------
// terms-hash

/// Computes terms_hash from its JSON description; returns the hash, the terms TLV and the
/// input and params hashes, all hex.
pub fn terms_hash_json(v: &Value) -> Result<Value, WireCliError> {
    let mut o = Obj::new(v, "terms")?;
    let protocol_version = o.opt_small("protocol_version")?.unwrap_or(crate::wire::lcp::v02::PROTOCOL_VERSION);
    let job_id = o.hex32("job_id")?;
    let price_msat = o.u64("price_msat")?;
    let quote_expiry = o.u64("quote_expiry")?;
    let task_kind = o.string("task_kind")?;
    let input = match (o.opt_str("input")?, o.opt_hex("input_hex")?) {
        (Some(text), None) => text.as_bytes().to_vec(),
        (None, Some(bytes)) => bytes,
        _ => return Err(field_err("input", "give exactly one of input (UTF-8 text) and input_hex (hex bytes)")),
    };
    let params = o.get("params").map(|p| params_from_json(p, "params")).transpose()?;
    let ctype = o.string("input_content_type")?;
    let cenc = o.string("input_content_encoding")?;
    o.done(&[])?;
    let terms = Terms::new(
        protocol_version,
        job_id,
        price_msat,
        quote_expiry,
        &task_kind,
        params.as_deref(),
        &input,
        &ctype,
        &cenc,
    )?;
    Ok(json!({
        "terms_hash": hex::encode(terms.hash()?),
        "terms_tlv": hex::encode(terms.tlv()?),
        "input_hash": hex::encode(terms.input_hash),
        "params_hash": hex::encode(terms.params_hash),
        "input_len": terms.input_len,
    }))
}

/// The name `wire decode` prints for a message type, if it is one this tool knows.
pub fn message_name(msg_type: u16) -> Option<&'static str> {
    use crate::wire::lcp::v02::*;
    Some(match msg_type {
        bolt1::INIT => "init",
        bolt1::ERROR => "error",
        bolt1::WARNING => "warning",
        bolt1::PING => "ping",
        bolt1::PONG => "pong",
        MSG_MANIFEST => "lcp_manifest",
        MSG_QUOTE_REQUEST => "lcp_quote_request",
        MSG_QUOTE_RESPONSE => "lcp_quote_response",
        MSG_RESULT => "lcp_result",
        MSG_STREAM_BEGIN => "lcp_stream_begin",
        MSG_STREAM_CHUNK => "lcp_stream_chunk",
        MSG_STREAM_END => "lcp_stream_end",
        MSG_CANCEL => "lcp_cancel",
        MSG_ERROR => "lcp_error",
        _ => return None,
    })
}
