//! The OpenAI-compatible backend: forwards the exact request body of
//! `openai.chat_completions.v1` to `{base}/chat/completions` and of `openai.responses.v1` to
//! `{base}/responses`, and returns the upstream body byte for byte; SSE (`"stream": true`) is
//! forwarded as it arrives.
//!
//! Behaviour follows the reference backend: base URL default `https://api.openai.com/v1`,
//! trailing `/` removed and `/v1` appended when missing; headers `Authorization: Bearer <key>`,
//! `Content-Type: application/json; charset=utf-8`, `Accept: */*`; a response cap (default
//! 16 MiB); non-2xx statuses carry up to 1024 bytes of the upstream body.
//!
//! Time limits bound silence, not length (the reference bounds the whole request, which cuts any
//! healthy generation longer than the limit): the upstream's response headers and first body byte
//! must come within `first_byte_timeout_secs`, then each further body chunk within
//! `idle_timeout_secs` of the one before. There is no cap on the whole request: its length is
//! bounded by the response cap and the job's output limit, and a stalled one by the idle bound.
//!
//! What is offered follows the upstream: at start, and again whenever it was unreachable,
//! [`OpenAiBackend::follow_upstream`] probes it ([`probe`](OpenAiBackend::probe): `GET /models`
//! and a deliberately invalid `POST` to each endpoint, see [`classify_endpoint`]) and offers only
//! the (task kind, model) pairs the upstream serves; an upstream that cannot be reached (or
//! refuses the key, or answers 502/503/504) makes the worker offer nothing until a probe passes
//! again (backoff 1 s doubling to 60 s). A job whose request cannot connect marks the upstream
//! down at once and wakes the prober.
//!
//! HTTP client: hyper 1 through hyper-util's pooled client, TLS by rustls with the `ring`
//! provider (no cmake/aws-lc build) and the Mozilla root store from `webpki-roots` (works in
//! minimal containers without a system CA bundle), plus optional extra roots from a PEM file
//! for private upstreams; HTTP/1.1 and HTTP/2 (ALPN). Plain `http://` is allowed for local
//! upstreams.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

use super::{
    check_offered, check_offers_priced, error_body_text, priced_models, quote_offered, result_content_type,
    ComputeBackend, ComputeError, JobOutcome, JobSpec, ResultSink, TaskOffer, CONTENT_TYPE_JSON, MAX_ERROR_BODY_BYTES,
    TASK_KIND_CHAT_COMPLETIONS, TASK_KIND_RESPONSES,
};
use crate::jobd::pricing::{PriceQuote, Pricer};

/// Default upstream base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// Default time for the upstream's response headers and first body byte (a model may think long
/// before its first token).
pub const DEFAULT_FIRST_BYTE_TIMEOUT_SECS: u64 = 120;
/// Default longest silence between two body chunks once the body has started.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
/// Default TCP/TLS connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 10;
/// Default cap of an upstream response body (16 MiB, the reference's value).
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;
/// The task kinds offered by default: both.
pub const DEFAULT_TASK_KINDS: [&str; 2] = [TASK_KIND_CHAT_COMPLETIONS, TASK_KIND_RESPONSES];
/// Body of the endpoint probes: invalid on purpose (`model`, `messages` and `input` of the wrong
/// type), so that an endpoint that exists rejects it (400/422, llama-cpp-python 500) without
/// running inference or charging, and one that does not exist answers 404/405 from its router
/// before looking at the body. Not `{}`: llama-cpp-python fills in defaults for a body without
/// fields and runs a generation (checked against its server, 0.3.36).
pub const PROBE_BODY: &[u8] = br#"{"model":0,"messages":0,"input":0}"#;
/// First wait before probing a down upstream again; it doubles up to [`PROBE_BACKOFF_MAX`].
pub const PROBE_BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest wait between probes of a down upstream.
pub const PROBE_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How often an upstream that is up is probed again (it may have gone away with no job to
/// notice, or changed what it serves).
pub const PROBE_RECHECK: Duration = Duration::from_secs(60);
/// Cap of the `/models` answer read by a probe.
pub const MAX_MODELS_BYTES: usize = 1024 * 1024;
/// Log target of the probe.
const TARGET: &str = "jobd";

/// The HTTP client type shared by the backend and anything that must talk to an upstream the
/// same way (benchmarks compare against it).
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Configuration of [`OpenAiBackend`]. `Debug` hides the API key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiConfig {
    /// Upstream base URL (`/v1` is appended when missing).
    pub base_url: String,
    /// API key sent as `Authorization: Bearer <key>`. Required for OpenAI's own API (as in the
    /// reference); a local server (llama.cpp, Ollama, vLLM) that wants none may go without, and
    /// then no `Authorization` header is sent.
    pub api_key: String,
    /// Models offered for each of `task_kinds`; empty = every model of the pricing table.
    pub models: Vec<String>,
    /// Task kinds offered (`openai.chat_completions.v1`, `openai.responses.v1`; default both).
    /// The upstream probe can only remove kinds from this list.
    pub task_kinds: Vec<String>,
    /// Time for the response headers and the first body byte, in seconds (> 0). The former
    /// `request_timeout_secs` (a bound on the whole request) is read as this.
    #[serde(alias = "request_timeout_secs")]
    pub first_byte_timeout_secs: u64,
    /// Longest silence between two body chunks after the first, in seconds (> 0).
    pub idle_timeout_secs: u64,
    /// Connect timeout in seconds (> 0).
    pub connect_timeout_secs: u64,
    /// Response body cap in bytes (> 0).
    pub max_response_bytes: u64,
    /// PEM file of extra trusted root certificates (for a private upstream); the Mozilla roots
    /// stay trusted.
    pub ca_file: Option<PathBuf>,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: String::new(),
            models: Vec::new(),
            task_kinds: DEFAULT_TASK_KINDS.map(str::to_owned).to_vec(),
            first_byte_timeout_secs: DEFAULT_FIRST_BYTE_TIMEOUT_SECS,
            idle_timeout_secs: DEFAULT_IDLE_TIMEOUT_SECS,
            connect_timeout_secs: DEFAULT_CONNECT_TIMEOUT_SECS,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            ca_file: None,
        }
    }
}

impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("models", &self.models)
            .field("task_kinds", &self.task_kinds)
            .field("first_byte_timeout_secs", &self.first_byte_timeout_secs)
            .field("idle_timeout_secs", &self.idle_timeout_secs)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// The reference's base URL rule: trim spaces, default when empty, drop trailing `/`, append
/// `/v1` unless the URL already ends with it.
pub fn normalize_base_url(raw: &str) -> String {
    let trimmed = raw.trim();
    let base = if trimmed.is_empty() { DEFAULT_BASE_URL } else { trimmed };
    let mut base = base.trim_end_matches('/').to_owned();
    if !base.ends_with("/v1") {
        base.push_str("/v1");
    }
    base
}

/// Reads every certificate of a PEM file (at least one).
pub fn load_pem_certificates(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, ComputeError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ComputeError::config("ca_file", format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ComputeError::config("ca_file", format!("{} holds no certificate", path.display())));
    }
    Ok(certs)
}

/// Builds the HTTP client: rustls with `ring`, the webpki roots plus `extra_roots`,
/// HTTP/1.1 + HTTP/2, `http` and `https`, TCP_NODELAY, the given connect timeout.
pub fn build_http_client(
    connect_timeout: Duration,
    extra_roots: Vec<CertificateDer<'static>>,
) -> Result<HttpClient, ComputeError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    for cert in extra_roots {
        roots.add(cert).map_err(|e| ComputeError::config("ca_file", format!("unusable root: {e}")))?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| ComputeError::config("tls", e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// OpenAI-compatible passthrough backend (see the module docs).
pub struct OpenAiBackend {
    client: HttpClient,
    models_uri: Uri,
    chat_uri: Uri,
    responses_uri: Uri,
    auth: Option<HeaderValue>,
    /// What the operator configured: the most this backend ever offers.
    configured: Vec<TaskOffer>,
    /// What it offers now: `configured` until a probe says otherwise.
    live: watch::Sender<Vec<TaskOffer>>,
    /// Set while [`OpenAiBackend::follow_upstream`] runs: only then does a failed connection
    /// withdraw the offers (someone will probe them back).
    followed: AtomicBool,
    /// Wakes the prober (a job could not connect).
    wake: Notify,
    probe_timeout: Duration,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
    max_response_bytes: u64,
    pricer: Arc<Pricer>,
}

impl std::fmt::Debug for OpenAiBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiBackend")
            .field("chat_uri", &self.chat_uri)
            .field("responses_uri", &self.responses_uri)
            .field("offers", &*self.live.borrow())
            .finish_non_exhaustive()
    }
}

/// How an endpoint answered the probe's invalid body ([`PROBE_BODY`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointProbe {
    /// The endpoint exists (it rejected the body, or even accepted it).
    Present,
    /// The upstream has no such endpoint.
    Missing,
    /// The upstream refuses our key (401/403): nothing can be sold through it.
    Refused(String),
    /// The upstream is not ready (502/503/504: a proxy without a backend, a model loading).
    Unavailable(String),
}

