//! Compute backends: the [`ComputeBackend`] trait jobd runs paid jobs through, its error type
//! with the LCP error-code mapping, and three implementations:
//!
//! * [`deterministic::DeterministicBackend`]: fixed output or echo, small SSE stream on request
//!   (tests and demos);
//! * [`openai::OpenAiBackend`]: byte-exact passthrough to an OpenAI-compatible HTTP upstream,
//!   SSE forwarded as it arrives;
//! * [`exec::ExecBackend`]: a configured local command per task kind, stdin in, stdout out,
//!   under resource limits.
//!
//! [`conformance`] holds the checks every implementation must pass.

pub mod conformance;
pub mod deterministic;
pub mod exec;
pub mod openai;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::jobd::pricing::{PriceQuote, Pricer, PricingError};

pub use crate::jobd::pricing::{TASK_KIND_CHAT_COMPLETIONS, TASK_KIND_RESPONSES};

/// Result content type of a non-streamed OpenAI job.
pub const CONTENT_TYPE_JSON: &str = "application/json; charset=utf-8";
/// Result content type of a streamed (SSE) job.
pub const CONTENT_TYPE_SSE: &str = "text/event-stream; charset=utf-8";
/// The only content encoding LCP v0.2 defines.
pub const CONTENT_ENCODING_IDENTITY: &str = "identity";
/// Most upstream error body bytes carried in a [`ComputeError`].
pub const MAX_ERROR_BODY_BYTES: usize = 1024;

/// LCP `lcp_error.code` values (LCP v0.2 section 5) that backends map to.
pub mod error_code {
    /// `unsupported_task`.
    pub const UNSUPPORTED_TASK: u16 = 2;
    /// `payment_invalid` (also the reference's code for unclassified backend errors).
    pub const PAYMENT_INVALID: u16 = 5;
    /// `rate_limited` (also used for an unavailable upstream and price overflow).
    pub const RATE_LIMITED: u16 = 7;
    /// `unsupported_params`.
    pub const UNSUPPORTED_PARAMS: u16 = 8;
}

/// One (task kind, model) pair a backend serves. The manifest's `supported_tasks` are built
/// from these (params template = the standard params TLV with this model).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskOffer {
    /// LCP task kind, e.g. `openai.chat_completions.v1`.
    pub task_kind: String,
    /// Model id, as carried in the params TLV `model`.
    pub model: String,
}

/// A job as the backend sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// LCP task kind.
    pub task_kind: String,
    /// Model from the quote request's params.
    pub model: String,
    /// Decoded input stream bytes (for the OpenAI kinds: the exact HTTP request body).
    pub input: Bytes,
    /// Content type of the input stream.
    pub input_content_type: String,
    /// Whether the request asked for a streamed result (`"stream": true` in the JSON input).
    pub stream: bool,
    /// Optional per-job cap on result bytes (for example the requester's `max_stream_bytes`);
    /// the backend enforces the smaller of this and its own cap.
    pub max_output_bytes: Option<u64>,
}

impl JobSpec {
    /// Builds a spec, reading `stream` from the input when it is a JSON object with
    /// `"stream": true` (anything else, including non-JSON input, means not streamed).
    pub fn new(
        task_kind: impl Into<String>,
        model: impl Into<String>,
        input: Bytes,
        input_content_type: impl Into<String>,
    ) -> Self {
        let stream = serde_json::from_slice::<serde_json::Value>(&input)
            .ok()
            .and_then(|v| v.get("stream").and_then(serde_json::Value::as_bool))
            .unwrap_or(false);
        JobSpec {
            task_kind: task_kind.into(),
            model: model.into(),
            input,
            input_content_type: input_content_type.into(),
            stream,
            max_output_bytes: None,
        }
    }

    /// Returns the offer this job asks for.
    pub fn offer(&self) -> TaskOffer {
        TaskOffer { task_kind: self.task_kind.clone(), model: self.model.clone() }
    }
}

/// Metadata of a finished job; the bytes themselves went through the result channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    /// Result content type (`lcp_stream_begin.content_type` and `lcp_result.result_content_type`).
    pub content_type: String,
    /// Result content encoding (always `identity`).
    pub content_encoding: String,
    /// Total result bytes sent.
    pub len: u64,
    /// SHA-256 of all result bytes sent, in order.
    pub sha256: [u8; 32],
}

