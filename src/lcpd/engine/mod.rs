//! The LCP session engine: manifest exchange, the provider and the requester state machines,
//! replay protection. Pure code: every call takes the current time (unix seconds) and the
//! engine answers with [`Out`] items the runtime carries out in order (send a message, price a
//! job, create an invoice, dispatch, pay, persist a record, notify a client). Persisting comes
//! first in that order whenever a state change must survive a crash (a quote issued, a payment
//! received, a payment attempted, a result produced).
//!
//! - [`peers`]: per-peer manifest state (section 4.1 of the protocol notes);
//! - [`replay`]: the (peer, job_id, msg_id) replay store;
//! - [`provider`]: quote_request and input stream to quote, settlement, dispatch and result
//!   stream (section 4.3);
//! - [`requester`]: quote request, quote checks, payment, result reassembly (section 4.2);
//! - [`records`]: the persisted form of both kinds of job.

pub mod peers;
pub mod provider;
pub mod records;
pub mod replay;
pub mod requester;

use crate::bus::api::jobd::{JobSpec, Offer};
use crate::wire::lcp::{v02, Envelope, LcpMessage, Manifest, TaskTemplate};
use peers::Peers;
use provider::PJob;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
pub use records::{ProviderRecord, ProviderState, RequesterRecord, RequesterState};
use replay::ReplayStore;
use requester::RJob;
use std::collections::HashMap;

/// A provider job's key: the requester's node id (hex) and the job id.
pub type PKey = (String, [u8; 32]);

/// Limits this node advertises in its manifest and enforces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest custom-message payload we accept.
    pub max_payload_bytes: u32,
    /// Largest decoded stream we accept.
    pub max_stream_bytes: u64,
    /// Largest decoded total of all streams of a job.
    pub max_job_bytes: u64,
    /// Jobs we run or queue at once.
    pub max_inflight_jobs: u16,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload_bytes: v02::DEFAULT_MAX_PAYLOAD_BYTES,
            max_stream_bytes: v02::DEFAULT_MAX_STREAM_BYTES,
            max_job_bytes: v02::DEFAULT_MAX_JOB_BYTES,
            max_inflight_jobs: crate::lcpd::opts::DEFAULT_MAX_INFLIGHT_JOBS,
        }
    }
}

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Our limits.
    pub limits: Limits,
    /// The network: requester invoice checks want its currency.
    pub network: crate::config::Network,
    /// Lifetime of a quote, seconds (the reference's default is 300).
    pub quote_ttl_secs: u64,
    /// Clock skew allowed between peers, seconds (5).
    pub clock_skew_secs: u64,
    /// Invoice expiry = quote TTL minus this (5).
    pub invoice_expiry_slack_secs: u64,
    /// Envelope expiry of requester messages, seconds from now (300).
    pub request_ttl_secs: u64,
    /// Replay entries live at most this long (600).
    pub max_envelope_window_secs: u64,
    /// A requester job without an outcome after this many seconds fails (its own deadline).
    pub default_deadline_secs: u64,
    /// A paid job no worker could take fails after its quote expiry plus this.
    pub dispatch_grace_secs: u64,
    /// Finished jobs stay in memory this long (then only in the database).
    pub keep_finished_secs: u64,
    /// Unpaid quotes a single peer may hold at once.
    pub max_open_quotes_per_peer: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            network: crate::config::Network::Devnet,
            quote_ttl_secs: 300,
            clock_skew_secs: 5,
            invoice_expiry_slack_secs: 5,
            request_ttl_secs: 300,
            max_envelope_window_secs: 600,
            default_deadline_secs: 120,
            dispatch_grace_secs: 300,
            keep_finished_secs: 600,
            max_open_quotes_per_peer: 64,
        }
    }
}

/// What a requester's client hears about its job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The quote arrived and passed every check.
    Quoted,
    /// The payment went through.
    Paid {
        /// The preimage.
        preimage: [u8; 32],
    },
    /// The result stream started.
    Begin {
        /// Content type.
        content_type: String,
        /// Content encoding.
        content_encoding: String,
    },
    /// Result bytes, as they arrived (not yet verified against the result's hash).
    Chunk(Vec<u8>),
    /// The result stream ended and matched its length and hash.
    End {
        /// Length.
        len: u64,
        /// SHA-256.
        sha256: [u8; 32],
    },
    /// The job finished: ok, failed or cancelled.
    Finished(Outcome),
    /// The quote did not arrive or failed a check; nothing was paid.
    QuoteFailed {
        /// Stable code for the bus edge.
        kind: FailKind,
        /// One line.
        message: String,
    },
}