/// Classifies the status an endpoint answered [`PROBE_BODY`] with. Every server routes before
/// it reads a body, so the status says whether the route exists:
///
/// * 404, 405 (no such route/method), 501 and redirects (the endpoint is not at this URL):
///   missing. llama-cpp-python and older llama.cpp and Ollama answer `/v1/responses` with 404.
/// * 401, 403: our key is refused; 502, 503, 504: not ready (llama.cpp answers 503 while its
///   model loads; a proxy answers 502/504 when the server behind it is gone).
/// * Anything else means the route exists: OpenAI and Ollama answer 400 (fields of the wrong
///   type), llama.cpp's server 400, vLLM 422, llama-cpp-python 500 (its validation errors); 429
///   is a rate limit on an existing route, 2xx a lenient one.
pub fn classify_endpoint(status: u16) -> EndpointProbe {
    match status {
        404 | 405 | 501 | 300..=399 => EndpointProbe::Missing,
        401 | 403 => EndpointProbe::Refused(format!("the upstream refuses the API key (http {status})")),
        502..=504 => EndpointProbe::Unavailable(format!("the upstream is not ready (http {status})")),
        _ => EndpointProbe::Present,
    }
}

/// What `GET /models` said about the models served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelsProbe {
    /// These model ids are served.
    Listed(BTreeSet<String>),
    /// No usable list (404, an empty list, an unreadable body): models are not restricted.
    Unrestricted,
    /// The key is refused (401/403).
    Refused(String),
    /// Not ready (502/503/504).
    Unavailable(String),
}

/// Classifies the answer to `GET /models`: a 2xx OpenAI list (`{"data":[{"id":...}]}`) with at
/// least one id restricts the models; 401/403 refuse, 502/503/504 are not ready; anything
/// else (some servers have no `/models`) does not restrict.
pub fn classify_models(status: u16, body: &[u8]) -> ModelsProbe {
    #[derive(Deserialize)]
    struct Model {
        id: String,
    }
    #[derive(Deserialize)]
    struct List {
        data: Vec<Model>,
    }
    match status {
        200..=299 => {
            let ids: BTreeSet<String> = serde_json::from_slice::<List>(body)
                .map(|l| l.data.into_iter().map(|m| m.id).filter(|id| !id.is_empty()).collect())
                .unwrap_or_default();
            if ids.is_empty() {
                ModelsProbe::Unrestricted
            } else {
                ModelsProbe::Listed(ids)
            }
        }
        401 | 403 => ModelsProbe::Refused(format!("the upstream refuses the API key (http {status})")),
        502..=504 => ModelsProbe::Unavailable(format!("the upstream is not ready (http {status})")),
        _ => ModelsProbe::Unrestricted,
    }
}

/// Whether `model` is among `listed`; a model without a tag also matches its `:latest` (Ollama
/// lists `llama3.2:latest` and serves it as `llama3.2`).
pub fn model_listed(listed: &BTreeSet<String>, model: &str) -> bool {
    listed.contains(model) || (!model.contains(':') && listed.contains(&format!("{model}:latest")))
}

/// What a probe of the upstream found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The upstream answers; these configured offers it serves (possibly none).
    Up(Vec<TaskOffer>),
    /// Nothing can be sold through it now, and why.
    Down(String),
}

/// The configured offers the upstream serves, from the classified probe answers (`endpoint`
/// gives the answer of each configured task kind's endpoint).
pub fn served_offers(
    configured: &[TaskOffer],
    models: &ModelsProbe,
    endpoint: impl Fn(&str) -> EndpointProbe,
) -> ProbeOutcome {
    let listed = match models {
        ModelsProbe::Refused(why) | ModelsProbe::Unavailable(why) => return ProbeOutcome::Down(why.clone()),
        ModelsProbe::Listed(ids) => Some(ids),
        ModelsProbe::Unrestricted => None,
    };
    let kinds: BTreeSet<&str> = configured.iter().map(|o| o.task_kind.as_str()).collect();
    let mut present = BTreeSet::new();
    for kind in kinds {
        match endpoint(kind) {
            EndpointProbe::Present => {
                present.insert(kind);
            }
            EndpointProbe::Missing => {}
            EndpointProbe::Refused(why) | EndpointProbe::Unavailable(why) => return ProbeOutcome::Down(why),
        }
    }
    ProbeOutcome::Up(
        configured
            .iter()
            .filter(|o| present.contains(o.task_kind.as_str()))
            .filter(|o| listed.is_none_or(|ids| model_listed(ids, &o.model)))
            .cloned()
            .collect(),
    )
}

fn endpoint(base: &str, path: &str) -> Result<Uri, ComputeError> {
    let uri: Uri = format!("{base}{path}")
        .parse()
        .map_err(|e| ComputeError::config("base_url", format!("{base:?} is not a URL: {e}")))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(ComputeError::config("base_url", format!("{base:?} must start with http:// or https://"))),
    }
    if uri.authority().is_none() {
        return Err(ComputeError::config("base_url", format!("{base:?} has no host")));
    }
    Ok(uri)
}