/// Errors of compute backends.
#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    /// The backend does not serve this task kind.
    #[error("unsupported task_kind {task_kind:?}")]
    UnsupportedTaskKind {
        /// The task kind asked for.
        task_kind: String,
    },
    /// The backend serves the task kind but not this model.
    #[error("unsupported model: {model:?} (supported: {supported})")]
    UnsupportedModel {
        /// The model asked for.
        model: String,
        /// Comma-separated models offered for the task kind.
        supported: String,
    },
    /// The job itself is malformed (missing model, empty input, ...).
    #[error("invalid task: {0}")]
    InvalidTask(String),
    /// Pricing or request validation failed.
    #[error(transparent)]
    Pricing(#[from] PricingError),
    /// The upstream answered with a non-2xx HTTP status.
    #[error("upstream http {status}: {body}")]
    UpstreamStatus {
        /// HTTP status code.
        status: u16,
        /// Up to [`MAX_ERROR_BODY_BYTES`] of the upstream body (lossy UTF-8, trimmed).
        body: String,
    },
    /// The upstream could not be reached or the connection failed mid-response.
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// A time limit expired.
    #[error("{what} timed out after {limit:?}")]
    Timeout {
        /// Which limit (`upstream request`, `wall clock`, ...).
        what: &'static str,
        /// The limit.
        limit: Duration,
    },
    /// The upstream returned an empty body.
    #[error("upstream returned an empty response")]
    EmptyOutput,
    /// The result exceeded the output cap; no more bytes were sent.
    #[error("result exceeds {limit} bytes")]
    OutputTooLarge {
        /// The cap that was hit.
        limit: u64,
    },
    /// The local process failed (non-zero exit, killed by a signal or a resource limit).
    #[error("process failed: {status}; stderr: {stderr}")]
    ProcessFailed {
        /// Exit status in words.
        status: String,
        /// Up to [`MAX_ERROR_BODY_BYTES`] of its stderr (lossy UTF-8, trimmed).
        stderr: String,
    },
    /// The local process could not be started or driven.
    #[error("process error: {0}")]
    Process(String),
    /// The job was cancelled through its token.
    #[error("job cancelled")]
    Cancelled,
    /// The result receiver was dropped before the job finished.
    #[error("result receiver closed")]
    ReceiverClosed,
    /// The backend configuration is unusable.
    #[error("invalid backend config: {field}: {reason}")]
    Config {
        /// Config field at fault.
        field: String,
        /// Why it is rejected.
        reason: String,
    },
}

impl ComputeError {
    /// The `lcp_error.code` the reference provider sends for this error (LCP v0.2 section 4.3,
    /// job runner step 6): unsupported kind/model -> 2; invalid task / upstream HTTP 400 -> 8;
    /// upstream 401/403 -> 5; upstream 429/5xx/other statuses, network, timeout, empty body,
    /// too large -> 7; pricing errors -> their own code; anything else -> 5.
    ///
    /// [`ComputeError::Cancelled`] maps to 5 for completeness only: the reference sends nothing
    /// when a requester cancels.
    pub fn lcp_error_code(&self) -> u16 {
        use error_code::*;
        match self {
            ComputeError::UnsupportedTaskKind { .. } | ComputeError::UnsupportedModel { .. } => UNSUPPORTED_TASK,
            ComputeError::InvalidTask(_) => UNSUPPORTED_PARAMS,
            ComputeError::Pricing(e) => e.lcp_error_code(),
            ComputeError::UpstreamStatus { status, .. } => match status {
                400 => UNSUPPORTED_PARAMS,
                401 | 403 => PAYMENT_INVALID,
                // The reference maps 429, 5xx and every other status to "unavailable".
                _ => RATE_LIMITED,
            },
            ComputeError::Unavailable(_)
            | ComputeError::Timeout { .. }
            | ComputeError::EmptyOutput
            | ComputeError::OutputTooLarge { .. } => RATE_LIMITED,
            ComputeError::ProcessFailed { .. }
            | ComputeError::Process(_)
            | ComputeError::Cancelled
            | ComputeError::ReceiverClosed
            | ComputeError::Config { .. } => PAYMENT_INVALID,
        }
    }