/// How a requester job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The result, verified.
    Ok {
        /// Content type.
        content_type: String,
        /// Length.
        len: u64,
        /// SHA-256.
        sha256: [u8; 32],
    },
    /// Failed, with the provider's code (or a local one) and message.
    Failed {
        /// Stable code for the bus edge.
        kind: FailKind,
        /// LCP error code when the provider sent one.
        lcp_code: Option<u16>,
        /// One line.
        message: String,
    },
    /// Cancelled.
    Cancelled,
}

/// Classes of requester failures, mapped to bus error codes at the edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailKind {
    /// A check of ours failed (terms hash, invoice, stream) or the provider refused.
    FailedPrecondition,
    /// The provider said payload_too_large or rate_limited.
    ResourceExhausted,
    /// Our own deadline passed.
    DeadlineExceeded,
    /// payd refused or failed the payment: nothing was paid (the only kind that says so).
    PaymentFailed,
    /// Something else.
    Internal,
}

/// What the runtime must do, in order.
#[derive(Clone, Debug)]
pub enum Out {
    /// Send a message to a peer (on its current session).
    Send {
        /// Node id, hex.
        peer: String,
        /// The message.
        msg: LcpMessage,
    },
    /// Ask a worker to price this job, then call [`Engine::priced`].
    Price {
        /// The job.
        key: PKey,
        /// What to price.
        spec: JobSpec,
    },
    /// Ask payd for an invoice, then call [`Engine::invoiced`].
    CreateInvoice {
        /// The job.
        key: PKey,
        /// Amount, msat.
        amount_msat: u64,
        /// terms_hash.
        description_hash: [u8; 32],
        /// Seconds.
        expiry_secs: u32,
    },
    /// Run this paid job on a worker, then call [`Engine::dispatched`].
    Dispatch {
        /// The job.
        key: PKey,
        /// What to run.
        spec: JobSpec,
    },
    /// Stop the job's run on its worker.
    CancelRun {
        /// The job.
        key: PKey,
    },
    /// Read the stored result of a finished job, then call [`Engine::result_loaded`].
    LoadResult {
        /// The job.
        key: PKey,
    },
    /// Persist a provider job (input and result bytes when they first exist).
    SaveProvider {
        /// The record.
        rec: ProviderRecord,
        /// The input, written once.
        input: Option<Vec<u8>>,
        /// The result, written once.
        result: Option<Vec<u8>>,
    },
    /// Pay the requester job's invoice (idempotent per payment hash), then call [`Engine::paid`].
    Pay {
        /// The job.
        job_id: [u8; 32],
        /// BOLT11.
        bolt11: String,
    },
    /// Ask payd what became of a payment (a lookup: nothing is paid), then call
    /// [`Engine::payment_looked_up`].
    LookupPayment {
        /// The requester job.
        job_id: [u8; 32],
        /// Its payment hash.
        payment_hash: [u8; 32],
    },
    /// Persist a requester job (input and result bytes when they first exist).
    SaveRequester {
        /// The record.
        rec: RequesterRecord,
        /// The input, written once.
        input: Option<Vec<u8>>,
        /// The result, written once.
        result: Option<Vec<u8>>,
    },
    /// Tell the job's client.
    Notify {
        /// The requester job.
        job_id: [u8; 32],
        /// What happened.
        notice: Notice,
    },
    /// Cycle the peer's connection (disconnect, connect again): we lack its manifest and it
    /// would not send it again on this connection (see [`peers`]).
    Reconnect {
        /// Node id, hex.
        peer: String,
        /// Why, one line (logged).
        reason: String,
    },
}

