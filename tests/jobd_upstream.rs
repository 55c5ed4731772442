//! A local OpenAI-compatible upstream for jobd tests and benchmarks: a minimal HTTP/1.1 server
//! on 127.0.0.1 (port 0) that records each request and answers with a scripted behaviour
//! (JSON, SSE with gates the test opens, hang, endless stream, big body, a stream paced by the
//! upstream itself, a stream that stalls). It reports when a
//! client closes a connection it was still serving.
//!
//! The provider probes its upstream (`GET /v1/models` and a `POST` of an invalid body to each endpoint);
//! the server answers those with a separate probe script (by default: no `/v1/models`, both
//! endpoints present, as a server that rejects the invalid body with 400) and records them in
//! `probes` only, so `requests` and `events` hold the jobs' requests alone. It can be stopped
//! (connections refused) and resumed on the same port.
//!
//! Other test files and the benchmark include this file with `#[path]`; compiled on its own it
//! runs its self-tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};

/// Bound on the header block of a request.
const MAX_HEAD: usize = 64 * 1024;
/// Bound on the number of events an endless stream sends (keeps load loops finite).
pub const ENDLESS_MAX_EVENTS: usize = 1_000_000;

/// A request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// What the server does with a request.
#[derive(Clone)]
pub enum Script {
    /// Answer with a status, content type and body (Content-Length).
    Respond { status: u16, content_type: &'static str, body: Vec<u8> },
    /// SSE over chunked encoding: event 0 at once, then each further event only after taking
    /// one permit from `gate` (when a gate is given).
    Sse { events: Vec<Vec<u8>>, gate: Option<Arc<Semaphore>> },
    /// Read the request, never answer; report when the client closes.
    Hang,
    /// Send SSE events until the client goes away (at most [`ENDLESS_MAX_EVENTS`]).
    Endless,
    /// A 200 JSON body of `len` bytes.
    Big { len: usize },
    /// SSE over chunked encoding: event 0 at once, the others after one permit of `gate`, then
    /// the connection is closed without the body's end (an upstream that dies mid-stream).
    SseThenDie { events: Vec<Vec<u8>>, gate: Arc<Semaphore> },
    /// SSE over chunked encoding, one event every `every` (the first at once), as a model
    /// generating slowly: the whole stream lasts longer than any single silence in it.
    Paced { events: Vec<Vec<u8>>, every: Duration },
    /// SSE over chunked encoding: the response head and `events`, then silence with the
    /// connection open until the client closes (no events: headers and no body byte).
    Stall { events: Vec<Vec<u8>> },
}

/// What the server observed, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A request arrived.
    Request(String),
    /// A scripted response was fully written.
    Completed,
    /// The client closed the connection while the script was still running.
    ClientClosed,
}

type ScriptFn = dyn Fn(&Recorded) -> Script + Send + Sync;

/// The channels and scripts a (resumed) server feeds.
#[derive(Clone)]
struct Wiring {
    script: Arc<ScriptFn>,
    probe: Arc<ScriptFn>,
    req_tx: mpsc::UnboundedSender<Recorded>,
    ev_tx: mpsc::UnboundedSender<Event>,
    probe_tx: mpsc::UnboundedSender<Recorded>,
}