impl OpenAiBackend {
    /// Checks the config and builds the backend (and its HTTP client).
    pub fn new(config: &OpenAiConfig, pricer: Arc<Pricer>) -> Result<Self, ComputeError> {
        let key = config.api_key.trim();
        let auth = if key.is_empty() {
            if normalize_base_url(&config.base_url).contains("://api.openai.com") {
                return Err(ComputeError::config("api_key", "is required for api.openai.com"));
            }
            None
        } else {
            let mut auth = HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| ComputeError::config("api_key", "contains characters not allowed in a header"))?;
            auth.set_sensitive(true);
            Some(auth)
        };
        for (field, value) in [
            ("first_byte_timeout_secs", config.first_byte_timeout_secs),
            ("idle_timeout_secs", config.idle_timeout_secs),
            ("connect_timeout_secs", config.connect_timeout_secs),
            ("max_response_bytes", config.max_response_bytes),
        ] {
            if value == 0 {
                return Err(ComputeError::config(field, "must be > 0"));
            }
        }
        let base = normalize_base_url(&config.base_url);
        let models_uri = endpoint(&base, "/models")?;
        let chat_uri = endpoint(&base, "/chat/completions")?;
        let responses_uri = endpoint(&base, "/responses")?;
        if config.task_kinds.is_empty() {
            return Err(ComputeError::config("task_kinds", "name at least one task kind"));
        }
        if let Some(k) = config.task_kinds.iter().find(|k| !DEFAULT_TASK_KINDS.contains(&k.as_str())) {
            return Err(ComputeError::config(
                "task_kinds",
                format!("{k:?} is not an OpenAI task kind ({})", DEFAULT_TASK_KINDS.join(", ")),
            ));
        }
        let models = if config.models.is_empty() { priced_models(&pricer) } else { config.models.clone() };
        let mut offers: Vec<TaskOffer> = models
            .iter()
            .flat_map(|m| config.task_kinds.iter().map(|k| TaskOffer { task_kind: k.clone(), model: m.clone() }))
            .collect();
        offers.sort();
        offers.dedup();
        check_offers_priced(&offers, &pricer)?;
        let extra_roots = match &config.ca_file {
            Some(path) => load_pem_certificates(path)?,
            None => Vec::new(),
        };
        let client = build_http_client(Duration::from_secs(config.connect_timeout_secs), extra_roots)?;
        Ok(OpenAiBackend {
            client,
            models_uri,
            chat_uri,
            responses_uri,
            auth,
            live: watch::Sender::new(offers.clone()),
            configured: offers,
            followed: AtomicBool::new(false),
            wake: Notify::new(),
            probe_timeout: Duration::from_secs(config.connect_timeout_secs),
            first_byte_timeout: Duration::from_secs(config.first_byte_timeout_secs),
            idle_timeout: Duration::from_secs(config.idle_timeout_secs),
            max_response_bytes: config.max_response_bytes,
            pricer,
        })
    }

    /// The URL a task kind is forwarded to.
    pub fn endpoint_for(&self, task_kind: &str) -> Option<&Uri> {
        match task_kind {
            TASK_KIND_CHAT_COMPLETIONS => Some(&self.chat_uri),
            TASK_KIND_RESPONSES => Some(&self.responses_uri),
            _ => None,
        }
    }

    /// A request to the upstream with the backend's headers.
    fn request(&self, method: Method, uri: Uri, body: Bytes) -> Result<Request<Full<Bytes>>, http::Error> {
        let mut r = Request::builder().method(method).uri(uri);
        if let Some(auth) = &self.auth {
            r = r.header(AUTHORIZATION, auth.clone());
        }
        r.header(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_JSON))
            .header(ACCEPT, HeaderValue::from_static("*/*"))
            .header(USER_AGENT, HeaderValue::from_static(concat!("lcp-node/", env!("CARGO_PKG_VERSION"))))
            .body(Full::new(body))
    }

    /// What the backend offers before any probe: the configured (task kind, model) pairs.
    pub fn configured_offers(&self) -> &[TaskOffer] {
        &self.configured
    }

    /// One probe request: its status and up to `limit` bytes of its body, or why the upstream
    /// could not be asked (connection, TLS, time-out).
    async fn probe_request(&self, method: Method, uri: &Uri, limit: usize) -> Result<(u16, Vec<u8>), String> {
        let body = if method == Method::POST { Bytes::from_static(PROBE_BODY) } else { Bytes::new() };
        let request = self.request(method, uri.clone(), body).map_err(|e| format!("cannot build a probe: {e}"))?;
        let ask = async {
            let response = self.client.request(request).await.map_err(|e| chain(&e))?;
            let status = response.status().as_u16();
            let mut body = response.into_body();
            // The whole probe is bounded below; its body is read under the same bound.
            let mut quiet = Silence::new(self.probe_timeout, self.probe_timeout);
            let raw = read_prefix(&mut body, limit, &mut quiet).await.map_err(|e| e.to_string())?;
            Ok((status, raw))
        };
        tokio::time::timeout(self.probe_timeout, ask)
            .await
            .unwrap_or_else(|_| Err(format!("no answer to {uri} within {:?}", self.probe_timeout)))
            .map_err(|e| format!("{uri}: {e}"))
    }

    /// Probes the upstream once (see the module docs): `GET /models`, then the endpoint of each
    /// configured task kind with [`PROBE_BODY`]. Runs no inference.
    pub async fn probe(&self) -> ProbeOutcome {
        let models = match self.probe_request(Method::GET, &self.models_uri, MAX_MODELS_BYTES).await {
            Ok((status, body)) => classify_models(status, &body),
            Err(why) => return ProbeOutcome::Down(why),
        };
        if let ModelsProbe::Refused(why) | ModelsProbe::Unavailable(why) = &models {
            return ProbeOutcome::Down(why.clone());
        }
        let mut answers = Vec::new();
        let kinds: BTreeSet<&str> = self.configured.iter().map(|o| o.task_kind.as_str()).collect();
        for kind in kinds {
            let Some(uri) = self.endpoint_for(kind) else { continue };
            match self.probe_request(Method::POST, uri, 0).await {
                Ok((status, _)) => answers.push((kind.to_owned(), classify_endpoint(status))),
                Err(why) => return ProbeOutcome::Down(why),
            }
        }
        served_offers(&self.configured, &models, |kind| {
            answers.iter().find(|(k, _)| k == kind).map_or(EndpointProbe::Missing, |(_, a)| a.clone())
        })
    }

    /// Keeps the offers in step with the upstream until `stop` fires: probes at once, then
    /// every [`PROBE_RECHECK`] while up (or at once when a job could not connect), and with
    /// backoff while down. Logs each change (warn when something configured is not offered).
    pub async fn follow_upstream(&self, stop: CancellationToken) {
        self.followed.store(true, Ordering::SeqCst);
        let mut last: Option<ProbeOutcome> = None;
        let mut backoff = PROBE_BACKOFF_MIN;
        loop {
            let outcome = tokio::select! {
                () = stop.cancelled() => break,
                o = self.probe() => o,
            };
            let changed = match (&last, &outcome) {
                (Some(ProbeOutcome::Down(_)), ProbeOutcome::Down(_)) => false,
                (Some(a), b) => a != b,
                (None, _) => true,
            };
            match &outcome {
                ProbeOutcome::Down(why) if changed => {
                    tracing::warn!(target: TARGET, upstream = %self.models_uri, "upstream unusable, nothing offered until it answers again: {why}")
                }
                ProbeOutcome::Down(why) => tracing::debug!(target: TARGET, ?backoff, "upstream still unusable: {why}"),
                ProbeOutcome::Up(offers) if changed && offers.len() < self.configured.len() => {
                    let missing: Vec<String> = self
                        .configured
                        .iter()
                        .filter(|o| !offers.contains(o))
                        .map(|o| format!("{} {}", o.task_kind, o.model))
                        .collect();
                    tracing::warn!(target: TARGET, upstream = %self.models_uri, offered = offers.len(), "the upstream does not serve, so not offered: {}", missing.join(", "));
                }
                ProbeOutcome::Up(offers) if changed => {
                    tracing::info!(target: TARGET, offered = offers.len(), "upstream serves every configured offer")
                }
                ProbeOutcome::Up(_) => {}
            }
            let offers = match &outcome {
                ProbeOutcome::Up(o) => o.clone(),
                ProbeOutcome::Down(_) => Vec::new(),
            };
            // The first result always counts as a change: the worker announces once it is known.
            if last.is_none() {
                self.live.send_replace(offers);
            } else {
                self.live.send_if_modified(|v| std::mem::replace(v, offers) != *v);
            }
            let wait = match &outcome {
                ProbeOutcome::Up(_) => {
                    backoff = PROBE_BACKOFF_MIN;
                    PROBE_RECHECK
                }
                ProbeOutcome::Down(_) => {
                    let w = backoff;
                    backoff = (backoff * 2).min(PROBE_BACKOFF_MAX);
                    w
                }
            };
            last = Some(outcome);
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
                () = self.wake.notified() => {}
            }
        }
        self.followed.store(false, Ordering::SeqCst);
    }

    /// A job's request failed before any answer: probe again now. When it could not even
    /// connect (`connect`), withdraw the offers at once (only while someone follows the
    /// upstream to bring them back).
    fn upstream_lost(&self, connect: bool, why: &str) {
        if self.followed.load(Ordering::SeqCst) {
            if connect && self.live.send_if_modified(|v| !std::mem::take(v).is_empty()) {
                tracing::warn!(target: TARGET, upstream = %self.models_uri, "a job could not connect to the upstream, nothing offered until it answers again: {why}");
            }
            self.wake.notify_one();
        }
    }

    async fn run(&self, uri: Uri, job: &JobSpec, sink: &mut ResultSink) -> Result<(), ComputeError> {
        let request = self
            .request(Method::POST, uri, job.input.clone())
            .map_err(|e| ComputeError::InvalidTask(format!("cannot build request: {e}")))?;
        let mut quiet = Silence::new(self.first_byte_timeout, self.idle_timeout);
        let response = quiet.bound(self.client.request(request)).await?.map_err(|e| {
            let why = chain(&e);
            self.upstream_lost(e.is_connect(), &why);
            ComputeError::Unavailable(format!("request failed: {why}"))
        })?;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let raw = read_prefix(&mut body, MAX_ERROR_BODY_BYTES + 1, &mut quiet).await?;
            let mut text = error_body_text(&raw);
            if text.is_empty() {
                text = status.canonical_reason().unwrap_or("").to_owned();
            }
            return Err(ComputeError::UpstreamStatus { status: status.as_u16(), body: text });
        }
        if job.stream {
            while let Some(data) = quiet.bound(next_data(&mut body)).await?? {
                sink.send(data).await?;
                // Counted from here: time our side spent handing the chunk on is not silence.
                quiet.heard();
            }
            if sink.is_empty() {
                return Err(ComputeError::EmptyOutput);
            }
        } else {
            let mut buf = BytesMut::new();
            while let Some(data) = quiet.bound(next_data(&mut body)).await?? {
                quiet.heard();
                sink.check_room(buf.len() as u64, data.len())?;
                buf.extend_from_slice(&data);
            }
            if buf.is_empty() {
                return Err(ComputeError::EmptyOutput);
            }
            sink.send(buf.freeze()).await?;
        }
        Ok(())
    }
}