/// The engine.
pub struct Engine {
    cfg: EngineConfig,
    node_id: String,
    offers: Vec<Offer>,
    peers: Peers,
    replay: ReplayStore,
    pjobs: HashMap<PKey, PJob>,
    rjobs: HashMap<[u8; 32], RJob>,
    /// Jobs whose quote_request we refused, and when: their input stream is dropped silently.
    refused: provider::Refused,
    rng: StdRng,
    out: Vec<Out>,
}

impl Engine {
    /// An engine for the node `node_id` (hex), with randomness from the OS.
    pub fn new(cfg: EngineConfig, node_id: String) -> Self {
        Self::with_rng(cfg, node_id, StdRng::from_entropy())
    }

    /// An engine with a given random source (tests use a seeded one).
    pub fn with_rng(cfg: EngineConfig, node_id: String, rng: StdRng) -> Self {
        let replay = ReplayStore::new(cfg.max_envelope_window_secs, replay::DEFAULT_MAX_ENTRIES);
        Self {
            cfg,
            node_id,
            offers: Vec::new(),
            peers: Peers::default(),
            replay,
            pjobs: HashMap::new(),
            rjobs: HashMap::new(),
            refused: provider::Refused::default(),
            rng,
            out: Vec::new(),
        }
    }

    /// Our node id, hex.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Takes what the runtime must do, in order.
    pub fn drain(&mut self) -> Vec<Out> {
        std::mem::take(&mut self.out)
    }

    /// What the node's workers serve now (from their announcements). Changes the manifest's
    /// `supported_tasks`; peers get the new manifest with their next connection.
    pub fn set_offers(&mut self, mut offers: Vec<Offer>) {
        offers.sort();
        offers.dedup();
        self.offers = offers;
    }

    /// What the node's workers serve.
    pub fn offers(&self) -> &[Offer] {
        &self.offers
    }

    /// Our manifest: our limits, and one task template per offered (task kind, model), in the
    /// order of the offers (sorted). Offers for any model advertise the kind without params. No
    /// offers: no `supported_tasks` (a requester-only node advertises none; see the notes on
    /// the reference checking the requester's templates).
    pub fn manifest(&self) -> Manifest {
        let l = &self.cfg.limits;
        let tasks: Vec<TaskTemplate> = self
            .offers
            .iter()
            .map(|o| TaskTemplate {
                task_kind: o.task_kind.clone(),
                params_template: o
                    .model
                    .as_ref()
                    .and_then(|m| crate::wire::lcp::Params::with_model(m.clone()).encode().ok()),
                extra: Vec::new(),
            })
            .collect();
        Manifest {
            protocol_version: v02::PROTOCOL_VERSION,
            max_payload_bytes: l.max_payload_bytes,
            supported_tasks: (!tasks.is_empty()).then_some(tasks),
            max_stream_bytes: l.max_stream_bytes,
            max_job_bytes: l.max_job_bytes,
            max_inflight_jobs: Some(l.max_inflight_jobs),
            extra: Vec::new(),
        }
    }

    /// Sends our (changed) manifest to every peer that has sent theirs; peers keep the latest.
    /// Marked as needing no answer: we hold theirs.
    pub fn announce_manifest(&mut self) {
        let peers: Vec<String> = self.peers.ready().into_iter().map(|(p, _)| p).collect();
        for p in peers {
            self.send_manifest(&p, true);
        }
    }

    /// The peer's manifest as peerd kept it from this connection before lcpd started: held as
    /// if received (see [`Peers::restore`]). Call after [`Engine::peer_connected`] of the
    /// connection lcpd adopted at start.
    pub fn restore_manifest(&mut self, now: u64, peer: &str, m: Manifest) {
        self.peers.restore(peer, m);
        self.provider_peer_ready(now, peer);
        self.requester_peer_ready(now, peer);
    }

    /// We lack the manifest of `peer`, which speaks LCP: cycles its connection (at most once per
    /// [`peers::CYCLE_INTERVAL_SECS`]). Returns whether a cycle was asked for.
    fn cycle_without_manifest(&mut self, now: u64, peer: &str, why: &str) -> bool {
        if !self.peers.should_cycle(now, peer) {
            return false;
        }
        tracing::info!(target: "lcpd", %peer, "no LCP manifest from this peer on its connection ({why}): cycling the connection");
        let reason = format!("no LCP manifest from the peer on this connection ({why})");
        self.out.push(Out::Reconnect { peer: peer.to_string(), reason });
        true
    }

