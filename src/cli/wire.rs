//! `lcp-cli wire ...`: decode a BOLT #1 / LCP message, encode its JSON form back to the exact
//! bytes, and compute an LCP terms_hash.
//!
//! `decode` and `terms-hash` print text by default (`Decoded::to_text`: the message name and
//! type, then one `field: value` line per field, nested records indented) and JSON with
//! `--json`; `encode` reads the JSON form on stdin and prints hex (`{"hex": ...}` with `--json`).
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
    /// Decode a whole message (2-byte type then payload, hex): its name and type, then one line
    /// per field; with --json, the JSON form `encode` reads.
    Decode {
        /// The message in hex.
        hex: String,
    },
    /// Encode a message given as JSON on stdin (as `decode --json` prints it); prints the whole
    /// message in hex.
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

/// Runs one `wire` command; returns what to print: text, or JSON when `json`.
pub fn run(cmd: &WireCmd, json: bool, stdin: &mut dyn Read) -> Result<String, WireCliError> {
    match cmd {
        WireCmd::Decode { hex } => {
            let d = decode(&parse_hex("hex", hex.trim())?)?;
            if json {
                pretty(&d.to_json())
            } else {
                Ok(d.to_text())
            }
        }
        WireCmd::Encode => {
            let hex = hex::encode(encode_from_json(&read_json(stdin)?)?);
            if json {
                pretty(&json!({ "hex": hex }))
            } else {
                Ok(hex)
            }
        }
        WireCmd::TermsHash => {
            let d = terms_digest(&read_json(stdin)?)?;
            if json {
                pretty(&d.to_json())
            } else {
                Ok(d.to_text())
            }
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
// decode: the fields of a message in the spec's order, printed as text or as JSON

/// One decoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Val {
    /// An integer.
    Num(u64),
    /// Bytes (printed as lowercase hex).
    Hex(Vec<u8>),
    /// UTF-8 text.
    Text(String),
    /// A nested record: a TLV stream inside the message, a task template, an unknown record.
    Rec(Rec),
    /// A repeated field.
    List(Vec<Val>),
}

/// What decode adds to a field for reading; never part of the message itself.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Note {
    /// Shown after the value, and a key of its own in JSON (`code_name`, `data_text`).
    Keyed(&'static str, String),
    /// Shown after the value only (the name of a status or a stream kind).
    Text(&'static str),
}

/// A field: its name in the spec, its value, an optional note.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    name: &'static str,
    val: Val,
    note: Option<Note>,
}

/// Fields in the spec's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Rec(Vec<Field>);

impl Rec {
    fn put(&mut self, name: &'static str, val: Val) -> &mut Self {
        self.0.push(Field { name, val, note: None });
        self
    }

    fn num(&mut self, name: &'static str, v: impl Into<u64>) -> &mut Self {
        self.put(name, Val::Num(v.into()))
    }

    fn hex(&mut self, name: &'static str, b: impl AsRef<[u8]>) -> &mut Self {
        self.put(name, Val::Hex(b.as_ref().to_vec()))
    }

    fn text(&mut self, name: &'static str, s: &str) -> &mut Self {
        self.put(name, Val::Text(s.to_owned()))
    }

    /// Adds a note to the field added last.
    fn note(&mut self, note: Note) -> &mut Self {
        if let Some(f) = self.0.last_mut() {
            f.note = Some(note);
        }
        self
    }

    fn unknown(&mut self, extra: &[UnknownTlv]) -> &mut Self {
        if !extra.is_empty() {
            let list = extra
                .iter()
                .map(|x| {
                    let mut r = Rec::default();
                    r.num("type", x.tlv_type).hex("value", &x.value);
                    Val::Rec(r)
                })
                .collect();
            self.put("unknown_tlvs", Val::List(list));
        }
        self
    }

    fn envelope(&mut self, e: &Envelope) -> &mut Self {
        self.num("protocol_version", e.protocol_version)
            .hex("job_id", e.job_id)
            .hex("msg_id", e.msg_id)
            .num("expiry", e.expiry)
    }
}

/// `params` / `params_template`: the standard params stream when it parses as one, else bytes.
fn params_val(p: &[u8]) -> Val {
    match Params::decode(p) {
        Ok(params) => {
            let mut r = Rec::default();
            r.text("model", &params.model).unknown(&params.extra);
            Val::Rec(r)
        }
        Err(_) => Val::Hex(p.to_vec()),
    }
}

/// A decoded message: its type, its name and its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    msg_type: u16,
    name: &'static str,
    fields: Rec,
}

/// Decodes a whole message (2-byte type, then the payload).
pub fn decode(msg: &[u8]) -> Result<Decoded, WireCliError> {
    let message = Message::decode(msg)?;
    let msg_type = match msg {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => return Err(field_err("message", "shorter than its type")),
    };
    let (name, fields) = match &message {
        Message::Bolt1(m) => bolt1_fields(m),
        Message::Lcp(m) => (m.name(), lcp_fields(m)),
    };
    Ok(Decoded { msg_type, name, fields })
}

/// Decodes a whole message to its JSON form.
pub fn decode_to_json(msg: &[u8]) -> Result<Value, WireCliError> {
    Ok(decode(msg)?.to_json())
}

impl Decoded {
    /// The JSON form: `"type"` is the message name, the other keys are the fields (see the
    /// module documentation).
    pub fn to_json(&self) -> Value {
        let mut o = rec_json(&self.fields);
        o.insert("type".into(), json!(self.name));
        Value::Object(o)
    }

    /// The text form: the name and type number, then one `field: value` line per field, bytes in
    /// hex, text quoted, nested records indented.
    pub fn to_text(&self) -> String {
        let mut out = format!("{} (type {})\n", self.name, self.msg_type);
        rec_text(&mut out, &self.fields, 0);
        out.truncate(out.trim_end().len());
        out
    }
}

fn val_json(v: &Val) -> Value {
    match v {
        Val::Num(n) => json!(n),
        Val::Hex(b) => json!(hex::encode(b)),
        Val::Text(s) => json!(s),
        Val::Rec(r) => Value::Object(rec_json(r)),
        Val::List(items) => Value::Array(items.iter().map(val_json).collect()),
    }
}

fn rec_json(r: &Rec) -> Map<String, Value> {
    let mut o = Map::new();
    for f in &r.0 {
        o.insert(f.name.into(), val_json(&f.val));
        if let Some(Note::Keyed(key, text)) = &f.note {
            o.insert((*key).into(), json!(text));
        }
    }
    o
}

/// A value on one line, or `None` for a record or a list.
fn scalar_text(v: &Val) -> Option<String> {
    Some(match v {
        Val::Num(n) => n.to_string(),
        Val::Hex(b) if b.is_empty() => "(empty)".into(),
        Val::Hex(b) => hex::encode(b),
        Val::Text(s) => json!(s).to_string(),
        Val::Rec(_) | Val::List(_) => return None,
    })
}

fn note_text(n: &Option<Note>) -> String {
    match n {
        // A name (`checksum_mismatch`) as it is; any other text quoted, so it stays on its line.
        Some(Note::Keyed(_, t)) if !t.is_empty() && t.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') => {
            format!(" ({t})")
        }
        Some(Note::Keyed(_, t)) => format!(" ({})", json!(t)),
        Some(Note::Text(t)) => format!(" ({t})"),
        None => String::new(),
    }
}