/// Next data frame of a body (trailers are skipped), mapping read errors to `Unavailable`.
async fn next_data(body: &mut Incoming) -> Result<Option<Bytes>, ComputeError> {
    loop {
        match body.frame().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(ComputeError::Unavailable(format!("reading response body: {}", chain(&e)))),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// The silence bounds of one upstream request: until the first body byte, the first-byte limit
/// counted from the request; after it, the idle limit counted from the last chunk.
struct Silence {
    deadline: tokio::time::Instant,
    what: &'static str,
    limit: Duration,
    idle: Duration,
}

impl Silence {
    fn new(first_byte: Duration, idle: Duration) -> Self {
        let deadline = tokio::time::Instant::now() + first_byte;
        Self { deadline, what: "upstream's first byte", limit: first_byte, idle }
    }

    /// A body chunk arrived: the next one is due within the idle limit.
    fn heard(&mut self) {
        self.deadline = tokio::time::Instant::now() + self.idle;
        (self.what, self.limit) = ("upstream silence between chunks", self.idle);
    }

    /// Runs `f` until the current deadline; past it, the bound that expired.
    async fn bound<T>(&self, f: impl std::future::Future<Output = T>) -> Result<T, ComputeError> {
        tokio::time::timeout_at(self.deadline, f)
            .await
            .map_err(|_| ComputeError::Timeout { what: self.what, limit: self.limit })
    }
}

async fn read_prefix(body: &mut Incoming, limit: usize, quiet: &mut Silence) -> Result<Vec<u8>, ComputeError> {
    let mut buf = Vec::new();
    while buf.len() < limit {
        match quiet.bound(next_data(body)).await?? {
            Some(data) => {
                quiet.heard();
                let take = data.len().min(limit - buf.len());
                buf.extend_from_slice(&data[..take]);
            }
            None => break,
        }
    }
    Ok(buf)
}

/// An error with its sources, for messages.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[async_trait]
impl ComputeBackend for OpenAiBackend {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn offers(&self) -> Vec<TaskOffer> {
        self.live.borrow().clone()
    }

    fn offer_updates(&self) -> Option<watch::Receiver<Vec<TaskOffer>>> {
        Some(self.live.subscribe())
    }

    async fn follow(&self, stop: CancellationToken) {
        self.follow_upstream(stop).await;
    }

    fn quote(&self, job: &JobSpec) -> Result<PriceQuote, ComputeError> {
        quote_offered(&self.live.borrow(), &self.pricer, job)
    }

    async fn execute(
        &self,
        job: &JobSpec,
        out: mpsc::Sender<Bytes>,
        cancel: CancellationToken,
    ) -> Result<JobOutcome, ComputeError> {
        check_offered(&self.live.borrow(), job)?;
        let uri = self
            .endpoint_for(&job.task_kind)
            .cloned()
            .ok_or_else(|| ComputeError::UnsupportedTaskKind { task_kind: job.task_kind.clone() })?;
        if job.model.trim().is_empty() {
            return Err(ComputeError::InvalidTask("model is required".into()));
        }
        if job.input.is_empty() {
            return Err(ComputeError::InvalidTask("input is empty".into()));
        }
        let mut sink = ResultSink::new(out, cancel.clone(), self.max_response_bytes, job);
        // Dropping the request future on cancel or a silence bound drops the connection with it.
        let outcome = tokio::select! {
            biased;
            () = cancel.cancelled() => Err(ComputeError::Cancelled),
            res = self.run(uri, job, &mut sink) => res,
        };
        outcome?;
        Ok(sink.finish(result_content_type(job, CONTENT_TYPE_JSON)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobd::pricing::PricingConfig;

    #[test]
    fn base_url_rule_matches_reference() {
        assert_eq!(normalize_base_url(""), "https://api.openai.com/v1");
        assert_eq!(normalize_base_url("  "), "https://api.openai.com/v1");
        assert_eq!(normalize_base_url("http://127.0.0.1:8080"), "http://127.0.0.1:8080/v1");
        assert_eq!(normalize_base_url("http://127.0.0.1:8080/v1/"), "http://127.0.0.1:8080/v1");
        assert_eq!(normalize_base_url("https://example.com/openai/"), "https://example.com/openai/v1");
    }

    #[test]
    fn the_probe_body_gives_no_server_anything_to_run() {
        // Every field the OpenAI kinds read has the wrong type, so no server fills in defaults
        // and generates (llama-cpp-python runs a generation for `{}`).
        let v: serde_json::Value = serde_json::from_slice(PROBE_BODY).expect("JSON");
        for field in ["model", "messages", "input"] {
            assert!(v[field].is_number(), "{field}: {v}");
        }
    }

    #[test]
    fn endpoint_probe_classification() {
        // Missing: no route (llama-cpp-python's and older llama.cpp/Ollama's /v1/responses),
        // no method, not implemented, or not at this URL.
        for status in [404, 405, 501, 301, 307] {
            assert_eq!(classify_endpoint(status), EndpointProbe::Missing, "{status}");
        }
        // Present: the body was rejected (OpenAI/Ollama/llama.cpp 400, FastAPI 422), or the
        // route exists but limits or chokes, or a lenient server accepted it.
        for status in [200, 400, 413, 415, 422, 429, 500] {
            assert_eq!(classify_endpoint(status), EndpointProbe::Present, "{status}");
        }
        for status in [401, 403] {
            assert!(matches!(classify_endpoint(status), EndpointProbe::Refused(_)), "{status}");
        }
        for status in [502, 503, 504] {
            assert!(matches!(classify_endpoint(status), EndpointProbe::Unavailable(_)), "{status}");
        }
    }

    #[test]
    fn models_probe_classification() {
        let list = br#"{"object":"list","data":[{"id":"tiny.gguf","object":"model"},{"id":"llama3.2:latest"}]}"#;
        let ids = BTreeSet::from(["tiny.gguf".to_owned(), "llama3.2:latest".to_owned()]);
        assert_eq!(classify_models(200, list), ModelsProbe::Listed(ids.clone()));
        // An empty list, another shape, or no /models: models are not restricted.
        for (status, body) in [
            (200, &br#"{"object":"list","data":[]}"#[..]),
            (200, b"not json"),
            (200, br#"{"models":["x"]}"#),
            (404, b"Not Found"),
            (405, b""),
            (500, b"oops"),
        ] {
            assert_eq!(classify_models(status, body), ModelsProbe::Unrestricted, "{status}");
        }
        assert!(matches!(classify_models(401, b""), ModelsProbe::Refused(_)));
        assert!(matches!(classify_models(503, b"loading model"), ModelsProbe::Unavailable(_)));
        // Ollama lists tags; an untagged model is its :latest.
        assert!(model_listed(&ids, "llama3.2"));
        assert!(model_listed(&ids, "tiny.gguf"));
        assert!(!model_listed(&ids, "llama3.2:1b"));
        assert!(!model_listed(&ids, "tiny"));
    }

    #[test]
    fn served_offers_keep_only_what_the_upstream_serves() {
        let offer = |k: &str, m: &str| TaskOffer { task_kind: k.into(), model: m.into() };
        let configured = vec![
            offer(TASK_KIND_CHAT_COMPLETIONS, "a"),
            offer(TASK_KIND_CHAT_COMPLETIONS, "b"),
            offer(TASK_KIND_RESPONSES, "a"),
            offer(TASK_KIND_RESPONSES, "b"),
        ];
        let no_responses =
            |k: &str| if k == TASK_KIND_RESPONSES { EndpointProbe::Missing } else { EndpointProbe::Present };
        // llama-cpp-python: its one model, no /v1/responses.
        let listed = ModelsProbe::Listed(BTreeSet::from(["a".to_owned()]));
        assert_eq!(
            served_offers(&configured, &listed, no_responses),
            ProbeOutcome::Up(vec![offer(TASK_KIND_CHAT_COMPLETIONS, "a")])
        );
        // No model list: every configured model of the present kinds.
        assert_eq!(
            served_offers(&configured, &ModelsProbe::Unrestricted, no_responses),
            ProbeOutcome::Up(vec![offer(TASK_KIND_CHAT_COMPLETIONS, "a"), offer(TASK_KIND_CHAT_COMPLETIONS, "b")])
        );
        assert_eq!(
            served_offers(&configured, &ModelsProbe::Unrestricted, |_| EndpointProbe::Present),
            ProbeOutcome::Up(configured.clone())
        );
        // None of the configured models listed: up, but nothing to offer.
        let others = ModelsProbe::Listed(BTreeSet::from(["c".to_owned()]));
        assert_eq!(served_offers(&configured, &others, |_| EndpointProbe::Present), ProbeOutcome::Up(vec![]));
        // A refused key or a server that is not ready: down, whatever else answered.
        assert!(matches!(
            served_offers(&configured, &ModelsProbe::Unrestricted, |k| if k == TASK_KIND_RESPONSES {
                EndpointProbe::Unavailable("503".into())
            } else {
                EndpointProbe::Present
            }),
            ProbeOutcome::Down(_)
        ));
        assert!(matches!(
            served_offers(&configured, &ModelsProbe::Refused("401".into()), |_| EndpointProbe::Present),
            ProbeOutcome::Down(_)
        ));
    }

    #[test]
    fn task_kinds_choose_the_offers() {
        let pricer = Arc::new(Pricer::new(&PricingConfig::default()).expect("pricer"));
        let base = OpenAiConfig { api_key: "k".into(), models: vec!["gpt-5.2".into()], ..OpenAiConfig::default() };
        let both = OpenAiBackend::new(&base, pricer.clone()).expect("valid");
        let kinds: Vec<String> = both.offers().into_iter().map(|o| o.task_kind).collect();
        assert_eq!(kinds, [TASK_KIND_CHAT_COMPLETIONS, TASK_KIND_RESPONSES]);
        let chat = OpenAiConfig { task_kinds: vec![TASK_KIND_CHAT_COMPLETIONS.into()], ..base.clone() };
        let chat = OpenAiBackend::new(&chat, pricer.clone()).expect("valid");
        let kinds: Vec<String> = chat.offers().into_iter().map(|o| o.task_kind).collect();
        assert_eq!(kinds, [TASK_KIND_CHAT_COMPLETIONS]);
        for bad in [vec![], vec!["exec.echo.v1".to_owned()]] {
            let c = OpenAiConfig { task_kinds: bad, ..base.clone() };
            assert!(matches!(OpenAiBackend::new(&c, pricer.clone()), Err(ComputeError::Config { .. })));
        }
    }

    #[test]
    fn config_is_checked_and_key_is_redacted() {
        let pricer = Arc::new(Pricer::new(&PricingConfig::default()).expect("pricer"));
        let ok = OpenAiConfig { api_key: "sk-secret".into(), ..OpenAiConfig::default() };
        assert!(!format!("{ok:?}").contains("sk-secret"));
        let backend = OpenAiBackend::new(&ok, pricer.clone()).expect("valid");
        assert_eq!(
            backend.endpoint_for(TASK_KIND_RESPONSES).map(ToString::to_string),
            Some("https://api.openai.com/v1/responses".to_owned())
        );
        let bad = [
            OpenAiConfig::default(),
            OpenAiConfig { base_url: "ftp://x".into(), ..ok.clone() },
            OpenAiConfig { first_byte_timeout_secs: 0, ..ok.clone() },
            OpenAiConfig { idle_timeout_secs: 0, ..ok.clone() },
            OpenAiConfig { max_response_bytes: 0, ..ok.clone() },
            OpenAiConfig { api_key: "bad\nkey".into(), ..ok.clone() },
            OpenAiConfig { models: vec!["unpriced".into()], ..ok.clone() },
        ];
        for config in bad {
            assert!(
                matches!(OpenAiBackend::new(&config, pricer.clone()), Err(ComputeError::Config { .. })),
                "{config:?}"
            );
        }
    }

    #[test]
    fn silence_bounds_have_defaults_and_the_old_key_still_loads() {
        let c: OpenAiConfig = toml::from_str("api_key = \"k\"\n").expect("defaults");
        assert_eq!((c.first_byte_timeout_secs, c.idle_timeout_secs), (120, 60));
        // Existing files say `request_timeout_secs`: it is read as the first-byte bound.
        let c: OpenAiConfig = toml::from_str("api_key = \"k\"\nrequest_timeout_secs = 7\n").expect("old key");
        assert_eq!((c.first_byte_timeout_secs, c.idle_timeout_secs), (7, DEFAULT_IDLE_TIMEOUT_SECS));
        let c: OpenAiConfig = toml::from_str("first_byte_timeout_secs = 3\nidle_timeout_secs = 2\n").expect("new keys");
        assert_eq!((c.first_byte_timeout_secs, c.idle_timeout_secs), (3, 2));
    }
}