    /// Peers whose manifest we hold, sorted by node id.
    pub fn lcp_peers(&self) -> Vec<(String, Manifest)> {
        self.peers.ready()
    }

    /// The manifest of `peer`, if it sent one on its current connection.
    pub fn remote_manifest(&self, peer: &str) -> Option<&Manifest> {
        self.peers.remote(peer)
    }

    /// A peer finished its init exchange: send our manifest.
    pub fn peer_connected(&mut self, now: u64, peer: &str) {
        self.peers.connected(now, peer);
        if self.peers.mark_sent(peer) {
            self.send_manifest(peer, false);
        }
    }

    /// A peer's connection ended.
    pub fn peer_disconnected(&mut self, _now: u64, peer: &str) {
        self.peers.disconnected(peer);
        self.provider_peer_gone(peer);
        self.requester_peer_gone(peer);
    }

    /// A message from a peer (already decoded; undecodable ones are dropped by the runtime).
    pub fn on_message(&mut self, now: u64, peer: &str, msg: LcpMessage) {
        self.replay.prune(now);
        match msg {
            LcpMessage::Manifest(m) => self.on_manifest(now, peer, m),
            LcpMessage::QuoteRequest(m) => self.on_quote_request(now, peer, m),
            LcpMessage::QuoteResponse(m) => self.on_quote_response(now, peer, m),
            LcpMessage::Result(m) => self.on_result(now, peer, m),
            LcpMessage::StreamBegin(m) => {
                if m.stream_kind == crate::wire::lcp::StreamKind::Result {
                    self.on_result_begin(now, peer, m)
                } else {
                    self.on_input_begin(now, peer, m)
                }
            }
            LcpMessage::StreamChunk(m) => {
                if !self.on_result_chunk(now, peer, &m) {
                    self.on_input_chunk(now, peer, m)
                }
            }
            LcpMessage::StreamEnd(m) => {
                if !self.on_result_end(now, peer, &m) {
                    self.on_input_end(now, peer, m)
                }
            }
            LcpMessage::Cancel(m) => self.on_cancel(now, peer, m),
            LcpMessage::Error(m) => {
                if !self.on_requester_error(now, peer, &m) {
                    self.on_provider_error(now, peer, &m)
                }
            }
        }
    }

    /// Periodic housekeeping: quote expiry, requester deadlines, dispatch retries, eviction.
    pub fn tick(&mut self, now: u64) {
        self.replay.prune(now);
        self.provider_tick(now);
        self.requester_tick(now);
    }

    fn on_manifest(&mut self, now: u64, peer: &str, m: Manifest) {
        let reply = self.peers.on_manifest(peer, m);
        if reply {
            self.send_manifest(peer, true);
        }
        self.provider_peer_ready(now, peer);
        self.requester_peer_ready(now, peer);
    }

    /// Sends our manifest; `answer`: marked as needing no answer (see [`peers`]).
    fn send_manifest(&mut self, peer: &str, answer: bool) {
        let mut m = self.manifest();
        if answer {
            m.extra.push(crate::wire::tlv::UnknownTlv { tlv_type: v02::TLV_MANIFEST_NO_REPLY, value: Vec::new() });
        } else if self.peers.remote(peer).is_none() {
            m.extra.push(crate::wire::tlv::UnknownTlv { tlv_type: v02::TLV_MANIFEST_WANT_REPLY, value: Vec::new() });
        }
        let msg = LcpMessage::Manifest(m);
        self.out.push(Out::Send { peer: peer.to_string(), msg });
    }

    fn envelope(&mut self, protocol_version: u16, job_id: [u8; 32], expiry: u64) -> Envelope {
        Envelope { protocol_version, job_id, msg_id: self.rng.gen(), expiry }
    }

    fn random32(&mut self) -> [u8; 32] {
        self.rng.gen()
    }

    fn send(&mut self, peer: &str, msg: LcpMessage) {
        self.out.push(Out::Send { peer: peer.to_string(), msg });
    }
}

#[cfg(test)]
mod tests;
