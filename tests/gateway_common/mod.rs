//! Fixture of the gateway tests and benchmark: a requester node with the gateway and one or more
//! provider nodes (in-process, devnet payments over real channels), and small HTTP clients (hyper,
//! and raw TCP for what hyper will not send).
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use lcp::bus::api::lcpd::{JobRow, LcpdApi};
use lcp::bus::api::{Body, PeerdApi};
use lcp::bus::{Bus, ServiceId};
use lcp::gateway::{GatewayArgs, GatewayConfig, GatewayFile};
use lcp::jobd::backend::deterministic::DeterministicConfig;
use lcp::jobd::backend::openai::OpenAiConfig;
use lcp::jobd::backend::BackendConfig;
use lcp::jobd::pricing::{ModelConfig, ModelPrice, PricingConfig};
use lcp::testkit::{poll_until, services, InProcessNode, PATIENCE};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const MODEL: &str = "gpt-5.2";
pub const T: Duration = Duration::from_secs(30);

/// A small price table: about 4 sat per job, so a channel pays for many.
pub fn cheap_pricing() -> PricingConfig {
    let price = ModelPrice {
        input_msat_per_mtok: 1_000_000,
        cached_input_msat_per_mtok: None,
        output_msat_per_mtok: 1_000_000,
    };
    PricingConfig {
        models: BTreeMap::from([(MODEL.to_string(), ModelConfig { max_output_tokens: None, price })]),
        ..PricingConfig::default()
    }
}

/// What a provider runs.
#[derive(Clone)]
pub struct ProviderSpec {
    /// Its worker's backend.
    pub backend: BackendConfig,
    /// Its price table.
    pub pricing: PricingConfig,
    /// Whether the requester opens a channel to it (without one, payments to it fail).
    pub channel: bool,
}

impl ProviderSpec {
    /// The deterministic backend (`deterministic-output`), cheap prices, a channel.
    pub fn deterministic() -> Self {
        Self {
            backend: BackendConfig::Deterministic(DeterministicConfig::default()),
            pricing: cheap_pricing(),
            channel: true,
        }
    }

    /// The openai backend against a local upstream, cheap prices, a channel.
    pub fn openai(base_url: &str) -> Self {
        let c = OpenAiConfig {
            base_url: base_url.to_string(),
            api_key: "upstream-key".into(),
            models: vec![MODEL.to_string()],
            ..OpenAiConfig::default()
        };
        Self { backend: BackendConfig::Openai(c), pricing: cheap_pricing(), channel: true }
    }
}

/// A provider node.
pub struct Provider {
    pub node: InProcessNode,
    pub client: Bus,
    pub id: String,
}

/// The requester (with the gateway) and its providers.
pub struct Net {
    pub requester: InProcessNode,
    pub rc: Bus,
    pub providers: Vec<Provider>,
    pub gateway: Option<SocketAddr>,
}

pub async fn lcpd(c: &Bus, req: LcpdApi) -> Result<LcpdApi, lcp::bus::BusError> {
    match c.request(&ServiceId::Lcpd, Body::Lcpd(req), T).await? {
        Body::Lcpd(p) => Ok(p),
        other => panic!("unexpected answer {other:?}"),
    }
}

/// The job rows a node keeps for `job_id` (empty when it has none).
pub async fn job_rows(c: &Bus, job_id: [u8; 32]) -> Vec<JobRow> {
    match lcpd(c, LcpdApi::GetJob { job_id, with_result: false }).await {
        Ok(LcpdApi::Job { rows, .. }) => rows,
        _ => Vec::new(),
    }
}

/// Starts the requester and the providers, connects them, opens the channels asked for, and
/// waits until the requester has every provider's manifest offering [`MODEL`].
pub async fn net(specs: Vec<ProviderSpec>) -> Net {
    // The requester opens no channels by itself: each spec says which providers get one.
    let rdir = tempfile::tempdir().expect("tempdir");
    let mut rcfg = lcp::demo::node_config(rdir.path()).expect("config");
    rcfg.lcpd.auto_channel_sats = 0;
    let requester = InProcessNode::start_with(rdir, rcfg).expect("requester");
    let rc = requester.client().await.expect("requester client");
    lcp::testkit::wait_services(&rc, &[ServiceId::Payd, ServiceId::Lcpd, ServiceId::Peerd])
        .await
        .expect("requester up");
    let mut providers = Vec::new();
    for spec in specs {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = lcp::demo::node_config(dir.path()).expect("config");
        cfg.jobd.backend = spec.backend.clone();
        cfg.jobd.pricing = spec.pricing.clone();
        let node = InProcessNode::start_with(dir, cfg).expect("provider");
        let client = node.client().await.expect("provider client");
        let (id, listen) = lcp::testkit::peerd_address(&client).await.expect("peerd address");
        lcp::testkit::wait_services(&client, &[ServiceId::Payd, ServiceId::Lcpd]).await.expect("provider up");
        if spec.channel {
            lcp::testkit::connect_with_channel(&rc, &id, listen, false, 1_000_000).await.expect("channel");
        } else {
            let req = PeerdApi::Connect { node_id: id.clone(), addr: listen, persistent: false };
            rc.request(&ServiceId::Peerd, Body::Peerd(req), T).await.expect("connect");
        }
        providers.push(Provider { node, client, id });
    }
    let ids: Vec<String> = providers.iter().map(|p| p.id.clone()).collect();
    poll_until(PATIENCE, "every provider's manifest with the model", || async {
        match lcpd(&rc, LcpdApi::ListLcpPeers).await.ok()? {
            LcpdApi::LcpPeers(p) => ids
                .iter()
                .all(|id| {
                    p.iter()
                        .any(|r| &r.node_id == id && r.manifest.tasks.iter().any(|t| t.model.as_deref() == Some(MODEL)))
                })
                .then_some(()),
            _ => None,
        }
    })
    .await
    .expect("manifests");
    Net { requester, rc, providers, gateway: None }
}