    pub(crate) fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ComputeError::Config { field: field.into(), reason: reason.into() }
    }
}

/// Truncates `raw` to [`MAX_ERROR_BODY_BYTES`] bytes (on a character boundary of its lossy
/// UTF-8 form, marking the cut with `…`) and trims surrounding whitespace.
pub fn error_body_text(raw: &[u8]) -> String {
    let cut = raw.len() > MAX_ERROR_BODY_BYTES;
    let head = &raw[..raw.len().min(MAX_ERROR_BODY_BYTES)];
    let mut text = String::from_utf8_lossy(head).trim().to_owned();
    if cut {
        // A multi-byte character split by the cut became U+FFFD; drop it.
        if text.ends_with('\u{FFFD}') {
            text.pop();
        }
        text.push('…');
    }
    text
}

/// A compute backend: runs paid jobs of the task kinds and models it offers.
///
/// Contract (every implementation, checked by [`conformance`]):
///
/// * **Offers.** [`offers`](ComputeBackend::offers) lists every (task kind, model) pair the
///   backend serves now. It is fixed for the backend's lifetime, unless the backend follows
///   something outside it: then [`offer_updates`](ComputeBackend::offer_updates) returns a
///   receiver that changes with the offers (the first change after
///   [`follow`](ComputeBackend::follow) starts says they are known), and `follow`, which the
///   worker runs for the backend's lifetime, keeps them current (the openai backend probes its
///   upstream). A job whose task kind is not
///   offered fails with [`ComputeError::UnsupportedTaskKind`] (code 2), a job whose model is not
///   offered for that kind with [`ComputeError::UnsupportedModel`] (code 2), both in `quote` and
///   in `execute`.
/// * **Pricing.** [`quote`](ComputeBackend::quote) prices a job with the worker's
///   [`Pricer`] (the `approx.v1` estimator, price table, request rules and surge of
///   [`crate::jobd::pricing`]); it is synchronous, does no I/O and never starts work. Every offer quotes
///   successfully for a well-formed request. Quotes come from the worker that will run the job,
///   so surge reflects that worker's load.
/// * **Streaming.** [`execute`](ComputeBackend::execute) writes result bytes into the bounded
///   `out` channel and returns a [`JobOutcome`] whose `len` and `sha256` cover exactly the bytes
///   sent, in order. Streamed jobs (`spec.stream`) forward bytes as they arrive: the first bytes
///   reach the receiver without waiting for later ones. Non-streamed jobs send their whole
///   result as one chunk once it is complete and valid (the caller needs its length and hash
///   before the result stream begins). Empty chunks are never sent. A full channel applies
///   backpressure to the upstream or process.
/// * **Cancellation.** When `cancel` fires, the backend stops the upstream request (the
///   connection is closed) or kills the whole process group, and returns
///   [`ComputeError::Cancelled`] promptly, also while blocked on a full channel. If the receiver
///   is dropped the backend stops likewise and returns [`ComputeError::ReceiverClosed`].
/// * **Caps and timeouts.** Result bytes never exceed the smaller of the backend's cap and
///   `spec.max_output_bytes`; hitting it stops the job with
///   [`ComputeError::OutputTooLarge`] without sending the chunk that crossed it. Every backend
///   bounds a job's duration (HTTP request timeout, process wall clock) and reports
///   [`ComputeError::Timeout`].
/// * **Errors** carry at most [`MAX_ERROR_BODY_BYTES`] of upstream body or stderr and map to LCP
///   codes with [`ComputeError::lcp_error_code`].
///
/// Implementations are `Send + Sync` and are used as `Arc<dyn ComputeBackend>`; `execute` may
/// run concurrently for many jobs.
#[async_trait]
pub trait ComputeBackend: Send + Sync {
    /// Short name of the implementation (`deterministic`, `openai`, `exec`).
    fn name(&self) -> &'static str;

    /// Every (task kind, model) pair served now, sorted and without duplicates.
    fn offers(&self) -> Vec<TaskOffer>;