pub struct Upstream {
    pub addr: std::net::SocketAddr,
    pub requests: mpsc::UnboundedReceiver<Recorded>,
    pub events: mpsc::UnboundedReceiver<Event>,
    /// The provider's probes (see the module docs), as received.
    pub probes: mpsc::UnboundedReceiver<Recorded>,
    wiring: Wiring,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Dropping the server closes its listener and every connection it still serves (an upstream
/// that dies).
impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a request is the provider's probe: `GET .../models` or a `POST` of the probe's invalid
/// body.
pub fn is_probe(req: &Recorded) -> bool {
    (req.method == "GET" && req.path.ends_with("/models"))
        || (req.method == "POST" && req.body == lcp::jobd::backend::openai::PROBE_BODY)
}

fn json(status: u16, body: &str) -> Script {
    Script::Respond { status, content_type: "application/json", body: body.as_bytes().to_vec() }
}

/// The default probe answers: no `/v1/models` (404), both endpoints reject the body with 400.
pub fn probe_default(req: &Recorded) -> Script {
    if req.method == "GET" {
        json(404, r#"{"error":{"message":"not found","type":"invalid_request_error"}}"#)
    } else {
        json(400, r#"{"error":{"message":"you must provide a model parameter","type":"invalid_request_error"}}"#)
    }
}

/// Probe answers of a llama-cpp-python server serving `models`: its model list, 422 from its
/// request validation on `/v1/chat/completions`, and 404 on `/v1/responses`, which it lacks.
pub fn probe_llama_cpp_python(models: &'static [&'static str]) -> impl Fn(&Recorded) -> Script + Send + Sync {
    move |req| {
        if req.method == "GET" {
            let data: Vec<String> =
                models.iter().map(|m| format!(r#"{{"id":"{m}","object":"model","owned_by":"me"}}"#)).collect();
            json(200, &format!(r#"{{"object":"list","data":[{}]}}"#, data.join(",")))
        } else if req.path.ends_with("/chat/completions") {
            json(422, r#"{"detail":[{"type":"missing","loc":["body","messages"],"msg":"Field required"}]}"#)
        } else {
            json(404, r#"{"detail":"Not Found"}"#)
        }
    }
}

impl Upstream {
    /// Starts a server answering every request with `script(&request)` (probes: [`probe_default`]).
    pub async fn start<F>(script: F) -> Upstream
    where
        F: Fn(&Recorded) -> Script + Send + Sync + 'static,
    {
        Self::start_with(probe_default, script).await
    }

    /// Starts a server answering the provider's probes with `probe` and every other request
    /// with `script`.
    pub async fn start_with<P, F>(probe: P, script: F) -> Upstream
    where
        P: Fn(&Recorded) -> Script + Send + Sync + 'static,
        F: Fn(&Recorded) -> Script + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let (req_tx, requests) = mpsc::unbounded_channel();
        let (ev_tx, events) = mpsc::unbounded_channel();
        let (probe_tx, probes) = mpsc::unbounded_channel();
        let wiring = Wiring { script: Arc::new(script), probe: Arc::new(probe), req_tx, ev_tx, probe_tx };
        let task = Some(tokio::spawn(accept(listener, wiring.clone())));
        Upstream { addr, requests, events, probes, wiring, task }
    }

    /// Stops listening and closes every connection: connections are refused until [`resume`](Self::resume).
    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Listens again on the same address, with the same scripts and channels.
    pub async fn resume(&mut self) {
        self.stop();
        let listener = TcpListener::bind(self.addr).await.expect("bind the same loopback port again");
        self.task = Some(tokio::spawn(accept(listener, self.wiring.clone())));
    }

    /// Base URL without `/v1` (the backend appends it).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Next event, or panic after `limit`.
    pub async fn next_event(&mut self, limit: Duration) -> Event {
        tokio::time::timeout(limit, self.events.recv())
            .await
            .expect("upstream event within the time limit")
            .expect("upstream still running")
    }

    /// Waits (bounded) for `want`, skipping other events.
    pub async fn wait_for(&mut self, want: Event, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if self.next_event(left).await == want {
                return;
            }
        }
    }
}

/// Accepts connections until aborted; aborting it aborts every connection it serves.
async fn accept(listener: TcpListener, w: Wiring) {
    let mut conns = tokio::task::JoinSet::new();
    while let Ok((sock, _)) = listener.accept().await {
        while conns.try_join_next().is_some() {}
        let _ = sock.set_nodelay(true);
        let w = w.clone();
        conns.spawn(async move {
            serve(sock, &w).await;
        });
    }
}

async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Recorded> {
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        let mut chunk = [0u8; 4096];
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut start = lines.next()?.split(' ');
    let method = start.next()?.to_owned();
    let path = start.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    buf.drain(..head_end + 4);
    while buf.len() < len {
        let mut chunk = [0u8; 4096];
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body: Vec<u8> = buf.drain(..len).collect();
    Some(Recorded { method, path, headers, body })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        422 => "Unprocessable Entity",
        401 => "Unauthorized",
        403 => "Forbidden",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";

/// Resolves when the peer closes (EOF or error on read).
async fn closed(r: &mut tokio::net::tcp::ReadHalf<'_>) {
    let mut b = [0u8; 1024];
    loop {
        match r.read(&mut b).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

async fn serve(mut sock: TcpStream, w: &Wiring) {
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut sock, &mut buf).await {
        let probe = is_probe(&req);
        let plan = if probe { (w.probe)(&req) } else { (w.script)(&req) };
        // Probes go to their own channel only: events report the jobs' requests.
        let ev_tx = if probe { None } else { Some(&w.ev_tx) };
        if probe {
            let _ = w.probe_tx.send(req);
        } else {
            let _ = w.ev_tx.send(Event::Request(req.path.clone()));
            let _ = w.req_tx.send(req);
        }
        let (mut rd, mut wr) = sock.split();
        let finished = match plan {
            Script::Respond { status, content_type, body } => {
                let head = format!(
                    "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                    reason(status),
                    body.len()
                );
                let mut all = head.into_bytes();
                all.extend_from_slice(&body);
                wr.write_all(&all).await.is_ok()
            }
            Script::Big { len } => {
                let head =
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n");
                let write = async {
                    wr.write_all(head.as_bytes()).await?;
                    let block = vec![b'x'; 64 * 1024];
                    let mut left = len;
                    while left > 0 {
                        let n = left.min(block.len());
                        wr.write_all(&block[..n]).await?;
                        left -= n;
                    }
                    Ok::<_, std::io::Error>(())
                };
                tokio::select! {
                    r = write => r.is_ok(),
                    () = closed(&mut rd) => false,
                }
            }
            Script::Sse { events, gate } => {
                let write = async {
                    wr.write_all(SSE_HEAD).await?;
                    for (i, ev) in events.iter().enumerate() {
                        if i > 0 {
                            if let Some(g) = &gate {
                                g.acquire().await.expect("gate open").forget();
                            }
                        }
                        wr.write_all(&chunk(ev)).await?;
                        wr.flush().await?;
                    }
                    wr.write_all(b"0\r\n\r\n").await?;
                    Ok::<_, std::io::Error>(())
                };
                tokio::select! {
                    r = write => r.is_ok(),
                    () = closed(&mut rd) => false,
                }
            }
            Script::SseThenDie { events, gate } => {
                let write = async {
                    wr.write_all(SSE_HEAD).await?;
                    for (i, ev) in events.iter().enumerate() {
                        if i == 1 {
                            gate.acquire().await.expect("gate open").forget();
                        }
                        wr.write_all(&chunk(ev)).await?;
                        wr.flush().await?;
                    }
                    Ok::<_, std::io::Error>(())
                };
                tokio::select! {
                    _ = write => {}
                    () = closed(&mut rd) => {}
                }
                // Dropping the socket closes the connection with the body unfinished.
                return;
            }
            Script::Hang => {
                closed(&mut rd).await;
                false
            }
            Script::Paced { events, every } => {
                let write = async {
                    wr.write_all(SSE_HEAD).await?;
                    for (i, ev) in events.iter().enumerate() {
                        if i > 0 {
                            // The upstream's own pace (generation time), not test ordering.
                            tokio::time::sleep(every).await;
                        }
                        wr.write_all(&chunk(ev)).await?;
                        wr.flush().await?;
                    }
                    wr.write_all(b"0\r\n\r\n").await?;
                    Ok::<_, std::io::Error>(())
                };
                tokio::select! {
                    r = write => r.is_ok(),
                    () = closed(&mut rd) => false,
                }
            }
            Script::Stall { events } => {
                let mut head = SSE_HEAD.to_vec();
                for ev in &events {
                    head.extend_from_slice(&chunk(ev));
                }
                if wr.write_all(&head).await.is_ok() && wr.flush().await.is_ok() {
                    closed(&mut rd).await;
                }
                false
            }
            Script::Endless => {
                let write = async {
                    wr.write_all(SSE_HEAD).await?;
                    for i in 0..ENDLESS_MAX_EVENTS {
                        let ev = format!("data: {{\"n\":{i}}}\n\n");
                        wr.write_all(&chunk(ev.as_bytes())).await?;
                    }
                    wr.write_all(b"0\r\n\r\n").await?;
                    Ok::<_, std::io::Error>(())
                };
                tokio::select! {
                    r = write => r.is_ok(),
                    () = closed(&mut rd) => false,
                }
            }
        };
        if let Some(ev_tx) = ev_tx {
            let _ = ev_tx.send(if finished { Event::Completed } else { Event::ClientClosed });
        }
        if !finished {
            return;
        }
    }
}

/// SSE events of a chat completion streaming `tokens`, ending with `[DONE]`.
pub fn chat_sse_events(tokens: &[&str]) -> Vec<Vec<u8>> {
    let mut events: Vec<Vec<u8>> = tokens
        .iter()
        .map(|t| {
            format!(
                "data: {{\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{t}\"}}}}]}}\n\n"
            )
            .into_bytes()
        })
        .collect();
    events.push(b"data: [DONE]\n\n".to_vec());
    events
}

#[cfg(test)]
#[tokio::test]
async fn answers_json_and_reports_completion() {
    let mut up =
        Upstream::start(|_| Script::Respond { status: 200, content_type: "application/json", body: b"{}".to_vec() })
            .await;
    let mut sock = TcpStream::connect(up.addr).await.expect("connect");
    sock.write_all(b"POST /v1/x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi").await.expect("write");
    let mut got = Vec::new();
    let mut b = [0u8; 256];
    while !got.ends_with(b"{}") {
        let n = sock.read(&mut b).await.expect("read");
        assert!(n > 0, "server closed early");
        got.extend_from_slice(&b[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
    let req = up.requests.recv().await.expect("recorded");
    assert_eq!(req.body, b"hi");
    assert_eq!(req.path, "/v1/x");
    up.wait_for(Event::Completed, Duration::from_secs(5)).await;
}
