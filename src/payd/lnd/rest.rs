//! HTTPS client for lnd's REST API: the macaroon header on every request, and TLS that trusts
//! exactly the certificate file it is given.
//!
//! lnd serves a self-signed certificate (marked as a CA, which ordinary path validation refuses
//! as a server certificate). The client therefore pins it: the server's certificate must be
//! byte-for-byte one of the certificates in the file, and the handshake signature must verify
//! with its key. Host name and validity dates are not checked (the pin is the trust); no
//! system or built-in root is trusted.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use serde::de::DeserializeOwned;

use super::wire::{Status, StreamLine};

/// The header lnd reads the macaroon from (hex of the macaroon file).
pub const MACAROON_HEADER: &str = "Grpc-Metadata-macaroon";
/// Largest unary answer read, bytes.
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// Largest line of a streaming answer, bytes.
pub const MAX_LINE: usize = 1024 * 1024;

/// What went wrong talking to lnd.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// No connection was made: the request never reached lnd.
    #[error("cannot connect to lnd at {url}: {reason}")]
    Connect {
        /// The base URL.
        url: String,
        /// Why (the whole error chain).
        reason: String,
    },
    /// The request may have reached lnd but no complete answer came back.
    #[error("no answer from lnd to {what}: {reason}")]
    Transport {
        /// Method and path.
        what: String,
        /// Why.
        reason: String,
    },
    /// lnd answered with an error.
    #[error("lnd refused {what} (HTTP {http}, code {}): {}", status.code, status.message)]
    Status {
        /// Method and path.
        what: String,
        /// HTTP status.
        http: u16,
        /// lnd's gRPC status.
        status: Status,
    },
    /// The answer was not what lnd documents.
    #[error("unexpected answer from lnd to {what}: {reason}")]
    Decode {
        /// Method and path.
        what: String,
        /// Why.
        reason: String,
    },
}

impl RestError {
    /// lnd's gRPC code, if lnd answered with an error.
    pub fn grpc_code(&self) -> Option<i32> {
        match self {
            RestError::Status { status, .. } => Some(status.code),
            _ => None,
        }
    }
}

/// The whole chain of an error, `outer: inner: ...`.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// The refusal of a certificate that is not the pinned one. rustls prints it with `Debug`, so
/// both forms say the same.
struct NotPinned;

impl std::fmt::Display for NotPinned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server's certificate is not the pinned lnd certificate")
    }
}

impl std::fmt::Debug for NotPinned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for NotPinned {}

/// Trusts exactly the pinned certificates (see the module documentation).
#[derive(Debug)]
struct PinnedCert {
    certs: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.certs.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(NotPinned)))))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Reads the PEM certificates of `pem` (lnd's `tls.cert`).
pub fn parse_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no certificate in it".into());
    }
    Ok(certs)
}

/// A client for one lnd node.
pub struct LndRest {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    macaroon: HeaderValue,
    timeout: Duration,
}

impl std::fmt::Debug for LndRest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The macaroon is a bearer credential: never printed.
        f.debug_struct("LndRest").field("base", &self.base).finish_non_exhaustive()
    }
}