    /// For a backend whose offers change: a receiver of them (see the trait contract). `None`
    /// (the default): the offers are fixed.
    fn offer_updates(&self) -> Option<tokio::sync::watch::Receiver<Vec<TaskOffer>>> {
        None
    }

    /// Keeps the offers current until `stop` fires (a backend with fixed offers returns at once).
    async fn follow(&self, stop: CancellationToken) {
        let _ = stop;
    }

    /// Prices `job` (see the trait contract).
    fn quote(&self, job: &JobSpec) -> Result<PriceQuote, ComputeError>;

    /// The content type `execute` will report for `job`, known before its first byte so that
    /// the result stream can begin at once. The outcome's `content_type` must equal it.
    fn result_content_type(&self, job: &JobSpec) -> String {
        result_content_type(job, CONTENT_TYPE_JSON)
    }

    /// Runs `job`, writing result bytes to `out` (see the trait contract).
    async fn execute(
        &self,
        job: &JobSpec,
        out: mpsc::Sender<Bytes>,
        cancel: CancellationToken,
    ) -> Result<JobOutcome, ComputeError>;
}

/// Checks that `job` asks for one of `offers` (code 2 otherwise).
pub fn check_offered(offers: &[TaskOffer], job: &JobSpec) -> Result<(), ComputeError> {
    let mut kind_seen = false;
    let mut models = Vec::new();
    for offer in offers.iter().filter(|o| o.task_kind == job.task_kind) {
        kind_seen = true;
        if offer.model == job.model {
            return Ok(());
        }
        models.push(offer.model.as_str());
    }
    if !kind_seen {
        return Err(ComputeError::UnsupportedTaskKind { task_kind: job.task_kind.clone() });
    }
    Err(ComputeError::UnsupportedModel { model: job.model.clone(), supported: models.join(", ") })
}

/// The quote every backend gives: offer check, then the pricer.
pub fn quote_offered(offers: &[TaskOffer], pricer: &Pricer, job: &JobSpec) -> Result<PriceQuote, ComputeError> {
    check_offered(offers, job)?;
    Ok(pricer.quote(&job.task_kind, &job.model, &job.input)?)
}

/// Checks at construction that every offered model has a price (so offers and quotes agree).
pub fn check_offers_priced(offers: &[TaskOffer], pricer: &Pricer) -> Result<(), ComputeError> {
    for offer in offers {
        if offer.task_kind.is_empty() || offer.model.is_empty() {
            return Err(ComputeError::config("offers", "task kind and model must be non-empty"));
        }
        if !pricer.has_model(&offer.model) {
            return Err(ComputeError::config(
                format!("models.{:?}", offer.model),
                "offered model has no entry in the pricing table",
            ));
        }
    }
    Ok(())
}

/// Result content type of a job: SSE when streamed, else JSON for the OpenAI kinds and
/// `fallback` for other kinds.
pub fn result_content_type(job: &JobSpec, fallback: &str) -> String {
    if job.stream {
        CONTENT_TYPE_SSE.to_owned()
    } else if job.task_kind == TASK_KIND_CHAT_COMPLETIONS || job.task_kind == TASK_KIND_RESPONSES {
        CONTENT_TYPE_JSON.to_owned()
    } else {
        fallback.to_owned()
    }
}

/// Writes result chunks to the channel while counting, hashing and capping them, and stopping
/// on cancellation. Backends (including ones written elsewhere) use it to keep the contract.
#[derive(Debug)]
pub struct ResultSink {
    out: mpsc::Sender<Bytes>,
    cancel: CancellationToken,
    cap: u64,
    len: u64,
    hasher: Sha256,
}

impl ResultSink {
    /// A sink capped at `min(backend_cap, job.max_output_bytes)`.
    pub fn new(out: mpsc::Sender<Bytes>, cancel: CancellationToken, backend_cap: u64, job: &JobSpec) -> Self {
        let cap = job.max_output_bytes.map_or(backend_cap, |c| c.min(backend_cap));
        ResultSink { out, cancel, cap, len: 0, hasher: Sha256::new() }
    }