fn rec_text(out: &mut String, r: &Rec, indent: usize) {
    use std::fmt::Write as _;
    let pad = " ".repeat(indent);
    for f in &r.0 {
        if let Some(s) = scalar_text(&f.val) {
            let _ = writeln!(out, "{pad}{}: {s}{}", f.name, note_text(&f.note));
            continue;
        }
        let _ = writeln!(out, "{pad}{}:", f.name);
        match &f.val {
            Val::Rec(inner) => rec_text(out, inner, indent + 2),
            Val::List(items) => {
                for item in items {
                    match (item, scalar_text(item)) {
                        (_, Some(s)) => {
                            let _ = writeln!(out, "{pad}  - {s}");
                        }
                        (Val::Rec(inner), None) if !inner.0.is_empty() => {
                            // A record in a list: its first line carries the "- " marker.
                            let start = out.len();
                            rec_text(out, inner, indent + 4);
                            out.replace_range(start + indent + 2..start + indent + 4, "- ");
                        }
                        _ => {
                            let _ = writeln!(out, "{pad}  - (empty)");
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

fn bolt1_fields(m: &Bolt1Message) -> (&'static str, Rec) {
    let mut r = Rec::default();
    let (name, extra) = match m {
        Bolt1Message::Init(i) => {
            r.hex("global_features", &i.global_features).hex("features", &i.features);
            if let Some(n) = &i.networks {
                r.put("networks", Val::List(n.iter().map(|h| Val::Hex(h.to_vec())).collect()));
            }
            if let Some(a) = &i.remote_addr {
                r.hex("remote_addr", a);
            }
            ("init", &i.extra)
        }
        Bolt1Message::Error(e) | Bolt1Message::Warning(e) => {
            r.hex("channel_id", e.channel_id).hex("data", &e.data);
            if let Some(t) = e.text() {
                r.note(Note::Keyed("data_text", t.to_owned()));
            }
            let name = if matches!(m, Bolt1Message::Error(_)) { "error" } else { "warning" };
            (name, &e.extra)
        }
        Bolt1Message::Ping(p) => {
            r.num("num_pong_bytes", p.num_pong_bytes).hex("ignored", &p.ignored);
            ("ping", &p.extra)
        }
        Bolt1Message::Pong(p) => {
            r.hex("ignored", &p.ignored);
            ("pong", &p.extra)
        }
    };
    r.unknown(extra);
    (name, r)
}

fn lcp_fields(m: &LcpMessage) -> Rec {
    let mut r = Rec::default();
    let extra = match m {
        LcpMessage::Manifest(m) => {
            r.num("protocol_version", m.protocol_version).num("max_payload_bytes", m.max_payload_bytes);
            if let Some(tasks) = &m.supported_tasks {
                let list = tasks
                    .iter()
                    .map(|t| {
                        let mut e = Rec::default();
                        e.text("task_kind", &t.task_kind);
                        if let Some(p) = &t.params_template {
                            e.put("params_template", params_val(p));
                        }
                        e.unknown(&t.extra);
                        Val::Rec(e)
                    })
                    .collect();
                r.put("supported_tasks", Val::List(list));
            }
            r.num("max_stream_bytes", m.max_stream_bytes).num("max_job_bytes", m.max_job_bytes);
            if let Some(n) = m.max_inflight_jobs {
                r.num("max_inflight_jobs", n);
            }
            &m.extra
        }
        LcpMessage::QuoteRequest(m) => {
            r.envelope(&m.envelope).text("task_kind", &m.task_kind);
            if let Some(p) = &m.params {
                r.put("params", params_val(p));
            }
            &m.extra
        }
        LcpMessage::QuoteResponse(m) => {
            r.envelope(&m.envelope)
                .num("price_msat", m.price_msat)
                .num("quote_expiry", m.quote_expiry)
                .hex("terms_hash", m.terms_hash)
                .text("payment_request", &m.payment_request);
            &m.extra
        }
        LcpMessage::Result(m) => {
            r.envelope(&m.envelope).num("status", m.outcome.status());
            match &m.outcome {
                ResultOutcome::Ok(ok) => {
                    r.note(Note::Text("ok"))
                        .hex("result_stream_id", ok.result_stream_id)
                        .hex("result_hash", ok.result_hash)
                        .num("result_len", ok.result_len)
                        .text("result_content_type", &ok.result_content_type)
                        .text("result_content_encoding", &ok.result_content_encoding);
                }
                ResultOutcome::Failed { message } | ResultOutcome::Cancelled { message } => {
                    let failed = matches!(m.outcome, ResultOutcome::Failed { .. });
                    r.note(Note::Text(if failed { "failed" } else { "cancelled" }));
                    if let Some(msg) = message {
                        r.text("message", msg);
                    }
                }
            }
            &m.extra
        }
        LcpMessage::StreamBegin(m) => {
            r.envelope(&m.envelope).hex("stream_id", m.stream_id).num("stream_kind", m.stream_kind.code()).note(
                Note::Text(match m.stream_kind {
                    StreamKind::Input => "input",
                    StreamKind::Result => "result",
                }),
            );
            if let Some(t) = m.total_len {
                r.num("total_len", t);
            }
            if let Some(h) = &m.sha256 {
                r.hex("sha256", h);
            }
            r.text("content_type", &m.content_type).text("content_encoding", &m.content_encoding);
            &m.extra
        }
        LcpMessage::StreamChunk(m) => {
            r.envelope(&m.envelope()).hex("stream_id", m.stream_id).num("seq", m.seq).hex("data", &m.data);
            &m.extra
        }
        LcpMessage::StreamEnd(m) => {
            r.envelope(&m.envelope).hex("stream_id", m.stream_id).num("total_len", m.total_len).hex("sha256", m.sha256);
            &m.extra
        }
        LcpMessage::Cancel(m) => {
            r.envelope(&m.envelope);
            if let Some(reason) = &m.reason {
                r.text("reason", reason);
            }
            &m.extra
        }
        LcpMessage::Error(m) => {
            r.envelope(&m.envelope).num("code", m.code.code()).note(Note::Keyed("code_name", m.code.to_string()));
            if let Some(msg) = &m.message {
                r.text("message", msg);
            }
            &m.extra
        }
    };
    r.unknown(extra);
    r
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

/// What `terms-hash` computes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermsDigest {
    /// terms_hash.
    pub terms_hash: [u8; 32],
    /// The terms TLV stream that is hashed.
    pub terms_tlv: Vec<u8>,
    /// SHA256 of the input.
    pub input_hash: [u8; 32],
    /// SHA256 of the params bytes.
    pub params_hash: [u8; 32],
    /// Input length in bytes.
    pub input_len: u64,
}

impl TermsDigest {
    /// The JSON form: every hash and the TLV in hex.
    pub fn to_json(&self) -> Value {
        json!({
            "terms_hash": hex::encode(self.terms_hash),
            "terms_tlv": hex::encode(&self.terms_tlv),
            "input_hash": hex::encode(self.input_hash),
            "params_hash": hex::encode(self.params_hash),
            "input_len": self.input_len,
        })
    }

    /// The text form: the terms hash first, then what it was computed from, one per line.
    pub fn to_text(&self) -> String {
        format!(
            "terms_hash:  {}\nterms_tlv:   {}\ninput_hash:  {}\nparams_hash: {}\ninput_len:   {}",
            hex::encode(self.terms_hash),
            hex::encode(&self.terms_tlv),
            hex::encode(self.input_hash),
            hex::encode(self.params_hash),
            self.input_len
        )
    }
}

/// Computes terms_hash from its JSON description; returns the hash, the terms TLV and the
/// input and params hashes, all hex.
pub fn terms_hash_json(v: &Value) -> Result<Value, WireCliError> {
    Ok(terms_digest(v)?.to_json())
}

/// Computes terms_hash from its JSON description (see [`WireCmd::TermsHash`]).
pub fn terms_digest(v: &Value) -> Result<TermsDigest, WireCliError> {
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
    Ok(TermsDigest {
        terms_hash: terms.hash()?,
        terms_tlv: terms.tlv()?,
        input_hash: terms.input_hash,
        params_hash: terms.params_hash,
        input_len: terms.input_len,
    })
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
