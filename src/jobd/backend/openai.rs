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
//! HTTP client: hyper 1 through hyper-util's pooled client, TLS by rustls with the `ring`
//! provider (no cmake/aws-lc build) and the Mozilla root store from `webpki-roots` (works in
//! minimal containers without a system CA bundle), plus optional extra roots from a PEM file
//! for private upstreams; HTTP/1.1 and HTTP/2 (ALPN). Plain `http://` is allowed for local
//! upstreams.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    check_offered, check_offers_priced, error_body_text, openai_offers, priced_models, quote_offered,
    result_content_type, ComputeBackend, ComputeError, JobOutcome, JobSpec, ResultSink, TaskOffer, CONTENT_TYPE_JSON,
    MAX_ERROR_BODY_BYTES, TASK_KIND_CHAT_COMPLETIONS, TASK_KIND_RESPONSES,
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

/// The HTTP client type shared by the backend and anything that must talk to an upstream the
/// same way (benchmarks compare against it).
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Configuration of [`OpenAiBackend`]. `Debug` hides the API key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiConfig {
    /// Upstream base URL (`/v1` is appended when missing).
    pub base_url: String,
    /// API key sent as `Authorization: Bearer <key>` (required, as in the reference).
    pub api_key: String,
    /// Models offered for both OpenAI task kinds; empty = every model of the pricing table.
    pub models: Vec<String>,
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
    chat_uri: Uri,
    responses_uri: Uri,
    auth: HeaderValue,
    offers: Vec<TaskOffer>,
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
            .field("offers", &self.offers)
            .finish_non_exhaustive()
    }
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
        if key.is_empty() {
            return Err(ComputeError::config("api_key", "is required"));
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| ComputeError::config("api_key", "contains characters not allowed in a header"))?;
        auth.set_sensitive(true);
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
        let chat_uri = endpoint(&base, "/chat/completions")?;
        let responses_uri = endpoint(&base, "/responses")?;
        let models = if config.models.is_empty() { priced_models(&pricer) } else { config.models.clone() };
        let offers = openai_offers(&models);
        check_offers_priced(&offers, &pricer)?;
        let extra_roots = match &config.ca_file {
            Some(path) => load_pem_certificates(path)?,
            None => Vec::new(),
        };
        let client = build_http_client(Duration::from_secs(config.connect_timeout_secs), extra_roots)?;
        Ok(OpenAiBackend {
            client,
            chat_uri,
            responses_uri,
            auth,
            offers,
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

    async fn run(&self, uri: Uri, job: &JobSpec, sink: &mut ResultSink) -> Result<(), ComputeError> {
        let request = Request::post(uri)
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_JSON))
            .header(ACCEPT, HeaderValue::from_static("*/*"))
            .header(USER_AGENT, HeaderValue::from_static(concat!("lcp-node/", env!("CARGO_PKG_VERSION"))))
            .body(Full::new(job.input.clone()))
            .map_err(|e| ComputeError::InvalidTask(format!("cannot build request: {e}")))?;
        let mut quiet = Silence::new(self.first_byte_timeout, self.idle_timeout);
        let response = quiet
            .bound(self.client.request(request))
            .await?
            .map_err(|e| ComputeError::Unavailable(format!("request failed: {}", chain(&e))))?;
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
        self.offers.clone()
    }

    fn quote(&self, job: &JobSpec) -> Result<PriceQuote, ComputeError> {
        quote_offered(&self.offers, &self.pricer, job)
    }

    async fn execute(
        &self,
        job: &JobSpec,
        out: mpsc::Sender<Bytes>,
        cancel: CancellationToken,
    ) -> Result<JobOutcome, ComputeError> {
        check_offered(&self.offers, job)?;
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