impl LndRest {
    /// A client for `base_url` (`https://HOST:PORT`) that trusts exactly `certs`, sends the
    /// macaroon (the file's bytes) with every request, and gives unary calls `timeout`.
    pub fn new(
        base_url: &str,
        certs: Vec<CertificateDer<'static>>,
        macaroon: &[u8],
        timeout: Duration,
    ) -> Result<Self, String> {
        let base = base_url.trim().trim_end_matches('/').to_string();
        let uri: http::Uri = base.parse().map_err(|e| format!("{base:?} is not a URL: {e}"))?;
        if uri.scheme_str() != Some("https") {
            return Err(format!("{base:?} must start with https:// (lnd's REST API is TLS only)"));
        }
        if uri.authority().is_none() || uri.path().len() > 1 {
            return Err(format!("{base:?} must be https://HOST:PORT"));
        }
        if macaroon.is_empty() {
            return Err("the macaroon is empty".into());
        }
        let mut macaroon = HeaderValue::from_str(&hex::encode(macaroon)).map_err(|e| e.to_string())?;
        macaroon.set_sensitive(true);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PinnedCert { certs, provider: provider.clone() });
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        Ok(LndRest { client: Client::builder(TokioExecutor::new()).build(https), base, macaroon, timeout })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request and waits up to `wait` (`None`: as long as it takes) for the answer's
    /// head. A connection that cannot be made is [`RestError::Connect`]: nothing reached lnd.
    /// A GET whose pooled connection broke before any answer (lnd restarted, or closed an idle
    /// connection as the request went out) is sent once more on a new connection: it changes
    /// nothing at lnd, so the second try is safe.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        wait: Option<Duration>,
    ) -> Result<hyper::Response<Incoming>, RestError> {
        let what = format!("{method} {}", path.split('?').next().unwrap_or(path));
        let retry_safe = method == Method::GET;
        let has_body = body.is_some();
        let body = Bytes::from(body.unwrap_or_default());
        let mut tries = 0;
        loop {
            tries += 1;
            let mut req = Request::builder()
                .method(method.clone())
                .uri(format!("{}{path}", self.base))
                .header(MACAROON_HEADER, self.macaroon.clone());
            if has_body {
                req = req.header(CONTENT_TYPE, "application/json");
            }
            let req = req
                .body(Full::new(body.clone()))
                .map_err(|e| RestError::Decode { what: what.clone(), reason: e.to_string() })?;
            let answer = self.client.request(req);
            let answer = match wait {
                Some(w) => tokio::time::timeout(w, answer).await,
                None => Ok(answer.await),
            };
            match answer {
                Err(_) => return Err(RestError::Transport { what, reason: format!("no response within {wait:?}") }),
                Ok(Err(e)) if e.is_connect() => {
                    return Err(RestError::Connect { url: self.base.clone(), reason: chain(&e) })
                }
                Ok(Err(e)) if retry_safe && tries == 1 => {
                    tracing::debug!(target: "payd::lnd", "{what}: connection broke ({}), trying once more", chain(&e));
                }
                Ok(Err(e)) => return Err(RestError::Transport { what, reason: chain(&e) }),
                Ok(Ok(resp)) => return Ok(resp),
            }
        }
    }

    async fn read_body(what: &str, mut body: Incoming, limit: usize) -> Result<Vec<u8>, RestError> {
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| RestError::Transport { what: what.into(), reason: chain(&e) })?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > limit {
                    return Err(RestError::Decode { what: what.into(), reason: format!("answer over {limit} bytes") });
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(out)
    }

    /// lnd's error answer: `{"code", "message"}` or, from a stream, `{"error": {...}}`.
    fn status_error(what: String, http: StatusCode, body: &[u8]) -> RestError {
        let status = serde_json::from_slice::<StreamLine<serde_json::Value>>(body)
            .ok()
            .and_then(|l| l.error)
            .or_else(|| serde_json::from_slice::<Status>(body).ok().filter(|s| s.code != 0 || !s.message.is_empty()))
            .unwrap_or_else(|| Status {
                code: 0,
                message: String::from_utf8_lossy(&body[..body.len().min(300)]).into(),
            });
        RestError::Status { what, http: http.as_u16(), status }
    }

    /// A unary call: `method path` with an optional JSON body; the JSON answer.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, RestError> {
        let what = format!("{method} {}", path.split('?').next().unwrap_or(path));
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let resp = self.send(method, path, bytes, Some(self.timeout)).await?;
        let status = resp.status();
        let body = tokio::time::timeout(self.timeout, Self::read_body(&what, resp.into_body(), MAX_BODY))
            .await
            .map_err(|_| RestError::Transport { what: what.clone(), reason: "answer not complete in time".into() })??;
        if !status.is_success() {
            return Err(Self::status_error(what, status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| RestError::Decode { what, reason: e.to_string() })
    }

    /// A streaming call: the answer's lines one by one. lnd's gateway may send the answer's head
    /// only with the first message, so the head is awaited up to `wait` (`None`: until it comes;
    /// the caller bounds it).
    pub async fn stream(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        wait: Option<Duration>,
    ) -> Result<LineStream, RestError> {
        let what = format!("{method} {}", path.split('?').next().unwrap_or(path));
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let resp = self.send(method, path, bytes, wait).await?;
        let status = resp.status();
        if !status.is_success() {
            let body =
                tokio::time::timeout(self.timeout, Self::read_body(&what, resp.into_body(), MAX_LINE)).await.map_err(
                    |_| RestError::Transport { what: what.clone(), reason: "error answer not complete".into() },
                )??;
            return Err(Self::status_error(what, status, &body));
        }
        Ok(LineStream { what, body: resp.into_body(), buf: Vec::new(), done: false })
    }
}

/// The lines of a streaming answer.
pub struct LineStream {
    what: String,
    body: Incoming,
    buf: Vec<u8>,
    done: bool,
}

impl LineStream {
    /// The next line, decoded; `None` once lnd ended the stream.
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<StreamLine<T>>, RestError> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                return serde_json::from_slice(line)
                    .map(Some)
                    .map_err(|e| RestError::Decode { what: self.what.clone(), reason: e.to_string() });
            }
            if self.done {
                let rest = std::mem::take(&mut self.buf);
                let rest = rest.trim_ascii();
                if rest.is_empty() {
                    return Ok(None);
                }
                return serde_json::from_slice(rest)
                    .map(Some)
                    .map_err(|e| RestError::Decode { what: self.what.clone(), reason: e.to_string() });
            }
            match self.body.frame().await {
                None => self.done = true,
                Some(Err(e)) => return Err(RestError::Transport { what: self.what.clone(), reason: chain(&e) }),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if self.buf.len() + data.len() > MAX_LINE {
                            return Err(RestError::Decode {
                                what: self.what.clone(),
                                reason: format!("a line over {MAX_LINE} bytes"),
                            });
                        }
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_is_checked() {
        let cert = rcgen_free_cert();
        assert!(LndRest::new("http://127.0.0.1:8080", cert.clone(), b"m", Duration::from_secs(1)).is_err());
        assert!(LndRest::new("https://127.0.0.1:8080/v1", cert.clone(), b"m", Duration::from_secs(1)).is_err());
        assert!(LndRest::new("https://127.0.0.1:8080", cert.clone(), b"", Duration::from_secs(1)).is_err());
        let c = LndRest::new("https://127.0.0.1:8080/", cert, b"secret-macaroon", Duration::from_secs(1)).expect("ok");
        assert_eq!(c.base(), "https://127.0.0.1:8080");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains(&hex::encode(b"secret-macaroon")) && !dbg.contains("secret"), "{dbg}");
        assert!(parse_certificates(b"not a pem").is_err());
    }

    /// Any DER bytes do for configuration checks (no handshake happens).
    fn rcgen_free_cert() -> Vec<CertificateDer<'static>> {
        vec![CertificateDer::from(vec![0x30, 0x00])]
    }
}