impl Net {
    /// A gateway config for the requester's data directory, on a free loopback port.
    pub fn gateway_config(&self, tweak: impl FnOnce(&mut GatewayArgs)) -> GatewayConfig {
        let node = lcp::demo::node_config(self.requester.dir.path()).expect("config").node;
        let mut args = GatewayArgs { gateway_listen: Some("127.0.0.1:0".into()), ..Default::default() };
        tweak(&mut args);
        GatewayConfig::resolve(&node, &args, &GatewayFile::default()).expect("gateway config")
    }

    /// Starts the gateway in the requester node; returns (and keeps) its HTTP address.
    pub async fn start_gateway(&mut self, cfg: GatewayConfig) -> SocketAddr {
        let old = self.gateway.take();
        self.requester.node.start_gateway(cfg).expect("start gateway");
        let addr = poll_until(PATIENCE, "gateway listening", || async {
            let s = services(&self.rc).await.ok()?.into_iter().find(|s| s.id == ServiceId::Gateway)?;
            let a: SocketAddr = s.info.details.iter().find(|(k, _)| k == "listen")?.1.parse().ok()?;
            (Some(a) != old).then_some(a)
        })
        .await
        .expect("gateway address");
        self.gateway = Some(addr);
        addr
    }

    /// Stops the gateway and waits until it has left the bus.
    pub async fn stop_gateway(&mut self) {
        self.requester.node.stop_service("gateway").expect("stop gateway");
        poll_until(PATIENCE, "gateway gone", || async {
            let s = services(&self.rc).await.ok()?;
            (!s.iter().any(|s| s.id == ServiceId::Gateway)).then_some(())
        })
        .await
        .expect("gateway stopped");
    }

    /// The gateway's base URL (`http://ADDR`).
    pub fn base(&self) -> String {
        format!("http://{}", self.gateway.expect("gateway started"))
    }

    pub fn close(&self) {
        self.rc.close();
        for p in &self.providers {
            p.client.close();
        }
    }
}

/// A chat request body.
pub fn chat(content: &str, stream: bool) -> String {
    let s = if stream { r#","stream":true"# } else { "" };
    format!(r#"{{"model":"{MODEL}","messages":[{{"role":"user","content":"{content}"}}]{s}}}"#)
}

/// A whole response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts an OpenAI-shaped error with this status; returns its message. Its `code` is
    /// OpenAI's for the status where OpenAI has one (401, 429, and 404 for an unknown model, which
    /// the caller checks), else null.
    pub fn openai_error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}", String::from_utf8_lossy(&self.body));
        let v = self.json();
        let e = &v["error"];
        assert!(e["message"].is_string() && e["type"].is_string(), "{v}");
        let code = match status {
            401 => serde_json::json!("invalid_api_key"),
            429 => serde_json::json!("insufficient_quota"),
            404 if e["code"].is_string() => serde_json::json!("model_not_found"),
            _ => serde_json::Value::Null,
        };
        assert!(e["param"].is_null() && e["code"] == code, "{v}");
        assert_eq!(e.as_object().map(|o| o.len()), Some(4), "{v}");
        e["message"].as_str().unwrap_or_default().to_string()
    }
}

pub type Client = hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

pub fn client() -> Client {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

/// Sends a request and returns the response head with its body still streaming.
pub async fn send(
    c: &Client,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> http::Response<hyper::body::Incoming> {
    let mut b = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    if !body.is_empty() {
        b = b.header("content-type", "application/json");
    }
    let req = b.body(Full::new(Bytes::from(body.to_string()))).expect("request");
    tokio::time::timeout(T, c.request(req)).await.expect("response in time").expect("response")
}

/// Sends a request and reads the whole response.
pub async fn call(c: &Client, method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let r = send(c, method, url, headers, body).await;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = tokio::time::timeout(T, r.into_body().collect()).await.expect("body in time").expect("body").to_bytes();
    Resp { status, headers, body: body.to_vec() }
}

/// Writes raw bytes to the gateway and reads the answer's status line and head (for requests
/// hyper's client will not send, e.g. a Content-Length it does not keep).
pub async fn raw_head(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(T, s.read(&mut buf)).await.expect("answer in time").expect("read");
        assert!(n > 0, "closed before the head: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
    (status, text)
}