    /// The effective cap in bytes.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Bytes sent so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was sent yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Fails with [`ComputeError::OutputTooLarge`] if `more` bytes would cross the cap.
    pub fn check_room(&self, already: u64, more: usize) -> Result<(), ComputeError> {
        let total = already.saturating_add(more as u64);
        if total > self.cap {
            return Err(ComputeError::OutputTooLarge { limit: self.cap });
        }
        Ok(())
    }

    /// Sends one chunk (skipped when empty), waiting for channel room unless cancelled.
    pub async fn send(&mut self, chunk: Bytes) -> Result<(), ComputeError> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.check_room(self.len, chunk.len())?;
        if self.cancel.is_cancelled() {
            return Err(ComputeError::Cancelled);
        }
        let sent = chunk.clone();
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => return Err(ComputeError::Cancelled),
            res = self.out.send(chunk) => res.map_err(|_| ComputeError::ReceiverClosed)?,
        }
        self.hasher.update(&sent);
        self.len += sent.len() as u64;
        Ok(())
    }

    /// Finishes the job with the given result content type.
    pub fn finish(self, content_type: String) -> JobOutcome {
        JobOutcome {
            content_type,
            content_encoding: CONTENT_ENCODING_IDENTITY.to_owned(),
            len: self.len,
            sha256: self.hasher.finalize().into(),
        }
    }
}

/// Configuration of one backend, tagged by `kind` (for the jobd config file):
///
/// ```toml
/// [backend]
/// kind = "openai"          # or "deterministic", "exec"
/// api_key = "sk-..."
/// models = ["gpt-5.2"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum BackendConfig {
    /// [`deterministic::DeterministicBackend`].
    Deterministic(deterministic::DeterministicConfig),
    /// [`openai::OpenAiBackend`].
    Openai(openai::OpenAiConfig),
    /// [`exec::ExecBackend`].
    Exec(exec::ExecConfig),
}

/// Builds the configured backend on top of the worker's pricer.
pub fn build_backend(config: &BackendConfig, pricer: Arc<Pricer>) -> Result<Arc<dyn ComputeBackend>, ComputeError> {
    Ok(match config {
        BackendConfig::Deterministic(c) => Arc::new(deterministic::DeterministicBackend::new(c, pricer)?),
        BackendConfig::Openai(c) => Arc::new(openai::OpenAiBackend::new(c, pricer)?),
        BackendConfig::Exec(c) => Arc::new(exec::ExecBackend::new(c, pricer)?),
    })
}

/// Offers of `models` for both OpenAI task kinds, sorted.
pub fn openai_offers(models: &[String]) -> Vec<TaskOffer> {
    let mut offers: Vec<TaskOffer> = models
        .iter()
        .flat_map(|m| {
            [TASK_KIND_CHAT_COMPLETIONS, TASK_KIND_RESPONSES]
                .map(|k| TaskOffer { task_kind: k.to_owned(), model: m.clone() })
        })
        .collect();
    offers.sort();
    offers.dedup();
    offers
}

