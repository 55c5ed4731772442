//! Engine tests: a provider engine and a requester engine wired together in memory, with a
//! stand-in worker (fixed price, scripted output) and a stand-in payd that signs real BOLT11
//! invoices with the provider's key and settles them when the requester pays. The clock is a
//! number the tests move.

use super::records::{ProviderState, RequesterState};
use super::requester::{Accepted, PayOutcome, PaymentLookup, QuoteArgs, LOOKUP_ABSENT_GRACE_SECS, LOOKUP_FIRST_SECS};
use super::*;
use crate::bus::api::jobd::OutputItem;
use crate::wire::lcp::{
    ErrorCode, LcpError, LcpResult, QuoteRequest, ResultOutcome, StreamBegin, StreamChunk, StreamEnd, StreamKind,
};
use lightning::bitcoin::hashes::{sha256, Hash};
use lightning::bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

const T0: u64 = 1_800_000_000;
const CHAT: &str = "openai.chat_completions.v1";
const MODEL: &str = "m1";

fn key(b: u8) -> (SecretKey, String) {
    let sk = SecretKey::from_slice(&[b; 32]).expect("constant key");
    (sk, hex::encode(PublicKey::from_secret_key(&Secp256k1::new(), &sk).serialize()))
}

fn chat_input(model: &str) -> Vec<u8> {
    format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#).into_bytes()
}

fn offers() -> Vec<Offer> {
    vec![Offer { task_kind: CHAT.into(), model: Some(MODEL.into()) }]
}

/// How the stand-in worker answers.
#[derive(Clone)]
enum Work {
    /// Produces this output when dispatched.
    Output(Vec<OutputItem>),
    /// Accepts the job and produces nothing (a job that runs long).
    Hang,
}

fn json_output(bytes: &[u8]) -> Vec<OutputItem> {
    vec![
        OutputItem::Begin { content_type: "application/json; charset=utf-8".into() },
        OutputItem::Chunk(bytes.to_vec()),
        OutputItem::End { len: bytes.len() as u64, sha256: Sha256::digest(bytes).into() },
    ]
}

/// A stored record with its input and result bytes.
type Saved<R> = (R, Option<Vec<u8>>, Option<Vec<u8>>);

/// A tampering of a quote_response.
type Tamper = Box<dyn Fn(&mut World, &mut crate::wire::lcp::QuoteResponse)>;

struct World {
    now: u64,
    p: Engine,
    r: Engine,
    p_key: SecretKey,
    p_id: String,
    r_id: String,
    wire: VecDeque<(bool, LcpMessage)>,
    /// Messages the provider sent (for assertions).
    p_sent: Vec<LcpMessage>,
    /// Messages the requester sent.
    r_sent: Vec<LcpMessage>,
    notices: Vec<([u8; 32], Notice)>,
    p_saved: HashMap<[u8; 32], Saved<ProviderRecord>>,
    r_saved: HashMap<[u8; 32], Saved<RequesterRecord>>,
    price: Result<u64, (u16, String)>,
    invoice_ok: bool,
    work: Work,
    invoices: HashMap<[u8; 32], [u8; 32]>,
    dispatches: usize,
    cancels: usize,
    pays: usize,
    /// When false, Pay outputs are collected instead of carried out.
    auto_pay: bool,
    held_pays: Vec<([u8; 32], String)>,
    /// Payment lookups the requester asked payd for: (job id, payment hash).
    lookups: Vec<([u8; 32], [u8; 32])>,
    /// When set, messages from the provider are dropped (a silent provider).
    mute_provider: bool,
}

impl World {
    fn new() -> Self {
        let (p_key, p_id) = key(1);
        let (_, r_id) = key(2);
        let mut p = Engine::with_rng(EngineConfig::default(), p_id.clone(), StdRng::seed_from_u64(1));
        p.set_offers(offers());
        let r = Engine::with_rng(EngineConfig::default(), r_id.clone(), StdRng::seed_from_u64(2));
        Self {
            now: T0,
            p,
            r,
            p_key,
            p_id,
            r_id,
            wire: VecDeque::new(),
            p_sent: Vec::new(),
            r_sent: Vec::new(),
            notices: Vec::new(),
            p_saved: HashMap::new(),
            r_saved: HashMap::new(),
            price: Ok(5_000),
            invoice_ok: true,
            work: Work::Output(json_output(br#"{"ok":true}"#)),
            invoices: HashMap::new(),
            dispatches: 0,
            cancels: 0,
            pays: 0,
            auto_pay: true,
            held_pays: Vec::new(),
            lookups: Vec::new(),
            mute_provider: false,
        }
    }

    fn connect(&mut self) {
        self.p.peer_connected(self.now, &self.r_id.clone());
        self.r.peer_connected(self.now, &self.p_id.clone());
        self.pump();
    }

    fn disconnect(&mut self) {
        self.p.peer_disconnected(self.now, &self.r_id.clone());
        self.r.peer_disconnected(self.now, &self.p_id.clone());
        self.wire.clear();
    }

    fn invoice(&mut self, amount: u64, dh: [u8; 32], expiry: u32, signer: &SecretKey) -> (String, [u8; 32]) {
        let preimage: [u8; 32] = Sha256::digest(self.invoices.len().to_be_bytes()).into();
        let hash: [u8; 32] = Sha256::digest(preimage).into();
        let secp = Secp256k1::new();
        let inv = InvoiceBuilder::new(Currency::Regtest)
            .description_hash(sha256::Hash::from_byte_array(dh))
            .payment_hash(sha256::Hash::from_byte_array(hash))
            .payment_secret(PaymentSecret([3; 32]))
            .duration_since_epoch(Duration::from_secs(self.now))
            .min_final_cltv_expiry_delta(18)
            .expiry_time(Duration::from_secs(u64::from(expiry)))
            .amount_milli_satoshis(amount)
            .build_signed(|m| secp.sign_ecdsa_recoverable(m, signer))
            .expect("invoice builds");
        self.invoices.insert(hash, preimage);
        (inv.to_string(), hash)
    }

    /// Carries out both engines' outputs and delivers messages until nothing moves.
    fn pump(&mut self) {
        for _ in 0..100_000 {
            let mut moved = false;
            for out in self.p.drain() {
                moved = true;
                self.provider_out(out);
            }
            for out in self.r.drain() {
                moved = true;
                self.requester_out(out);
            }
            if let Some((to_provider, msg)) = self.wire.pop_front() {
                moved = true;
                // Every message crosses the wire encoded: it must encode and decode back.
                let (t, payload) = msg.encode().expect("engine messages encode");
                let back = LcpMessage::decode(t, &payload).expect("and decode");
                assert_eq!(back, msg);
                if to_provider {
                    self.p.on_message(self.now, &self.r_id.clone(), back);
                } else {
                    self.r.on_message(self.now, &self.p_id.clone(), back);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the engines did not settle");
    }

    fn provider_out(&mut self, out: Out) {
        match out {
            Out::Send { peer, msg } => {
                assert_eq!(peer, self.r_id);
                self.p_sent.push(msg.clone());
                if !self.mute_provider {
                    self.wire.push_back((false, msg));
                }
            }
            Out::Price { key, .. } => self.p.priced(self.now, &key, self.price.clone()),
            Out::CreateInvoice { key, amount_msat, description_hash, expiry_secs } => {
                let inv = if self.invoice_ok {
                    let k = self.p_key;
                    Ok(self.invoice(amount_msat, description_hash, expiry_secs, &k))
                } else {
                    Err("backend down".to_string())
                };
                self.p.invoiced(self.now, &key, inv);
            }
            Out::Dispatch { key, .. } => {
                self.dispatches += 1;
                self.p.dispatched(self.now, &key, Ok(()));
                if let Work::Output(items) = self.work.clone() {
                    for item in items {
                        self.p.output(self.now, &key, item);
                    }
                }
            }
            Out::CancelRun { .. } => self.cancels += 1,
            Out::LoadResult { key } => {
                let r = self.p_saved.get(&key.1).and_then(|(_, _, r)| r.clone());
                self.p.result_loaded(self.now, &key, r);
            }
            Out::SaveProvider { rec, input, result } => {
                let e = self.p_saved.entry(rec.job_id).or_insert((rec.clone(), None, None));
                e.0 = rec;
                if input.is_some() {
                    e.1 = input;
                }
                if result.is_some() {
                    e.2 = result;
                }
            }
            other => panic!("provider asked for a requester action: {other:?}"),
        }
    }

    fn requester_out(&mut self, out: Out) {
        match out {
            Out::Send { peer, msg } => {
                assert_eq!(peer, self.p_id);
                self.r_sent.push(msg.clone());
                self.wire.push_back((true, msg));
            }
            Out::Pay { job_id, bolt11 } => {
                if !self.auto_pay {
                    self.held_pays.push((job_id, bolt11));
                    return;
                }
                self.pay(job_id, &bolt11);
            }
            Out::SaveRequester { rec, input, result } => {
                let e = self.r_saved.entry(rec.job_id).or_insert((rec.clone(), None, None));
                e.0 = rec;
                if input.is_some() {
                    e.1 = input;
                }
                if result.is_some() {
                    e.2 = result;
                }
            }
            Out::LookupPayment { job_id, payment_hash } => self.lookups.push((job_id, payment_hash)),
            Out::Notify { job_id, notice } => self.notices.push((job_id, notice)),
            other => panic!("requester asked for a provider action: {other:?}"),
        }
    }

    fn pay(&mut self, job_id: [u8; 32], bolt11: &str) {
        self.pays += 1;
        let d = crate::payd::backend::decode_bolt11(bolt11).expect("requester pays only decodable invoices");
        let preimage = self.invoices[&d.payment_hash];
        self.p.settled(self.now, d.payment_hash);
        self.r.paid(self.now, job_id, PayOutcome::Paid(preimage));
    }

    /// A connected world with `work` at the provider, one job quoted and accepted (paid at once
    /// unless `auto_pay` is false, when the payment is held in `held_pays`).
    fn accepted(work: Work, auto_pay: bool) -> (Self, [u8; 32]) {
        let mut w = Self::new();
        w.work = work;
        w.connect();
        w.auto_pay = auto_pay;
        let id = w.quote();
        w.r.accept(w.now, id, None).expect("accept");
        w.pump();
        (w, id)
    }

    fn quote(&mut self) -> [u8; 32] {
        let id = self
            .r
            .request_quote(
                self.now,
                QuoteArgs {
                    peer: self.p_id.clone(),
                    task_kind: CHAT.into(),
                    model: Some(MODEL.into()),
                    input: chat_input(MODEL),
                    input_content_type: None,
                    max_price_msat: None,
                    timeout_secs: Some(60),
                },
            )
            .expect("request accepted");
        self.pump();
        id
    }

    fn notices_of(&self, id: [u8; 32]) -> Vec<Notice> {
        self.notices.iter().filter(|(j, _)| *j == id).map(|(_, n)| n.clone()).collect()
    }

    fn finished(&self, id: [u8; 32]) -> Option<Outcome> {
        self.notices_of(id).into_iter().find_map(|n| match n {
            Notice::Finished(o) => Some(o),
            _ => None,
        })
    }

    /// Feeds a message to the provider as if the requester sent it; returns the provider's
    /// errors it caused.
    fn send_provider(&mut self, msg: LcpMessage) -> Vec<(u16, String)> {
        let before = self.p_sent.len();
        self.p.on_message(self.now, &self.r_id.clone(), msg);
        loop {
            let outs = self.p.drain();
            if outs.is_empty() {
                break;
            }
            for out in outs {
                self.provider_out(out);
            }
        }
        self.wire.clear();
        self.p_sent[before..]
            .iter()
            .filter_map(|m| match m {
                LcpMessage::Error(e) => Some((e.code.code(), e.message.clone().unwrap_or_default())),
                _ => None,
            })
            .collect()
    }
}

fn env(job: u8, msg: u8, expiry: u64) -> Envelope {
    Envelope { protocol_version: 2, job_id: [job; 32], msg_id: [msg; 32], expiry }
}

fn qr(job: u8, msg: u8, model: &str) -> LcpMessage {
    LcpMessage::QuoteRequest(QuoteRequest {
        envelope: env(job, msg, T0 + 300),
        task_kind: CHAT.into(),
        params: Some(crate::wire::lcp::Params::with_model(model).encode().expect("params")),
        extra: Vec::new(),
    })
}

fn begin(job: u8, msg: u8, data: &[u8]) -> StreamBegin {
    StreamBegin {
        envelope: env(job, msg, T0 + 300),
        stream_id: [0xee; 32],
        stream_kind: StreamKind::Input,
        total_len: Some(data.len() as u64),
        sha256: Some(Sha256::digest(data).into()),
        content_type: "application/json; charset=utf-8".into(),
        content_encoding: "identity".into(),
        extra: Vec::new(),
    }
}

fn chunk(job: u8, seq: u32, data: &[u8]) -> LcpMessage {
    LcpMessage::StreamChunk(StreamChunk {
        protocol_version: 2,
        job_id: [job; 32],
        expiry: T0 + 300,
        stream_id: [0xee; 32],
        seq,
        data: data.to_vec(),
        extra: Vec::new(),
    })
}

fn end(job: u8, msg: u8, data: &[u8]) -> LcpMessage {
    LcpMessage::StreamEnd(StreamEnd {
        envelope: env(job, msg, T0 + 300),
        stream_id: [0xee; 32],
        total_len: data.len() as u64,
        sha256: Sha256::digest(data).into(),
        extra: Vec::new(),
    })
}

/// A connected world and a raw job sent up to (and including) its input stream.
fn raw_job(w: &mut World, job: u8) -> Vec<(u16, String)> {
    let data = chat_input(MODEL);
    let mut errs = w.send_provider(qr(job, 1, MODEL));
    errs.extend(w.send_provider(LcpMessage::StreamBegin(begin(job, 2, &data))));
    errs.extend(w.send_provider(chunk(job, 0, &data)));
    errs.extend(w.send_provider(end(job, 3, &data)));
    errs
}

#[test]
fn manifests_exchanged_once_each_way_and_repeats_accepted() {
    let mut w = World::new();
    w.connect();
    let p_manifests = w.p_sent.iter().filter(|m| matches!(m, LcpMessage::Manifest(_))).count();
    let r_manifests = w.r_sent.iter().filter(|m| matches!(m, LcpMessage::Manifest(_))).count();
    // Both send on connect, and both answer the other's first manifest even though theirs went
    // out already (the reference's rule): two each way, and no more.
    assert_eq!((p_manifests, r_manifests), (2, 2));
    // The provider advertises its offers; the requester (no workers) advertises none.
    let pm = w.r.remote_manifest(&w.p_id).expect("provider manifest kept").clone();
    let tasks = pm.supported_tasks.clone().expect("tasks");
    assert_eq!(tasks[0].task_kind, CHAT);
    assert_eq!(pm.max_payload_bytes, 16_384);
    assert_eq!(pm.max_inflight_jobs, Some(32));
    assert!(w.p.remote_manifest(&w.r_id).expect("kept").supported_tasks.is_none());
    // Every answer is marked as one; every other manifest was answered.
    let answers = |sent: &[LcpMessage]| {
        sent.iter().filter(|m| matches!(m, LcpMessage::Manifest(m) if peers::is_answer(m))).count()
    };
    assert_eq!((answers(&w.p_sent), answers(&w.r_sent)), (1, 1));
    // A repeated manifest (a peer whose LCP daemon restarted resends it; the reference does so
    // without any mark) replaces the stored one and is answered once, with a marked answer.
    // (The manifest the requester holds is the provider's answer: without the mark, it is the
    // provider's manifest as sent at a start.)
    let plain = Manifest { extra: Vec::new(), ..pm.clone() };
    let mut again = plain.clone();
    again.max_payload_bytes = 8_192;
    w.r.on_message(w.now, &w.p_id.clone(), LcpMessage::Manifest(again));
    match &w.r.drain()[..] {
        [Out::Send { msg: LcpMessage::Manifest(m), .. }] => assert!(peers::is_answer(m), "{m:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.r.remote_manifest(&w.p_id).map(|m| m.max_payload_bytes), Some(8_192));
    // An answer is stored and not answered.
    let mut answer = plain.clone();
    answer.extra.push(crate::wire::tlv::UnknownTlv { tlv_type: v02::TLV_MANIFEST_NO_REPLY, value: Vec::new() });
    w.r.on_message(w.now, &w.p_id.clone(), LcpMessage::Manifest(answer));
    assert!(w.r.drain().is_empty(), "an answer is not answered");
    // A manifest that asks for an answer (a node of ours of an earlier version) is answered.
    let mut asking = plain.clone();
    asking.extra.push(crate::wire::tlv::UnknownTlv { tlv_type: v02::TLV_MANIFEST_WANT_REPLY, value: Vec::new() });
    w.r.on_message(w.now, &w.p_id.clone(), LcpMessage::Manifest(asking));
    match &w.r.drain()[..] {
        [Out::Send { msg: LcpMessage::Manifest(m), .. }] => assert!(peers::is_answer(m)),
        other => panic!("{other:?}"),
    }
    // First manifest of a connection is answered even when ours went out first.
    w.disconnect();
    w.r.peer_connected(w.now, &w.p_id.clone());
    let first = w.r.drain();
    assert!(matches!(&first[..], [Out::Send { msg: LcpMessage::Manifest(_), .. }]));
    w.r.on_message(w.now, &w.p_id.clone(), LcpMessage::Manifest(plain));
    let reply = w.r.drain();
    assert!(matches!(&reply[..], [Out::Send { msg: LcpMessage::Manifest(_), .. }]), "{reply:?}");
}

#[test]
fn whole_job_quote_pay_result() {
    let mut w = World::new();
    w.connect();
    let id = w.quote();
    assert_eq!(w.notices_of(id), vec![Notice::Quoted]);
    let rrec = w.r.requester_job(&id).expect("job").clone();
    assert_eq!(rrec.state, RequesterState::Quoted);
    assert_eq!(rrec.price_msat, 5_000);
    // The provider stored the quote (with the input) before sending it.
    let (prec, input, _) = w.p_saved[&id].clone();
    assert_eq!(prec.state, ProviderState::Quoted);
    assert_eq!(prec.terms_hash, rrec.terms_hash);
    assert_eq!(input.as_deref(), Some(&chat_input(MODEL)[..]));
    assert_eq!(w.r.accept(w.now, id, Some(5_000)), Ok(Accepted::Paying));
    w.pump();
    let out = br#"{"ok":true}"#.to_vec();
    let sha: [u8; 32] = Sha256::digest(&out).into();
    assert_eq!(
        w.finished(id),
        Some(Outcome::Ok {
            content_type: "application/json; charset=utf-8".into(),
            len: out.len() as u64,
            sha256: sha
        })
    );
    let chunks: Vec<u8> = w
        .notices_of(id)
        .into_iter()
        .filter_map(|n| if let Notice::Chunk(c) = n { Some(c) } else { None })
        .flatten()
        .collect();
    assert_eq!(chunks, out);
    assert_eq!(w.r_saved[&id].0.state, RequesterState::Done);
    assert_eq!(w.r_saved[&id].2.as_deref(), Some(&out[..]));
    assert_eq!(w.p_saved[&id].0.state, ProviderState::Done);
    assert_eq!(w.p_saved[&id].2.as_deref(), Some(&out[..]));
    let preimage = w.r_saved[&id].0.preimage.expect("preimage stored");
    assert_eq!(<[u8; 32]>::from(Sha256::digest(preimage)), w.r_saved[&id].0.payment_hash);
    assert_eq!((w.dispatches, w.pays), (1, 1));
    // The provider's result carries total_len and sha256 in its begin (a JSON result).
    let b = w.p_sent.iter().find_map(|m| match m {
        LcpMessage::StreamBegin(b) => Some(b.clone()),
        _ => None,
    });
    let b = b.expect("result begin");
    assert_eq!((b.total_len, b.sha256), (Some(out.len() as u64), Some(sha)));
}

#[test]
fn sse_result_is_streamed_as_it_arrives() {
    let (mut w, id) = World::accepted(Work::Hang, true);
    let key = (w.r_id.clone(), id);
    w.p.output(w.now, &key, OutputItem::Begin { content_type: "text/event-stream; charset=utf-8".into() });
    w.p.output(w.now, &key, OutputItem::Chunk(b"data: one\n\n".to_vec()));
    w.pump();
    // The first event reached the requester's caller before the worker finished.
    assert!(w.notices_of(id).contains(&Notice::Chunk(b"data: one\n\n".to_vec())));
    assert_eq!(w.finished(id), None);
    let b = w.p_sent.iter().find_map(|m| if let LcpMessage::StreamBegin(b) = m { Some(b.clone()) } else { None });
    assert_eq!(b.map(|b| (b.total_len, b.sha256)), Some((None, None)), "SSE begin has no length or hash");
    w.p.output(w.now, &key, OutputItem::Chunk(b"data: [DONE]\n\n".to_vec()));
    w.p.output(w.now, &key, OutputItem::End { len: 0, sha256: [0; 32] });
    w.pump();
    assert!(matches!(w.finished(id), Some(Outcome::Ok { len: 25, .. })), "{:?}", w.finished(id));
}

#[test]
fn a_run_lost_before_any_result_byte_left_starts_again_unseen() {
    let (mut w, id) = World::accepted(Work::Hang, true);
    let key = (w.r_id.clone(), id);
    let begins = |w: &World| w.p_sent.iter().filter(|m| matches!(m, LcpMessage::StreamBegin(_))).count();
    // A buffered (JSON) run produces part of its result, then its worker dies; the run that
    // replaces it starts over: only the second run's bytes make the result.
    w.p.output(w.now, &key, OutputItem::Begin { content_type: "application/json; charset=utf-8".into() });
    w.p.output(w.now, &key, OutputItem::Chunk(b"{\"first run".to_vec()));
    w.pump();
    assert_eq!(begins(&w), 0, "nothing of a buffered result leaves before it ends");
    // An SSE run that has not produced a byte yet: its stream_begin is held back too.
    w.p.output(w.now, &key, OutputItem::Begin { content_type: "text/event-stream; charset=utf-8".into() });
    w.pump();
    assert_eq!(begins(&w), 0, "an SSE stream_begin waits for the first bytes");
    assert_eq!(w.p_saved[&id].0.state, ProviderState::Running, "no streaming state saved before bytes leave");
    // The third run completes.
    w.p.output(w.now, &key, OutputItem::Begin { content_type: "text/event-stream; charset=utf-8".into() });
    w.p.output(w.now, &key, OutputItem::Chunk(b"data: x\n\n".to_vec()));
    w.pump();
    assert_eq!(begins(&w), 1);
    assert_eq!(w.p_saved[&id].0.state, ProviderState::Streaming);
    w.p.output(w.now, &key, OutputItem::End { len: 0, sha256: [0; 32] });
    w.pump();
    assert!(matches!(w.finished(id), Some(Outcome::Ok { len: 9, .. })), "{:?}", w.finished(id));
    assert_eq!(begins(&w), 1);
    // An SSE result with no bytes at all still goes out as an (empty) stream.
    let (w, id) = World::accepted(
        Work::Output(vec![
            OutputItem::Begin { content_type: "text/event-stream; charset=utf-8".into() },
            OutputItem::End { len: 0, sha256: Sha256::digest(b"").into() },
        ]),
        true,
    );
    assert!(matches!(w.finished(id), Some(Outcome::Ok { len: 0, .. })), "{:?}", w.finished(id));
}

/// The provider gives up on job `id` (rate_limited) while the requester's payment is unresolved.
fn provider_gives_up(w: &mut World, id: [u8; 32]) {
    let err = LcpMessage::Error(LcpError {
        envelope: Envelope { protocol_version: 2, job_id: id, msg_id: [9; 32], expiry: w.now + 300 },
        code: ErrorCode::RateLimited,
        message: Some("busy".into()),
        extra: Vec::new(),
    });
    w.r.on_message(w.now, &w.p_id.clone(), err);
    w.pump();
}

#[test]
fn a_job_ending_while_its_payment_is_in_flight_keeps_the_proof_of_payment() {
    let (mut w, id) = World::accepted(Work::Hang, false);
    let (job_id, bolt11) = w.held_pays.pop().expect("a payment was asked for");
    // The provider gives up on the job while our payment is still in flight.
    provider_gives_up(&mut w, id);
    // Not a payment failure: nobody may take it as "nothing was paid".
    assert!(
        matches!(w.finished(id), Some(Outcome::Failed { kind: FailKind::ResourceExhausted, .. })),
        "{:?}",
        w.finished(id)
    );
    // The payment then goes through: the record keeps the preimage, the job stays failed.
    w.pay(job_id, &bolt11);
    w.pump();
    let rec = &w.r_saved[&id].0;
    assert_eq!(rec.state, RequesterState::Failed);
    let preimage = rec.preimage.expect("preimage recorded");
    assert_eq!(<[u8; 32]>::from(Sha256::digest(preimage)), rec.payment_hash);
    // Only a payment payd refused is a payment failure.
    let (mut w, id) = World::accepted(Work::Output(json_output(br#"{"ok":true}"#)), false);
    let (job_id, _) = w.held_pays.pop().expect("a payment was asked for");
    w.r.paid(w.now, job_id, PayOutcome::Failed("no route".into()));
    w.pump();
    assert!(matches!(w.finished(id), Some(Outcome::Failed { kind: FailKind::PaymentFailed, .. })));
}

#[test]
fn an_ended_job_whose_payment_outcome_is_unknown_is_looked_up_until_payd_knows() {
    let (mut w, id) = World::accepted(Work::Hang, false);
    let (job_id, _) = w.held_pays.pop().expect("a payment was asked for");
    assert!(w.r_saved[&id].0.payment_unresolved, "the record says a payment is out before payd is asked");
    // payd did not answer in time, then the provider gave up: the job ends, the payment's fate
    // is unknown.
    w.r.paid(w.now, job_id, PayOutcome::Unknown("timed out".into()));
    provider_gives_up(&mut w, id);
    assert!(matches!(w.finished(id), Some(Outcome::Failed { kind: FailKind::ResourceExhausted, .. })));
    let rec = w.r_saved[&id].0.clone();
    assert!(rec.payment_unresolved && rec.preimage.is_none());
    // An ended job is never paid again; payd is asked what happened, one lookup at a time.
    w.r.tick(w.now);
    w.pump();
    w.r.tick(w.now + 1);
    w.pump();
    assert!(w.held_pays.is_empty(), "no second payment");
    assert_eq!(w.lookups, vec![(id, rec.payment_hash)]);
    // Still pending at payd: asked again after the backoff, not before.
    w.r.payment_looked_up(w.now, id, PaymentLookup::Pending);
    w.r.tick(w.now + LOOKUP_FIRST_SECS - 1);
    w.pump();
    assert_eq!(w.lookups.len(), 1);
    w.r.tick(w.now + LOOKUP_FIRST_SECS);
    w.pump();
    assert_eq!(w.lookups.len(), 2);
    // payd unreachable: the wait doubles.
    w.now += LOOKUP_FIRST_SECS;
    w.r.payment_looked_up(w.now, id, PaymentLookup::Unknown("payd unreachable".into()));
    w.r.tick(w.now + 2 * LOOKUP_FIRST_SECS - 1);
    w.pump();
    assert_eq!(w.lookups.len(), 2);
    w.r.tick(w.now + 2 * LOOKUP_FIRST_SECS);
    w.pump();
    assert_eq!(w.lookups.len(), 3);
    // A preimage that does not match the hash is not taken.
    w.r.payment_looked_up(w.now, id, PaymentLookup::Paid([0; 32]));
    assert!(w.r_saved[&id].0.preimage.is_none());
    // payd: it went through. The record keeps the proof of payment; the job stays failed.
    let preimage = w.invoices[&rec.payment_hash];
    w.r.payment_looked_up(w.now, id, PaymentLookup::Paid(preimage));
    w.pump();
    let rec = &w.r_saved[&id].0;
    assert_eq!((rec.state, rec.preimage, rec.payment_unresolved), (RequesterState::Failed, Some(preimage), false));
    // Nothing more to ask.
    w.r.tick(w.now + 10_000);
    w.pump();
    assert_eq!(w.lookups.len(), 3);
}

#[test]
fn an_ended_job_stays_in_memory_until_payd_says_its_payment_was_not_made() {
    let (mut w, id) = World::accepted(Work::Hang, false);
    let paid_at = w.now;
    let (job_id, _) = w.held_pays.pop().expect("a payment was asked for");
    w.r.paid(w.now, job_id, PayOutcome::Unknown("timed out".into()));
    provider_gives_up(&mut w, id);
    w.r.tick(w.now);
    w.pump();
    assert_eq!(w.lookups.len(), 1);
    // No record at payd soon after the Pay went out: it may still be on its way, so not settled.
    w.r.payment_looked_up(w.now, id, PaymentLookup::NoRecord);
    w.pump();
    assert!(w.r_saved[&id].0.payment_unresolved);
    // Long after a finished job would leave memory, an unresolved one is still asked about.
    let later = paid_at + EngineConfig::default().keep_finished_secs.max(LOOKUP_ABSENT_GRACE_SECS) + 1;
    w.r.tick(later);
    w.pump();
    assert_eq!(w.lookups.len(), 2);
    assert!(w.r.requester_job(&id).is_some());
    // Still no record well after the last Pay: nothing was paid, and the record says so.
    w.r.payment_looked_up(later, id, PaymentLookup::NoRecord);
    w.pump();
    let rec = &w.r_saved[&id].0;
    assert!(!rec.payment_unresolved && rec.preimage.is_none());
    w.r.tick(later + 1);
    w.pump();
    assert_eq!(w.lookups.len(), 2);
    assert!(w.r.requester_job(&id).is_none(), "a resolved, finished job leaves memory");
    // After a restart, a stored unresolved job is looked up at once, and the grace starts over
    // (a Pay of the previous process may still reach payd).
    let mut rec = w.r_saved[&id].0.clone();
    rec.payment_unresolved = true;
    let mut w2 = World::new();
    w2.r.restore_requester(later, rec.clone(), chat_input(MODEL));
    w2.r.tick(later);
    w2.pump();
    assert_eq!(w2.lookups, vec![(id, rec.payment_hash)]);
    w2.r.payment_looked_up(later, id, PaymentLookup::NoRecord);
    w2.pump();
    assert!(w2.r_saved.get(&id).is_none_or(|(r, ..)| r.payment_unresolved));
    // payd recorded a failure: settled at once.
    w2.r.payment_looked_up(later, id, PaymentLookup::NotPaid("no route".into()));
    w2.pump();
    assert!(!w2.r_saved[&id].0.payment_unresolved);
    // A job still paying waits for payd's answer to its payment, whatever a lookup says.
    let (mut w3, id3) = World::accepted(Work::Hang, false);
    w3.r.payment_looked_up(w3.now, id3, PaymentLookup::NotPaid("none yet".into()));
    w3.pump();
    assert_eq!(w3.r_saved[&id3].0.state, RequesterState::Paying);
}

#[test]
fn error_codes_of_the_provider() {
    let data = chat_input(MODEL);
    let code = |errs: Vec<(u16, String)>| errs.first().map(|e| e.0);

    // 10: before manifests are exchanged.
    let mut w = World::new();
    assert_eq!(code(w.send_provider(qr(1, 1, MODEL))), Some(10));

    let mut w = World::new();
    w.connect();
    // 1: protocol version.
    let mut m = qr(1, 1, MODEL);
    if let LcpMessage::QuoteRequest(q) = &mut m {
        q.envelope.protocol_version = 3;
    }
    let errs = w.send_provider(m);
    assert_eq!(code(errs), Some(1));
    // 2: unknown task kind; model not offered.
    let mut m = qr(2, 1, MODEL);
    if let LcpMessage::QuoteRequest(q) = &mut m {
        q.task_kind = "x.v1".into();
    }
    assert_eq!(code(w.send_provider(m)), Some(2));
    let errs = w.send_provider(qr(3, 1, "other"));
    assert_eq!(code(errs.clone()), Some(2));
    assert_eq!(errs[0].1, r#"unsupported model: "other" (supported: m1)"#);
    // 8: params with an unknown record; params missing.
    let mut m = qr(4, 1, MODEL);
    if let LcpMessage::QuoteRequest(q) = &mut m {
        q.params.as_mut().expect("params").extend_from_slice(&[0x05, 0x01, 0x00]);
    }
    assert_eq!(code(w.send_provider(m)), Some(8));
    let mut m = qr(5, 1, MODEL);
    if let LcpMessage::QuoteRequest(q) = &mut m {
        q.params = None;
    }
    assert_eq!(code(w.send_provider(m)), Some(8));
    // 10: input stream without a quote_request.
    assert_eq!(code(w.send_provider(LcpMessage::StreamBegin(begin(6, 2, &data)))), Some(10));
    // 9: content encoding; content type.
    assert!(w.send_provider(qr(7, 1, MODEL)).is_empty());
    let mut b = begin(7, 2, &data);
    b.content_encoding = "gzip".into();
    assert_eq!(code(w.send_provider(LcpMessage::StreamBegin(b))), Some(9));
    let mut b = begin(7, 3, &data);
    b.content_type = "text/plain".into();
    assert_eq!(code(w.send_provider(LcpMessage::StreamBegin(b))), Some(9));
    // 10: begin without total_len.
    let mut b = begin(7, 4, &data);
    b.total_len = None;
    assert_eq!(code(w.send_provider(LcpMessage::StreamBegin(b))), Some(10));
    // 6: input over our limit.
    let mut b = begin(7, 5, &data);
    b.total_len = Some(v02::DEFAULT_MAX_STREAM_BYTES + 1);
    assert_eq!(code(w.send_provider(LcpMessage::StreamBegin(b))), Some(6));
    // 11: a chunk skipping seq 0.
    assert!(w.send_provider(LcpMessage::StreamBegin(begin(7, 6, &data))).is_empty());
    assert_eq!(code(w.send_provider(chunk(7, 1, &data))), Some(11));
    // 12: stream_end whose hash disagrees.
    assert!(w.send_provider(qr(8, 1, MODEL)).is_empty());
    assert!(w.send_provider(LcpMessage::StreamBegin(begin(8, 2, &data))).is_empty());
    assert!(w.send_provider(chunk(8, 0, &data)).is_empty());
    let mut e = end(8, 3, &data);
    if let LcpMessage::StreamEnd(e) = &mut e {
        e.sha256 = [0; 32];
    }
    assert_eq!(code(w.send_provider(e)), Some(12));
    // 10: stream_end with no job at all (the reference's "no input stream for job").
    assert_eq!(code(w.send_provider(end(9, 3, &data))), Some(10));
    // 7: the worker refuses with rate_limited; 4: invoice creation fails.
    w.price = Err((7, "upstream busy".into()));
    assert_eq!(code(raw_job(&mut w, 10)), Some(7));
    w.price = Ok(1_000);
    w.invoice_ok = false;
    let errs = raw_job(&mut w, 11);
    assert_eq!(errs, vec![(4, "failed to create invoice".to_string())]);
    w.invoice_ok = true;
    // 5: a retried quote_request that differs; 3: a retry after the quote expired.
    assert!(raw_job(&mut w, 12).is_empty());
    assert_eq!(code(w.send_provider(qr(12, 9, "m2"))), Some(2), "model check comes first");
    let mut m = qr(12, 10, MODEL);
    if let LcpMessage::QuoteRequest(q) = &mut m {
        q.params = Some(vec![0x01, 0x02, b'm', b'1']);
        q.task_kind = CHAT.into();
    }
    assert!(w.send_provider(m).is_empty(), "same params re-sends the quote");
    let mut w2 = World::new();
    w2.p.set_offers(vec![Offer { task_kind: CHAT.into(), model: None }]);
    w2.connect();
    assert!(raw_job(&mut w2, 1).is_empty());
    assert_eq!(code(w2.send_provider(qr(1, 9, "another"))), Some(5));
    w2.now += 301;
    w2.p.tick(w2.now);
    let mut late = qr(1, 10, MODEL);
    if let LcpMessage::QuoteRequest(q) = &mut late {
        q.envelope.expiry = w2.now + 300;
    }
    assert_eq!(code(w2.send_provider(late)), Some(3));
    // 2: provider disabled (no workers).
    let mut w3 = World::new();
    w3.p.set_offers(Vec::new());
    w3.connect();
    assert_eq!(w3.send_provider(qr(1, 1, MODEL)), vec![(2, "provider disabled".to_string())]);
}

#[test]
fn retried_quote_request_gets_the_stored_quote_and_replays_are_dropped() {
    let mut w = World::new();
    w.connect();
    assert!(raw_job(&mut w, 1).is_empty());
    let quotes = |w: &World| {
        w.p_sent
            .iter()
            .filter_map(|m| if let LcpMessage::QuoteResponse(q) = m { Some(q.clone()) } else { None })
            .collect::<Vec<_>>()
    };
    assert_eq!(quotes(&w).len(), 1);
    // The same msg_id again: a replay, dropped without an answer.
    assert!(w.send_provider(qr(1, 1, MODEL)).is_empty());
    assert_eq!(quotes(&w).len(), 1);
    // A fresh msg_id: the stored quote again, same invoice and terms.
    assert!(w.send_provider(qr(1, 9, MODEL)).is_empty());
    let q = quotes(&w);
    assert_eq!(q.len(), 2);
    assert_eq!((q[0].terms_hash, &q[0].payment_request), (q[1].terms_hash, &q[1].payment_request));
    // An envelope whose expiry has passed is dropped.
    let mut old = qr(2, 1, MODEL);
    if let LcpMessage::QuoteRequest(q) = &mut old {
        q.envelope.expiry = w.now - 1;
    }
    assert!(w.send_provider(old).is_empty());
    assert!(w.p.provider_jobs().iter().all(|j| j.job_id != [2; 32]));
}

#[test]
fn quote_expiry_with_the_clock() {
    let mut w = World::new();
    w.connect();
    let id = w.quote();
    let expiry = w.r.requester_job(&id).expect("job").quote_expiry;
    assert_eq!(expiry, T0 + 300);
    w.now = expiry;
    let err = w.r.accept(w.now, id, None).expect_err("expired");
    assert_eq!(err.message, "quote expired");
    assert_eq!(w.pays, 0);
    w.p.tick(w.now + 1);
    w.pump();
    assert_eq!(w.p_saved[&id].0.state, ProviderState::Expired);
}

#[test]
fn requester_checks_the_quote_before_paying() {
    // A provider that lies about the price in its quote_response: terms_hash no longer matches.
    let mut w = World::new();
    w.connect();
    w.r.request_quote(
        w.now,
        QuoteArgs {
            peer: w.p_id.clone(),
            task_kind: CHAT.into(),
            model: Some(MODEL.into()),
            input: chat_input(MODEL),
            input_content_type: None,
            max_price_msat: Some(4_999),
            timeout_secs: None,
        },
    )
    .expect("sent");
    w.pump();
    let failed = w.notices.iter().find_map(|(_, n)| match n {
        Notice::QuoteFailed { message, .. } => Some(message.clone()),
        _ => None,
    });
    assert_eq!(failed.as_deref(), Some("price 5000 msat exceeds the ceiling of 4999 msat"));

    // Tampered quotes, fed to the requester directly.
    let cases: Vec<(&str, Tamper)> = vec![
        ("terms_hash mismatch", Box::new(|_, q| q.price_msat += 1)),
        (
            "invoice: ",
            Box::new(|w, q| {
                let other = key(9).0;
                q.payment_request = w.invoice(q.price_msat, q.terms_hash, 295, &other).0;
            }),
        ),
        (
            "invoice: ",
            Box::new(|w, q| {
                let k = w.p_key;
                q.payment_request = w.invoice(q.price_msat + 1, q.terms_hash, 295, &k).0;
            }),
        ),
        (
            "invoice: ",
            Box::new(|w, q| {
                let k = w.p_key;
                q.payment_request = w.invoice(q.price_msat, [7; 32], 295, &k).0;
            }),
        ),
        (
            "invoice: ",
            Box::new(|w, q| {
                let k = w.p_key;
                q.payment_request = w.invoice(q.price_msat, q.terms_hash, 400, &k).0;
            }),
        ),
    ];
    for (want, tamper) in cases {
        let mut w = World::new();
        w.connect();
        w.mute_provider = true;
        let id = w.quote();
        let mut q = w
            .p_sent
            .iter()
            .find_map(|m| if let LcpMessage::QuoteResponse(q) = m { Some(q.clone()) } else { None })
            .expect("quote");
        tamper(&mut w, &mut q);
        w.r.on_message(w.now, &w.p_id.clone(), LcpMessage::QuoteResponse(q));
        w.mute_provider = false;
        w.pump();
        let msg = w.notices_of(id).into_iter().find_map(|n| match n {
            Notice::QuoteFailed { message, .. } => Some(message),
            _ => None,
        });
        let msg = msg.unwrap_or_else(|| panic!("{want}: no failure"));
        assert!(msg.starts_with(want), "{want} vs {msg}");
        assert!(w.r.accept(w.now, id, None).is_err());
        assert_eq!(w.pays, 0);
    }
}

#[test]
fn cancel_stops_the_run_and_is_answered() {
    let (mut w, id) = World::accepted(Work::Hang, true);
    w.r.cancel(w.now, id, Some("user".into())).expect("cancel");
    w.pump();
    assert_eq!(w.cancels, 1);
    assert_eq!(w.finished(id), Some(Outcome::Cancelled));
    assert_eq!(w.r_saved[&id].0.error.as_deref(), Some("user"), "the requester's record says why");
    assert_eq!(w.p_saved[&id].0.state, ProviderState::Cancelled);
    let answered = w
        .p_sent
        .iter()
        .any(|m| matches!(m, LcpMessage::Result(LcpResult { outcome: ResultOutcome::Cancelled { .. }, .. })));
    assert!(answered, "lcp_result(cancelled) sent");
    // A late output of the stopped run changes nothing.
    w.p.output(w.now, &(w.r_id.clone(), id), OutputItem::Chunk(b"late".to_vec()));
    w.pump();
    assert_eq!(w.p_saved[&id].0.state, ProviderState::Cancelled);
}

#[test]
fn quirk_spurious_error_after_a_finished_job_is_ignored() {
    let (mut w, id) = World::accepted(Work::Output(json_output(br#"{"ok":true}"#)), true);
    assert!(matches!(w.finished(id), Some(Outcome::Ok { .. })));
    // The reference's requester node answers our result stream_end with this error.
    let spurious = LcpMessage::Error(LcpError {
        envelope: Envelope { protocol_version: 2, job_id: id, msg_id: [5; 32], expiry: w.now + 300 },
        code: ErrorCode::InvalidState,
        message: Some("no input stream for job".into()),
        extra: Vec::new(),
    });
    assert!(w.send_provider(spurious.clone()).is_empty());
    assert_eq!(w.p.provider_jobs()[0].state, ProviderState::Done);
    // And on the requester side an error for a finished job changes nothing.
    w.r.on_message(w.now, &w.p_id.clone(), spurious);
    w.pump();
    assert_eq!(w.r.requester_job(&id).map(|j| j.state), Some(RequesterState::Done));
}

#[test]
fn quirk_error_instead_of_result_after_payment_ends_the_job() {
    let (w, id) =
        World::accepted(Work::Output(vec![OutputItem::Failed { lcp_code: 7, message: "upstream 503".into() }]), true);
    assert_eq!(
        w.finished(id),
        Some(Outcome::Failed {
            kind: FailKind::ResourceExhausted,
            lcp_code: Some(7),
            message: "lcp_error code=7: upstream 503".into()
        })
    );
    assert_eq!(w.p_saved[&id].0.state, ProviderState::Failed);
    assert_eq!(w.r_saved[&id].0.state, RequesterState::Failed);
    // A provider result(failed) ends it too.
    let (mut w, id) = World::accepted(Work::Hang, true);
    let failed = LcpMessage::Result(LcpResult {
        envelope: Envelope { protocol_version: 2, job_id: id, msg_id: [6; 32], expiry: w.now + 300 },
        outcome: ResultOutcome::Failed { message: None },
        extra: Vec::new(),
    });
    w.r.on_message(w.now, &w.p_id.clone(), failed);
    w.pump();
    assert!(matches!(w.finished(id), Some(Outcome::Failed { lcp_code: None, .. })));
}

#[test]
fn quirk_silent_provider_hits_our_deadline() {
    let (mut w, id) = World::accepted(Work::Hang, true);
    w.r.tick(w.now + 59);
    w.pump();
    assert_eq!(w.finished(id), None);
    w.r.tick(w.now + 60);
    w.pump();
    assert!(matches!(w.finished(id), Some(Outcome::Failed { kind: FailKind::DeadlineExceeded, .. })));
    // A silent provider before the quote: the quote wait ends at the deadline too.
    let mut w = World::new();
    w.connect();
    w.mute_provider = true;
    let id = w.quote();
    w.r.tick(w.now + 60);
    w.pump();
    assert!(w.notices_of(id).iter().any(|n| matches!(n, Notice::QuoteFailed { kind: FailKind::DeadlineExceeded, .. })));
}

#[test]
fn a_result_that_keeps_flowing_outlives_the_deadline_and_a_stall_cancels_at_the_provider() {
    let (mut w, id) = World::accepted(Work::Hang, true);
    w.r.set_deadline(&id, w.now, 10);
    let key = (w.r_id.clone(), id);
    w.p.output(w.now, &key, OutputItem::Begin { content_type: "text/event-stream; charset=utf-8".into() });
    w.p.output(w.now, &key, OutputItem::Chunk(b"data: 0\n\n".to_vec()));
    w.pump();
    // A chunk every 8 s for 40 s: never 10 s of silence, so never cut.
    for i in 1..=5 {
        w.now += 8;
        w.r.tick(w.now);
        w.pump();
        assert_eq!(w.finished(id), None, "cut before chunk {i}");
        w.p.output(w.now, &key, OutputItem::Chunk(format!("data: {i}\n\n").into_bytes()));
        w.pump();
    }
    // Then silence: 10 s after the last chunk the job fails, and the provider is told to stop.
    w.now += 9;
    w.r.tick(w.now);
    w.pump();
    assert_eq!(w.finished(id), None);
    w.now += 1;
    w.r.tick(w.now);
    w.pump();
    assert!(matches!(w.finished(id), Some(Outcome::Failed { kind: FailKind::DeadlineExceeded, .. })));
    assert!(w.r_sent.iter().any(|m| matches!(m, LcpMessage::Cancel(_))), "lcp_cancel sent");
    assert_eq!(w.cancels, 1, "the provider stopped the run");
    assert_eq!(w.p_saved[&id].0.state, ProviderState::Cancelled);
}

#[test]
fn result_checks_on_the_requester() {
    // A result whose lcp_result disagrees with the stream fails with checksum_mismatch, and
    // the provider hears it.
    let (mut w, id) = World::accepted(Work::Hang, true);
    let data = b"abc".to_vec();
    let sha: [u8; 32] = Sha256::digest(&data).into();
    let e = |m: u8| Envelope { protocol_version: 2, job_id: id, msg_id: [m; 32], expiry: w.now + 300 };
    let p = w.p_id.clone();
    w.r.on_message(
        w.now,
        &p,
        LcpMessage::StreamBegin(StreamBegin {
            envelope: e(1),
            stream_id: [4; 32],
            stream_kind: StreamKind::Result,
            total_len: Some(3),
            sha256: Some(sha),
            content_type: "application/json; charset=utf-8".into(),
            content_encoding: "identity".into(),
            extra: Vec::new(),
        }),
    );
    w.r.on_message(
        w.now,
        &p,
        LcpMessage::StreamChunk(StreamChunk {
            protocol_version: 2,
            job_id: id,
            expiry: w.now + 300,
            stream_id: [4; 32],
            seq: 0,
            data: data.clone(),
            extra: Vec::new(),
        }),
    );
    w.r.on_message(
        w.now,
        &p,
        LcpMessage::StreamEnd(StreamEnd {
            envelope: e(2),
            stream_id: [4; 32],
            total_len: 3,
            sha256: sha,
            extra: Vec::new(),
        }),
    );
    w.r.on_message(
        w.now,
        &p,
        LcpMessage::Result(LcpResult {
            envelope: e(3),
            outcome: ResultOutcome::Ok(crate::wire::lcp::ResultOk {
                result_stream_id: [5; 32],
                result_hash: sha,
                result_len: 3,
                result_content_type: "application/json; charset=utf-8".into(),
                result_content_encoding: "identity".into(),
            }),
            extra: Vec::new(),
        }),
    );
    w.pump();
    match w.finished(id) {
        Some(Outcome::Failed { lcp_code: Some(12), message, .. }) => {
            assert!(message.contains("result_stream_id"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(w.r_sent.iter().any(|m| matches!(m, LcpMessage::Error(e) if e.code == ErrorCode::ChecksumMismatch)));
}

#[test]
fn restart_provider_paid_job_runs_and_requester_gets_result_again() {
    // Requester paid; the provider "crashes" right after recording the payment.
    let (mut w, id) = World::accepted(Work::Hang, true);
    assert_eq!(w.p_saved[&id].0.state, ProviderState::Running);
    let (rec, input, _) = w.p_saved[&id].clone();
    // A new provider engine from the stored record, a new connection.
    w.disconnect();
    w.p = Engine::with_rng(EngineConfig::default(), w.p_id.clone(), StdRng::seed_from_u64(9));
    w.p.set_offers(offers());
    w.work = Work::Output(json_output(b"{\"again\":1}"));
    let before = w.dispatches;
    w.p.restore_provider(w.now, rec, input);
    w.pump();
    assert_eq!(w.dispatches, before + 1, "the paid job runs again");
    assert_eq!(w.p_saved[&id].0.state, ProviderState::ResultReady, "stored, requester not connected");
    w.connect();
    assert!(matches!(w.finished(id), Some(Outcome::Ok { len: 11, .. })), "{:?}", w.notices_of(id));
    assert_eq!(w.pays, 1, "paid once");
}

#[test]
fn restart_requester_asks_again_for_a_paid_result() {
    let mut w = World::new();
    w.connect();
    let id = w.quote();
    w.auto_pay = false;
    w.r.accept(w.now, id, None).expect("accept");
    w.pump();
    // The requester "crashed" with the payment handed to payd: the stored state says paying.
    let (rec, input, _) = w.r_saved[&id].clone();
    assert_eq!(rec.state, RequesterState::Paying);
    w.disconnect();
    w.r = Engine::with_rng(EngineConfig::default(), w.r_id.clone(), StdRng::seed_from_u64(7));
    w.auto_pay = true;
    w.r.restore_requester(w.now, rec, input.expect("input stored"));
    // payd is asked again (it pays at most once per hash), and the provider runs the job.
    w.pump();
    assert_eq!(w.pays, 1);
    assert_eq!(w.p_saved[&id].0.state, ProviderState::ResultReady);
    // Reconnect: the requester asks again with the same job id; the provider re-sends the
    // quote and the stored result.
    w.connect();
    assert!(matches!(w.finished(id), Some(Outcome::Ok { .. })), "{:?}", w.notices_of(id));
    assert_eq!(w.r_saved[&id].0.state, RequesterState::Done);
    assert_eq!(w.dispatches, 1, "run once");

    // Re-delivery of a done job when asked again after the quote expired.
    let (rec, input, _) = w.r_saved[&id].clone();
    let mut rec = rec;
    rec.state = RequesterState::AwaitingResult;
    w.now += 1_000;
    w.disconnect();
    w.notices.clear();
    w.r = Engine::with_rng(EngineConfig::default(), w.r_id.clone(), StdRng::seed_from_u64(8));
    w.r.restore_requester(w.now, rec, input.expect("input"));
    w.connect();
    assert!(matches!(w.finished(id), Some(Outcome::Ok { .. })), "{:?}", w.notices_of(id));
    assert_eq!(w.dispatches, 1, "still run once");
}

#[test]
fn sizes_checked_against_the_peer_manifest_before_sending() {
    let mut w = World::new();
    w.connect();
    let big = vec![b' '; (v02::DEFAULT_MAX_STREAM_BYTES + 1) as usize];
    let err =
        w.r.request_quote(
            w.now,
            QuoteArgs {
                peer: w.p_id.clone(),
                task_kind: "x.v1".into(),
                model: None,
                input: big,
                input_content_type: Some("text/plain".into()),
                max_price_msat: None,
                timeout_secs: None,
            },
        )
        .expect_err("too big");
    assert_eq!(err.code, crate::bus::ErrorCode::ResourceExhausted);
    assert!(w.r.drain().is_empty(), "nothing sent");
    // Unknown peer.
    let err =
        w.r.request_quote(
            w.now,
            QuoteArgs {
                peer: key(5).1,
                task_kind: CHAT.into(),
                model: Some(MODEL.into()),
                input: chat_input(MODEL),
                input_content_type: None,
                max_price_msat: None,
                timeout_secs: None,
            },
        )
        .expect_err("not connected");
    assert_eq!(err.code, crate::bus::ErrorCode::FailedPrecondition);
}

#[test]
fn chunked_input_and_result_fit_a_small_max_payload() {
    let mut w = World::new();
    w.r = Engine::with_rng(
        EngineConfig { limits: Limits { max_payload_bytes: 1_000, ..Limits::default() }, ..EngineConfig::default() },
        w.r_id.clone(),
        StdRng::seed_from_u64(3),
    );
    let result: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    w.work = Work::Output(json_output(&result));
    w.connect();
    let id = w.quote();
    w.r.accept(w.now, id, None).expect("accept");
    w.pump();
    assert!(matches!(w.finished(id), Some(Outcome::Ok { len: 20_000, .. })));
    for m in &w.p_sent {
        let (_, payload) = m.encode().expect("encodes");
        assert!(payload.len() <= 1_000, "{} bytes", payload.len());
    }
    assert_eq!(w.r_saved[&id].2.as_deref(), Some(&result[..]));
}

// ---------------------------------------------------------------------------------------------
// Manifests after a restart on a live connection, against a model of the reference's rules
// (go-lcpd, lndpeermsg), and one refusal per refused quote.
// ---------------------------------------------------------------------------------------------

/// The reference's manifest rules, exactly: at its start and when the peer comes online it sends
/// its manifest only if not sent on this connection; on the peer's manifest it answers if it held
/// none from that peer (even if it sent its own), else only if it never sent its own; unknown odd
/// TLVs mean nothing to it. A restart (or the peer going offline) is a fresh state.
#[derive(Default)]
struct GoRules {
    sent: bool,
    remote: Option<Manifest>,
}

impl GoRules {
    fn manifest() -> Manifest {
        let mut e = Engine::with_rng(EngineConfig::default(), key(3).1, StdRng::seed_from_u64(3));
        e.set_offers(offers());
        e.manifest()
    }

    /// Startup or peer-online.
    fn start(&mut self) -> Option<Manifest> {
        (!std::mem::replace(&mut self.sent, true)).then(Self::manifest)
    }

    fn on_manifest(&mut self, m: Manifest) -> Option<Manifest> {
        let had = self.remote.replace(m).is_some();
        if !had || !self.sent {
            self.sent = true;
            return Some(Self::manifest());
        }
        None
    }

    /// What its provider checks before answering a quote_request (else code 10).
    fn ready(&self) -> bool {
        self.sent && self.remote.is_some()
    }
}

/// Runs manifests between our engine `e` and the model `g` until nothing moves, starting with
/// `from_g` (manifests `g` sends) and whatever `e` has queued; returns (manifests we sent,
/// manifests it sent) and the other outputs of `e`.
fn exchange(e: &mut Engine, g: &mut GoRules, g_id: &str, from_g: Option<Manifest>) -> ((usize, usize), Vec<Out>) {
    let (mut ours, mut theirs, mut other) = (0, usize::from(from_g.is_some()), Vec::new());
    let mut to_us: VecDeque<Manifest> = from_g.into_iter().collect();
    for _ in 0..100 {
        let outs = e.drain();
        if outs.is_empty() && to_us.is_empty() {
            return ((ours, theirs), other);
        }
        for o in outs {
            match o {
                Out::Send { msg: LcpMessage::Manifest(m), .. } => {
                    ours += 1;
                    if let Some(back) = g.on_manifest(m) {
                        theirs += 1;
                        to_us.push_back(back);
                    }
                }
                o => other.push(o),
            }
        }
        if let Some(m) = to_us.pop_front() {
            e.on_message(T0, g_id, LcpMessage::Manifest(m));
        }
    }
    panic!("manifests kept going back and forth");
}

fn quote_args(peer: &str) -> QuoteArgs {
    QuoteArgs {
        peer: peer.to_string(),
        task_kind: CHAT.into(),
        model: Some(MODEL.into()),
        input: chat_input(MODEL),
        input_content_type: None,
        max_price_msat: None,
        timeout_secs: Some(60),
    }
}

#[test]
fn reference_peer_restart_gets_our_manifest_again() {
    let (_, g_id) = key(3);
    let mut e = Engine::with_rng(EngineConfig::default(), key(2).1, StdRng::seed_from_u64(2));
    let mut g = GoRules::default();
    // A connection: both send at once; it ends with both holding the other's.
    e.peer_connected(T0, &g_id);
    let from_g = g.start();
    let (counts, _) = exchange(&mut e, &mut g, &g_id, from_g);
    assert!(g.ready() && e.remote_manifest(&g_id).is_some(), "{counts:?}");
    // The reference restarts on the live connection: a fresh state, and its manifest again.
    g = GoRules::default();
    let from_g = g.start();
    let ((ours, theirs), _) = exchange(&mut e, &mut g, &g_id, from_g);
    assert!(g.ready(), "the restarted reference holds our manifest (else it refuses quotes with code 10)");
    // We answer each of its manifests once (its start, and its answer to our answer), no more.
    assert_eq!((ours, theirs), (2, 2));
    assert!(e.request_quote(T0, quote_args(&g_id)).is_ok());
}

#[test]
fn our_restart_on_a_live_connection_to_a_reference_peer() {
    let (_, g_id) = key(3);
    let fresh = || Engine::with_rng(EngineConfig::default(), key(2).1, StdRng::seed_from_u64(2));
    let mut e = fresh();
    let mut g = GoRules::default();
    e.peer_connected(T0, &g_id);
    let from_g = g.start();
    exchange(&mut e, &mut g, &g_id, from_g);
    let kept = e.remote_manifest(&g_id).cloned().expect("held");
    // lcpd restarts; the connection stays up. Our new manifest gets no answer from the reference.
    e = fresh();
    e.peer_connected(T0, &g_id);
    let ((ours, theirs), _) = exchange(&mut e, &mut g, &g_id, None);
    assert_eq!((ours, theirs, e.remote_manifest(&g_id).is_none()), (1, 0, true));
    // With the manifest peerd kept from the connection, it works at once, with no cycle.
    e.restore_manifest(T0, &g_id, kept);
    let id = e.request_quote(T0, quote_args(&g_id)).expect("quote requested");
    assert!(e.drain().iter().all(|o| !matches!(o, Out::Reconnect { .. })));
    assert!(e.requester_job(&id).is_some());
    // Without it: asking for a quote says so and, once the connection is past its first moments
    // (when the manifest may still be on its way), cycles the connection, once per interval.
    e = fresh();
    e.peer_connected(T0, &g_id);
    exchange(&mut e, &mut g, &g_id, None);
    let cycles =
        |outs: Vec<Out>| outs.iter().filter(|o| matches!(o, Out::Reconnect { peer, .. } if *peer == g_id)).count();
    let err = e.request_quote(T0, quote_args(&g_id)).expect_err("no manifest");
    assert!(err.message.contains("has not sent its LCP manifest") && !err.message.contains("cycled"), "{err:?}");
    assert_eq!(cycles(e.drain()), 0, "not cycled while the manifest may be on its way");
    let later = T0 + peers::CYCLE_GRACE_SECS;
    let err = e.request_quote(later, quote_args(&g_id)).expect_err("no manifest");
    assert!(err.message.contains("has not sent its LCP manifest") && err.message.contains("cycled"), "{err:?}");
    assert_eq!(cycles(e.drain()), 1);
    let err = e.request_quote(later + 1, quote_args(&g_id)).expect_err("still none");
    assert!(!err.message.contains("cycled"), "{err:?}");
    assert_eq!(cycles(e.drain()), 0, "not cycled again within the interval");
    // The reference's requester (it holds our old manifest) asks our provider for a quote: one
    // error (code 10) and, the interval past, a cycle.
    let mut p = fresh();
    p.set_offers(offers());
    p.peer_connected(T0, &g_id);
    exchange(&mut p, &mut g, &g_id, None);
    let data = chat_input(MODEL);
    p.on_message(later, &g_id, qr(7, 1, MODEL));
    p.on_message(later, &g_id, LcpMessage::StreamBegin(begin(7, 2, &data)));
    p.on_message(later, &g_id, end(7, 3, &data));
    let outs = p.drain();
    let errors: Vec<u16> = outs
        .iter()
        .filter_map(|o| match o {
            Out::Send { msg: LcpMessage::Error(e), .. } => Some(e.code.code()),
            _ => None,
        })
        .collect();
    assert_eq!(errors, vec![ErrorCode::InvalidState.code()]);
    assert_eq!(cycles(outs), 1);
    // The cycle: the reference sees the peer offline (fresh state) and online again.
    p.peer_disconnected(T0, &g_id);
    g = GoRules::default();
    p.peer_connected(T0, &g_id);
    let from_g = g.start();
    exchange(&mut p, &mut g, &g_id, from_g);
    assert!(p.remote_manifest(&g_id).is_some() && g.ready());
}

#[test]
fn two_of_our_nodes_exchange_again_after_either_restarts_and_stop() {
    let mut w = World::new();
    w.connect();
    // The requester's lcpd restarts on the live connection: it sends its manifest, the provider
    // answers it once (marked), and nothing more moves (pump panics on a ping-pong).
    w.r = Engine::with_rng(EngineConfig::default(), w.r_id.clone(), StdRng::seed_from_u64(4));
    let before = w.p_sent.len();
    w.r.peer_connected(w.now, &w.p_id.clone());
    w.pump();
    assert!(w.r.remote_manifest(&w.p_id).is_some());
    assert_eq!(w.p_sent.len() - before, 1);
    // The provider's lcpd restarts: the requester answers, and a whole job works.
    let mut p = Engine::with_rng(EngineConfig::default(), w.p_id.clone(), StdRng::seed_from_u64(5));
    p.set_offers(offers());
    w.p = p;
    let before = w.r_sent.len();
    w.p.peer_connected(w.now, &w.r_id.clone());
    w.pump();
    assert_eq!(w.r_sent.len() - before, 1);
    let id = w.quote();
    assert_eq!(w.r.accept(w.now, id, None), Ok(Accepted::Paying));
    w.pump();
    assert!(matches!(w.finished(id), Some(Outcome::Ok { .. })));
}

#[test]
fn a_refused_quote_request_is_answered_once_and_its_input_dropped() {
    let mut w = World::new();
    w.connect();
    let data = chat_input("not-offered");
    let mut errs = w.send_provider(qr(9, 1, "not-offered"));
    errs.extend(w.send_provider(LcpMessage::StreamBegin(begin(9, 2, &data))));
    errs.extend(w.send_provider(chunk(9, 0, &data)));
    errs.extend(w.send_provider(end(9, 3, &data)));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].0, ErrorCode::UnsupportedTask.code());
    assert!(errs[0].1.contains("unsupported model"), "{errs:?}");
    // A stream for a job that was never asked for is still an error, and the refusal is
    // forgotten after its time.
    assert_eq!(w.send_provider(LcpMessage::StreamBegin(begin(10, 2, &data))).len(), 1);
    w.now += provider::REFUSED_TTL_SECS + 1;
    w.p.tick(w.now);
    let late = StreamBegin { envelope: env(9, 4, w.now + 300), ..begin(9, 4, &data) };
    assert_eq!(w.send_provider(LcpMessage::StreamBegin(late)).len(), 1);
}

/// A requester whose lcpd restarted right after paying: the provider delivers the result to the
/// new process (the first delivery), the new process asks again and the provider re-sends the
/// stored result on another stream (the second), both while the job is still `paying`. The job
/// ends done with the result, paid once.
#[test]
fn a_result_delivered_twice_while_paying_ends_done() {
    let (mut w, id) = World::accepted(Work::Hang, false);
    let (_, bolt11) = w.held_pays.pop().expect("a payment was asked for");
    let (rec, input, _) = w.r_saved[&id].clone();
    assert_eq!(rec.state, RequesterState::Paying);
    // The requester's lcpd restarts while payd pays (the connection, held by peerd, stays up).
    w.r = Engine::with_rng(EngineConfig::default(), w.r_id.clone(), StdRng::seed_from_u64(7));
    w.r.restore_requester(w.now, rec, input.expect("input stored"));
    w.pump();
    assert_eq!(w.held_pays.len(), 1, "the new process asks payd again (payd pays once per hash)");
    // The payment settles at the provider, which runs the job and delivers the result.
    let out = br#"{"delivered":"twice"}"#.to_vec();
    w.work = Work::Output(json_output(&out));
    let d = crate::payd::backend::decode_bolt11(&bolt11).expect("invoice");
    assert!(w.p.settled(w.now, d.payment_hash));
    w.pump();
    // The provider's manifest reaches the new process: it asks again, and the provider re-sends
    // the stored result on a new stream.
    let m = w.p.manifest();
    w.r.on_message(w.now, &w.p_id.clone(), LcpMessage::Manifest(m));
    w.pump();
    let begins = w.p_sent.iter().filter(|m| matches!(m, LcpMessage::StreamBegin(_))).count();
    assert_eq!(begins, 2, "the result went out twice");
    assert_eq!(w.r.requester_job(&id).map(|j| j.state), Some(RequesterState::Paying));
    assert_eq!(w.finished(id), None);
    // payd answers: paid.
    let preimage = w.invoices[&d.payment_hash];
    w.r.paid(w.now, id, PayOutcome::Paid(preimage));
    w.pump();
    let sha: [u8; 32] = Sha256::digest(&out).into();
    assert_eq!(
        w.finished(id),
        Some(Outcome::Ok {
            content_type: "application/json; charset=utf-8".into(),
            len: out.len() as u64,
            sha256: sha
        })
    );
    assert_eq!(w.r_saved[&id].0.state, RequesterState::Done);
    assert_eq!(w.r_saved[&id].0.preimage, Some(preimage));
    assert_eq!(w.r_saved[&id].2.as_deref(), Some(&out[..]));
    assert_eq!(w.dispatches, 1, "run once");
    assert!(!w.r_sent.iter().any(|m| matches!(m, LcpMessage::Error(_))), "no error sent to the provider");
}

/// One delivery of a result: its messages in the order they leave the provider (the result
/// last), and its `lcp_result`.
struct Delivery {
    stream: Vec<LcpMessage>,
    result: LcpMessage,
}

const RESULT_CT: &str = "application/json; charset=utf-8";

fn delivery(job_id: [u8; 32], sid: u8, data: &[u8], result_hash: [u8; 32]) -> Delivery {
    let e = |m: u8| Envelope { protocol_version: 2, job_id, msg_id: [sid ^ m; 32], expiry: T0 + 300 };
    let sha: [u8; 32] = Sha256::digest(data).into();
    let mut stream = vec![LcpMessage::StreamBegin(StreamBegin {
        envelope: e(1),
        stream_id: [sid; 32],
        stream_kind: StreamKind::Result,
        total_len: Some(data.len() as u64),
        sha256: Some(sha),
        content_type: RESULT_CT.into(),
        content_encoding: "identity".into(),
        extra: Vec::new(),
    })];
    for (seq, c) in data.chunks(4).enumerate() {
        stream.push(LcpMessage::StreamChunk(StreamChunk {
            protocol_version: 2,
            job_id,
            expiry: T0 + 300,
            stream_id: [sid; 32],
            seq: seq as u32,
            data: c.to_vec(),
            extra: Vec::new(),
        }));
    }
    stream.push(LcpMessage::StreamEnd(StreamEnd {
        envelope: e(2),
        stream_id: [sid; 32],
        total_len: data.len() as u64,
        sha256: sha,
        extra: Vec::new(),
    }));
    let result = LcpMessage::Result(LcpResult {
        envelope: e(3),
        outcome: ResultOutcome::Ok(crate::wire::lcp::ResultOk {
            result_stream_id: [sid; 32],
            result_hash,
            result_len: data.len() as u64,
            result_content_type: RESULT_CT.into(),
            result_content_encoding: "identity".into(),
        }),
        extra: Vec::new(),
    });
    Delivery { stream, result }
}

/// What happens to the first delivery on its way (the second always arrives whole).
#[derive(Clone, Copy, Debug)]
enum Loss {
    None,
    /// The message at this index of the delivery (begin, chunks, end, result) is lost.
    One(usize),
    /// Everything before this index is lost (it was sent while the requester was down).
    Prefix(usize),
    /// The result's hash is wrong.
    BadHash,
}

/// A requester restored in `paying` (the previous process paid), with the payment held, the
/// two deliveries of its result, and what the caller must end up with.
fn restored_paying() -> (World, [u8; 32], String) {
    let (mut w, id) = World::accepted(Work::Hang, false);
    w.held_pays.clear();
    let (rec, input, _) = w.r_saved[&id].clone();
    w.r = Engine::with_rng(EngineConfig::default(), w.r_id.clone(), StdRng::seed_from_u64(7));
    w.r.restore_requester(w.now, rec, input.expect("input stored"));
    w.pump();
    let (_, bolt11) = w.held_pays.pop().expect("Pay asked again");
    (w, id, bolt11)
}

/// Feeds the two deliveries to the requester, interleaved by `picks` (true: the next message of
/// the first), the first delivery's result after message `r1` of its stream and the second's
/// after `r2`, payd's answer after `pay_at` messages; returns the messages fed.
#[allow(clippy::too_many_arguments)]
fn feed_two(
    w: &mut World,
    id: [u8; 32],
    bolt11: &str,
    d1: Delivery,
    d2: Delivery,
    loss: Loss,
    r1: usize,
    r2: usize,
    picks: &[bool],
    pay_at: usize,
) {
    let place = |d: Delivery, at: usize| {
        let mut v = d.stream;
        let at = at.clamp(1, v.len());
        v.insert(at, d.result);
        v
    };
    let mut a = place(d1, r1);
    let b = place(d2, r2);
    match loss {
        Loss::None | Loss::BadHash => {}
        Loss::One(i) => {
            a.remove(i % a.len());
        }
        Loss::Prefix(n) => {
            a.drain(..n.min(a.len()));
        }
    }
    let (mut a, mut b) = (VecDeque::from(a), VecDeque::from(b));
    let mut fed = 0;
    let mut picks = picks.iter().copied().cycle();
    let mut paid = false;
    while !a.is_empty() || !b.is_empty() {
        if fed == pay_at && !paid {
            paid = true;
            w.pay(id, bolt11);
        }
        let from_a = if a.is_empty() {
            false
        } else if b.is_empty() {
            true
        } else {
            picks.next().unwrap_or(true)
        };
        let msg = if from_a { a.pop_front() } else { b.pop_front() }.expect("not empty");
        w.r.on_message(w.now, &w.p_id.clone(), msg);
        w.pump();
        fed += 1;
    }
    if !paid {
        w.pay(id, bolt11);
    }
    w.pump();
}

/// The bytes the caller was given: those after the last Begin notice.
fn caller_bytes(w: &World, id: [u8; 32]) -> Vec<u8> {
    let notices = w.notices_of(id);
    let last_begin = notices.iter().rposition(|n| matches!(n, Notice::Begin { .. })).expect("a begin");
    notices[last_begin..]
        .iter()
        .filter_map(|n| if let Notice::Chunk(c) = n { Some(c.clone()) } else { None })
        .flatten()
        .collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

    /// Two deliveries of the same result, in any interleaving (each in its own order, its
    /// result anywhere after its begin), payd's answer anywhere, the first delivery whole,
    /// missing one message, missing its start, or with a wrong hash: the job ends done with the
    /// result, and the caller was given exactly its bytes.
    #[test]
    fn a_result_delivered_twice_in_any_order_ends_done(
        picks in proptest::collection::vec(proptest::bool::ANY, 1..40),
        r1 in 1usize..8,
        r2 in 1usize..8,
        pay_at in 0usize..20,
        loss_kind in 0u8..4,
        loss_at in 0usize..8,
    ) {
        let (mut w, id, bolt11) = restored_paying();
        let data = br#"{"answer":"forty-two"}"#.to_vec();
        let sha: [u8; 32] = Sha256::digest(&data).into();
        let loss = match loss_kind {
            0 => Loss::None,
            1 => Loss::One(loss_at),
            2 => Loss::Prefix(loss_at),
            _ => Loss::BadHash,
        };
        let h1 = if matches!(loss, Loss::BadHash) { [0xbb; 32] } else { sha };
        let (d1, d2) = (delivery(id, 0x51, &data, h1), delivery(id, 0x52, &data, sha));
        feed_two(&mut w, id, &bolt11, d1, d2, loss, r1, r2, &picks, pay_at);
        proptest::prop_assert_eq!(
            w.finished(id),
            Some(Outcome::Ok { content_type: RESULT_CT.into(), len: data.len() as u64, sha256: sha })
        );
        proptest::prop_assert_eq!(w.r_saved[&id].0.state, RequesterState::Done);
        proptest::prop_assert_eq!(w.r_saved[&id].2.as_deref(), Some(&data[..]));
        proptest::prop_assert_eq!(caller_bytes(&w, id), data);
        proptest::prop_assert_eq!(w.pays, 1);
        proptest::prop_assert!(!w.r_sent.iter().any(|m| matches!(m, LcpMessage::Error(_))));
    }

    /// Two deliveries that both fail to verify, in any interleaving: the job fails once both
    /// ended (it does not wait for its deadline), with the reason.
    #[test]
    fn two_deliveries_that_do_not_verify_fail_the_job(
        picks in proptest::collection::vec(proptest::bool::ANY, 1..40),
        r1 in 1usize..8,
        r2 in 1usize..8,
        pay_at in 0usize..20,
    ) {
        let (mut w, id, bolt11) = restored_paying();
        let data = br#"{"answer":"forty-two"}"#.to_vec();
        let (d1, d2) = (delivery(id, 0x51, &data, [0xbb; 32]), delivery(id, 0x52, &data, [0xcc; 32]));
        feed_two(&mut w, id, &bolt11, d1, d2, Loss::None, r1, r2, &picks, pay_at);
        match w.finished(id) {
            Some(Outcome::Failed { lcp_code: Some(12), message, .. }) => {
                proptest::prop_assert!(message.contains("result_hash does not match"), "{}", message)
            }
            other => proptest::prop_assert!(false, "{:?}", other),
        }
        proptest::prop_assert_eq!(w.r_saved[&id].0.state, RequesterState::Failed);
        proptest::prop_assert!(w.r_saved[&id].0.preimage.is_some(), "the proof of payment is kept");
    }
}

/// A delivery that did not verify while another one was asked for: the job waits for the other
/// one, and fails at its deadline with the reason if it never comes.
#[test]
fn a_bad_delivery_waits_for_the_one_asked_again_until_the_deadline() {
    let (mut w, id, bolt11) = restored_paying();
    w.pay(id, &bolt11);
    w.pump();
    assert_eq!(w.r.requester_job(&id).map(|j| j.state), Some(RequesterState::AwaitingResult));
    let data = b"{}".to_vec();
    let d = delivery(id, 0x61, &data, [0xbb; 32]);
    for m in d.stream.into_iter().chain([d.result]) {
        w.r.on_message(w.now, &w.p_id.clone(), m);
    }
    w.pump();
    assert_eq!(w.finished(id), None, "the delivery asked for again may still come");
    w.r.tick(w.now + EngineConfig::default().default_deadline_secs);
    w.pump();
    match w.finished(id) {
        Some(Outcome::Failed { lcp_code: Some(12), message, .. }) => {
            assert!(message.contains("result_hash does not match"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

/// Within one delivery a stream error still fails the job at once (nothing else was asked for).
#[test]
fn a_single_bad_delivery_fails_at_once() {
    let (mut w, id) = World::accepted(Work::Hang, true);
    let data = b"0123456789".to_vec();
    let d = delivery(id, 0x71, &data, Sha256::digest(&data).into());
    // Chunk 1 is lost: chunk 2 is out of order.
    let mut msgs = d.stream;
    msgs.remove(2);
    for m in msgs {
        w.r.on_message(w.now, &w.p_id.clone(), m);
    }
    w.pump();
    match w.finished(id) {
        Some(Outcome::Failed { lcp_code: Some(11), .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(w.r_sent.iter().any(|m| matches!(m, LcpMessage::Error(e) if e.code.code() == 11)));
}