/// Default model list of backends: the models of the pricing table.
pub(crate) fn priced_models(pricer: &Pricer) -> Vec<String> {
    pricer.models().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(kind: &str, model: &str) -> JobSpec {
        JobSpec::new(kind, model, Bytes::from_static(b"{}"), CONTENT_TYPE_JSON)
    }

    #[test]
    fn error_codes_follow_reference_table() {
        let status = |s| ComputeError::UpstreamStatus { status: s, body: String::new() };
        assert_eq!(status(400).lcp_error_code(), 8);
        assert_eq!(status(401).lcp_error_code(), 5);
        assert_eq!(status(403).lcp_error_code(), 5);
        assert_eq!(status(429).lcp_error_code(), 7);
        assert_eq!(status(500).lcp_error_code(), 7);
        assert_eq!(status(503).lcp_error_code(), 7);
        assert_eq!(status(404).lcp_error_code(), 7);
        assert_eq!(ComputeError::UnsupportedTaskKind { task_kind: "x".into() }.lcp_error_code(), 2);
        assert_eq!(ComputeError::InvalidTask("x".into()).lcp_error_code(), 8);
        assert_eq!(ComputeError::Unavailable("x".into()).lcp_error_code(), 7);
        assert_eq!(ComputeError::EmptyOutput.lcp_error_code(), 7);
        assert_eq!(ComputeError::OutputTooLarge { limit: 1 }.lcp_error_code(), 7);
        assert_eq!(ComputeError::Timeout { what: "x", limit: Duration::from_secs(1) }.lcp_error_code(), 7);
        assert_eq!(ComputeError::ProcessFailed { status: "exit 1".into(), stderr: String::new() }.lcp_error_code(), 5);
        assert_eq!(ComputeError::from(PricingError::Overflow { what: "x" }).lcp_error_code(), 7);
    }

    #[test]
    fn error_body_is_capped_at_1024_bytes() {
        let long = "é".repeat(1000); // 2000 bytes
        let text = error_body_text(long.as_bytes());
        assert!(text.ends_with('…'));
        assert!(text.len() <= MAX_ERROR_BODY_BYTES + '…'.len_utf8());
        assert!(!text.contains('\u{FFFD}'));
        assert_eq!(error_body_text(b"  short \n"), "short");
    }

    #[test]
    fn offer_check_distinguishes_kind_and_model() {
        let offers = openai_offers(&["a".into(), "b".into()]);
        assert_eq!(offers.len(), 4);
        assert!(check_offered(&offers, &job(TASK_KIND_RESPONSES, "b")).is_ok());
        match check_offered(&offers, &job("llm.chat", "a")) {
            Err(ComputeError::UnsupportedTaskKind { task_kind }) => {
                assert_eq!(task_kind, "llm.chat")
            }
            other => panic!("unexpected {other:?}"),
        }
        match check_offered(&offers, &job(TASK_KIND_CHAT_COMPLETIONS, "z")) {
            Err(e @ ComputeError::UnsupportedModel { .. }) => {
                assert_eq!(e.to_string(), "unsupported model: \"z\" (supported: a, b)");
                assert_eq!(e.lcp_error_code(), 2);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn job_spec_reads_stream_flag() {
        let streamed =
            JobSpec::new(TASK_KIND_CHAT_COMPLETIONS, "m", Bytes::from_static(br#"{"stream":true}"#), CONTENT_TYPE_JSON);
        assert!(streamed.stream);
        for body in [&br#"{"stream":false}"#[..], b"{}", b"not json", br#"{"stream":"true"}"#] {
            let spec = JobSpec::new("k", "m", Bytes::copy_from_slice(body), CONTENT_TYPE_JSON);
            assert!(!spec.stream);
        }
    }

    #[tokio::test]
    async fn sink_counts_hashes_caps_and_cancels() {
        let (tx, mut rx) = mpsc::channel(1);
        let cancel = CancellationToken::new();
        let mut spec = job("k", "m");
        spec.max_output_bytes = Some(5);
        let mut sink = ResultSink::new(tx, cancel.clone(), 100, &spec);
        assert_eq!(sink.cap(), 5);
        sink.send(Bytes::from_static(b"abc")).await.expect("room");
        sink.send(Bytes::new()).await.expect("empty is skipped");
        assert_eq!(rx.recv().await.as_deref(), Some(&b"abc"[..]));
        match sink.send(Bytes::from_static(b"def")).await {
            Err(ComputeError::OutputTooLarge { limit: 5 }) => {}
            other => panic!("unexpected {other:?}"),
        }
        // Fill the channel, then a blocked send must end on cancel.
        sink.send(Bytes::from_static(b"d")).await.expect("room");
        let blocked = sink.send(Bytes::from_static(b"e"));
        cancel.cancel();
        assert!(matches!(blocked.await, Err(ComputeError::Cancelled)));
        let outcome = sink.finish(CONTENT_TYPE_JSON.into());
        // Only delivered bytes count.
        assert_eq!(outcome.len, 4);
        assert_eq!(outcome.sha256, <[u8; 32]>::from(Sha256::digest(b"abcd")));
    }

    #[test]
    fn backend_config_parses_from_toml() {
        let c: BackendConfig =
            toml::from_str("kind = \"deterministic\"\noutput = \"hello\"\nmodels = [\"gpt-5.2\"]").expect("parses");
        assert!(matches!(c, BackendConfig::Deterministic(_)));
        assert!(toml::from_str::<BackendConfig>("kind = \"nope\"").is_err());
    }
}
