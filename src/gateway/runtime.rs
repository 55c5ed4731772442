//! The gateway service: an HTTP/1.1 server (hyper) whose job endpoints buy each request as a paid
//! LCP job through lcpd's client API on the bus.
//!
//! One manager task owns the service's bus queue: lcpd's job events arrive there and are handed,
//! by job id, to the request that runs the job (see [`super::tracker`]). Each HTTP request quotes
//! the candidate providers concurrently, then executes the cheapest quote, failing over to the
//! next when a provider fails before payment. A streamed answer is a body fed by the job's events
//! as they arrive; dropping it (the client went away) cancels the job.
//!
//! Time-outs bound silence, not length: the result's first byte must come within the first-byte
//! time-out of `Execute` (else 504), then each chunk within the idle time-out of the one before
//! (else 504 while nothing was sent, an error event in a stream already answered). A job given up
//! so is cancelled at the provider with a reason that says which bound expired.

use super::body::{Finish, GatewayBody, JobStream};
use super::budget::Budget;
use super::choice;
use super::error::GatewayError;
use super::http::{self as h, Api, RequestInfo, Route};
use super::opts::{GatewayConfig, MAX_BODY_BYTES, MAX_CONNECTIONS};
use super::tracker::{Action, Tracker, FIRST_BYTE_TIMEOUT_REASON, IDLE_TIMEOUT_REASON};
use crate::bus::api::lcpd::{JobEvent, JobOutcomeRow, LcpPeerRow, LcpdApi, QuoteArgs, QuoteRow};
use crate::bus::api::Body;
use crate::bus::{Bus, BusError, Corr, Incoming, ServiceId};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH};
use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming as HttpBody;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const TARGET: &str = "gateway";
/// Time for a client to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for a client to send its request body.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(15);
/// Time lcpd gets to answer a `CancelJob`.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(2);
/// How often tracked jobs are checked for staleness.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// A tracked job whose result has not moved for lcpd's deadline plus this is dropped (lcpd never
/// finished it).
const SWEEP_GRACE: Duration = Duration::from_secs(30);
/// lcpd's deadline for a job is the gateway's longer silence bound plus this, so that the
/// gateway's own bounds fire first: it answers 504 and cancels the job with its reason.
const EXECUTE_SLACK: Duration = Duration::from_secs(5);
/// How long open connections get to finish at shutdown (then their jobs are cancelled; the whole
/// stop fits in the node's shutdown grace).
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// Reason sent with `CancelJob` for quotes that were not used.
const QUOTE_NOT_CHOSEN: &str = "quote not chosen";

/// Messages to the manager task.
enum Cmd {
    /// The client of an executing job went away.
    Abandon([u8; 32]),
    /// The client of an executing job closed after the stream's terminal event.
    Delivered([u8; 32]),
    /// A quote that will not be executed.
    CancelQuote([u8; 32]),
    /// The request gave up on its executing job (a time-out), for this reason.
    GiveUp([u8; 32], &'static str),
}

struct Shared {
    cfg: GatewayConfig,
    bus: Bus,
    budget: Budget,
    tracker: Mutex<Tracker>,
    cmds: mpsc::UnboundedSender<Cmd>,
}

impl Shared {
    fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

use crate::clock::now_secs;

/// Runs the gateway until `shutdown` fires: binds the HTTP listener (its address goes into the
/// service's status as `listen`), serves requests, and cancels the jobs still running at the end.
pub async fn run(cfg: GatewayConfig, bus: Bus, shutdown: CancellationToken) -> Result<(), GatewayError> {
    let budget = Budget::open(&cfg.db_path, cfg.daily_budget_msat)?;
    let listener = TcpListener::bind(cfg.listen).await?;
    let local = listener.local_addr()?;
    bus.set_info(None, vec![("listen".into(), local.to_string())]);
    tracing::info!(
        target: TARGET,
        listen = %local,
        auth = !cfg.api_keys.is_empty(),
        max_price_msat = cfg.max_price_msat.unwrap_or(0),
        daily_budget_msat = cfg.daily_budget_msat.unwrap_or(0),
        "gateway listening"
    );
    let incoming = bus.take_incoming().ok_or(BusError::Taken)?;
    let (cmds, cmd_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared { cfg, bus, budget, tracker: Mutex::new(Tracker::default()), cmds });
    // The manager outlives the connections, so that jobs of responses still streaming during the
    // drain are tracked (and cancelled when they are cut).
    let stop_manager = CancellationToken::new();
    let manager = tokio::spawn(manage(Arc::clone(&shared), incoming, cmd_rx, stop_manager.clone()));
    let conns = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.cancelled() => break,
        };
        let (sock, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(target: TARGET, "accept failed: {e}");
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = sock.set_nodelay(true);
        conns.spawn(serve_conn(Arc::clone(&shared), sock, shutdown.clone(), permit));
    }
    drop(listener);
    conns.close();
    if tokio::time::timeout(DRAIN_GRACE + Duration::from_millis(500), conns.wait()).await.is_err() {
        tracing::warn!(target: TARGET, "connections still open at shutdown");
    }
    stop_manager.cancel();
    if let Err(e) = manager.await {
        tracing::error!(target: TARGET, "manager task failed: {e}");
    }
    Ok(())
}

async fn serve_conn(shared: Arc<Shared>, sock: TcpStream, shutdown: CancellationToken, _slot: OwnedSemaphorePermit) {
    let svc = hyper::service::service_fn(move |req| {
        let s = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(handle(s, req).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(sock), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(target: TARGET, "connection ended: {e}");
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN_GRACE, conn.as_mut()).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The manager: lcpd's events, abandoned jobs, budget bookkeeping.

async fn manage(
    shared: Arc<Shared>,
    mut incoming: mpsc::Receiver<Incoming>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    stop: CancellationToken,
) {
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let max_age = lcpd_deadline(&shared.cfg) + SWEEP_GRACE;
    loop {
        tokio::select! {
            m = incoming.recv() => match m {
                Some(m) => on_incoming(&shared, m),
                None => break,
            },
            c = cmds.recv() => match c {
                Some(c) => on_cmd(&shared, c),
                None => break,
            },
            _ = sweep.tick() => {
                let actions = shared.tracker().sweep(Instant::now(), max_age);
                if !actions.is_empty() {
                    tracing::warn!(target: TARGET, "dropping jobs lcpd did not finish in time");
                }
                apply(&shared, actions);
            }
            _ = stop.cancelled() => break,
        }
    }
    // Cancel what is still running (bounded: every cancel has its own short timeout). Quotes and
    // jobs given up by requests cut at shutdown are still in the queue or the tracker.
    let mut cancels = tokio::task::JoinSet::new();
    let mut last = Vec::new();
    while let Ok(c) = cmds.try_recv() {
        match c {
            Cmd::CancelQuote(id) => {
                cancels.spawn(cancel_job(shared.bus.clone(), id, QUOTE_NOT_CHOSEN));
            }
            Cmd::Abandon(id) => last.extend(shared.tracker().abandon(id)),
            Cmd::GiveUp(id, reason) => last.extend(shared.tracker().give_up(id, reason)),
            Cmd::Delivered(id) => shared.tracker().delivered(id),
        }
    }
    last.extend(shared.tracker().drain());
    for a in last {
        match a {
            Action::Cancel { job_id, reason } => {
                cancels.spawn(cancel_job(shared.bus.clone(), job_id, reason));
            }
            other => apply(&shared, vec![other]),
        }
    }
    while cancels.join_next().await.is_some() {}
}

fn on_incoming(shared: &Arc<Shared>, m: Incoming) {
    match (m.corr, m.body) {
        (Corr::Request(id), body) => {
            let name = crate::bus::broker::body_name(&body);
            let e = crate::bus::RemoteError::new(
                crate::bus::ErrorCode::Unimplemented,
                format!("gateway does not implement {name}"),
            );
            if let Err(e) = shared.bus.reply_err(&m.from, id, e) {
                tracing::debug!(target: TARGET, to = %m.from, "reply failed: {e}");
            }
        }
        (_, Body::Lcpd(LcpdApi::JobEvent { job_id, event })) => {
            let mut tracker = shared.tracker();
            if matches!(event, JobEvent::Begin { .. } | JobEvent::Chunk(_) | JobEvent::End { .. }) {
                tracker.heard(&job_id, Instant::now());
            }
            let actions = tracker.on_event(job_id, event);
            drop(tracker);
            apply(shared, actions);
        }
        (_, other) => {
            tracing::debug!(target: TARGET, from = %m.from, "ignored {}", crate::bus::broker::body_name(&other));
        }
    }
}

fn on_cmd(shared: &Arc<Shared>, c: Cmd) {
    match c {
        Cmd::Abandon(job_id) => {
            let actions = shared.tracker().abandon(job_id);
            apply(shared, actions);
        }
        Cmd::Delivered(job_id) => shared.tracker().delivered(job_id),
        Cmd::GiveUp(job_id, reason) => {
            let actions = shared.tracker().give_up(job_id, reason);
            apply(shared, actions);
        }
        Cmd::CancelQuote(job_id) => {
            tokio::spawn(cancel_job(shared.bus.clone(), job_id, QUOTE_NOT_CHOSEN));
        }
    }
}

fn apply(shared: &Arc<Shared>, actions: Vec<Action>) {
    for a in actions {
        match a {
            Action::Commit { job_id, peer, price_msat } => {
                if let Err(e) = shared.budget.commit(&job_id, &peer, price_msat, now_secs()) {
                    tracing::error!(target: TARGET, job = %hex::encode(&job_id[..8]), "paid price not recorded: {e}");
                }
            }
            Action::Release { job_id } => shared.budget.release(&job_id),
            Action::Cancel { job_id, reason } => {
                tokio::spawn(cancel_job(shared.bus.clone(), job_id, reason));
            }
        }
    }
}

async fn cancel_job(bus: Bus, job_id: [u8; 32], reason: &'static str) {
    let req = LcpdApi::CancelJob { job_id, reason: Some(reason.to_string()) };
    match bus.request(&ServiceId::Lcpd, Body::Lcpd(req), CANCEL_TIMEOUT).await {
        Ok(_) => tracing::debug!(target: TARGET, job = %hex::encode(&job_id[..8]), reason, "job cancelled"),
        // Usually the job ended meanwhile.
        Err(e) => tracing::debug!(target: TARGET, job = %hex::encode(&job_id[..8]), "cancel: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Requests.

async fn handle(shared: Arc<Shared>, req: Request<HttpBody>) -> Response<GatewayBody> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = h::route(&method, &path);
    let resp = match answer(&shared, route, &path, req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(target: TARGET, %method, %path, "refused: {e}");
            error_response(&e)
        }
    };
    tracing::info!(
        target: TARGET,
        %method,
        %path,
        status = resp.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    resp
}

async fn answer(
    shared: &Arc<Shared>,
    route: Route,
    path: &str,
    req: Request<HttpBody>,
) -> Result<Response<GatewayBody>, GatewayError> {
    let keys = &shared.cfg.api_keys;
    if !keys.is_empty() && route.needs_auth(path) {
        let header = req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes);
        if !h::authorized(header, keys) {
            return Err(GatewayError::Unauthorized);
        }
    }
    match route {
        Route::Healthz => Ok(with_type(Response::new(GatewayBody::full(h::HEALTHZ_BODY)), "text/plain; charset=utf-8")),
        Route::Models => {
            let peers = list_peers(shared, shared.cfg.quote_timeout).await?;
            let body = h::models_body(&choice::models(&peers), now_secs());
            Ok(with_type(Response::new(GatewayBody::full(body)), "application/json"))
        }
        Route::MethodNotAllowed(allow) => Err(GatewayError::MethodNotAllowed(allow)),
        Route::NotFound => Err(GatewayError::NotFound(path.to_string())),
        Route::Job(api) => run_job(shared, api, req).await,
    }
}

fn with_type(mut r: Response<GatewayBody>, content_type: &str) -> Response<GatewayBody> {
    let v = HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    r.headers_mut().insert(CONTENT_TYPE, v);
    r
}

/// The OpenAI-shaped answer to an error.
fn error_response(e: &GatewayError) -> Response<GatewayBody> {
    let body = h::error_body(&e.client_message(), e.error_type(), e.openai_code());
    let mut r = with_type(Response::new(GatewayBody::full(body)), "application/json");
    *r.status_mut() = e.status();
    match e {
        GatewayError::Unauthorized => {
            let v = format!("Bearer realm=\"{}\"", h::AUTH_REALM);
            if let Ok(v) = HeaderValue::from_str(&v) {
                r.headers_mut().insert(WWW_AUTHENTICATE, v);
            }
        }
        GatewayError::MethodNotAllowed(allow) => {
            r.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
        }
        _ => {}
    }
    r
}

async fn list_peers(shared: &Shared, wait: Duration) -> Result<Vec<LcpPeerRow>, GatewayError> {
    match shared.bus.request(&ServiceId::Lcpd, Body::Lcpd(LcpdApi::ListLcpPeers), wait).await {
        Ok(Body::Lcpd(LcpdApi::LcpPeers(p))) => Ok(p),
        Ok(other) => Err(unexpected("list providers", &other)),
        Err(e) => Err(GatewayError::lcpd("list providers", e)),
    }
}

fn unexpected(context: &'static str, body: &Body) -> GatewayError {
    GatewayError::lcpd(context, BusError::UnexpectedReply(crate::bus::broker::body_name(body).to_string()))
}

async fn read_body(req: Request<HttpBody>) -> Result<Bytes, GatewayError> {
    let enc = req.headers().get(CONTENT_ENCODING).map(HeaderValue::as_bytes);
    if !h::identity_encoding(enc) {
        return Err(GatewayError::UnsupportedEncoding(String::from_utf8_lossy(enc.unwrap_or_default()).into_owned()));
    }
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(GatewayError::BodyTooLarge(MAX_BODY_BYTES));
    }
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY_BYTES);
    match tokio::time::timeout(BODY_READ_TIMEOUT, limited.collect()).await {
        Err(_) => Err(GatewayError::BodyTimeout(BODY_READ_TIMEOUT)),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(GatewayError::BodyTooLarge(MAX_BODY_BYTES))
        }
        Ok(Err(e)) => Err(GatewayError::BodyRead(e.to_string())),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// Quotes that were asked for but not executed: cancelled at lcpd when this is dropped, so that
/// providers stop counting them (in-flight surge pricing counts unpaid quotes).
struct UnusedQuotes {
    shared: Arc<Shared>,
    ids: Vec<[u8; 32]>,
}

impl UnusedQuotes {
    fn take(&mut self, job_id: &[u8; 32]) {
        self.ids.retain(|i| i != job_id);
    }
}

impl Drop for UnusedQuotes {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            let _ = self.shared.cmds.send(Cmd::CancelQuote(id));
        }
    }
}

/// An executing job of a request: dropped before the job finished (the client went away, or the
/// gateway gave up), it abandons the job, which cancels it.
struct JobGuard {
    shared: Arc<Shared>,
    job_id: [u8; 32],
    done: bool,
}

impl JobGuard {
    /// The request gives up on the job (a time-out): it is cancelled with `reason`.
    fn give_up(&mut self, reason: &'static str) {
        self.done = true;
        let _ = self.shared.cmds.send(Cmd::GiveUp(self.job_id, reason));
    }
}

impl Finish for JobGuard {
    fn finish(&mut self) {
        self.done = true;
    }

    fn delivered(&mut self) {
        self.done = true;
        let _ = self.shared.cmds.send(Cmd::Delivered(self.job_id));
    }

    fn stalled(&mut self) {
        self.give_up(IDLE_TIMEOUT_REASON);
    }
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.shared.cmds.send(Cmd::Abandon(self.job_id));
        }
    }
}

/// How one provider's attempt failed.
enum Failure {
    /// Before payment: the next provider may be tried.
    Retry(GatewayError),
    /// After payment (or with the outcome unknown): the request fails.
    Fatal(GatewayError),
}

async fn run_job(
    shared: &Arc<Shared>,
    api: Api,
    req: Request<HttpBody>,
) -> Result<Response<GatewayBody>, GatewayError> {
    let body = read_body(req).await?;
    let info = h::validate(api, &body).map_err(GatewayError::InvalidRequest)?;
    let cfg = &shared.cfg;
    let quote_deadline = tokio::time::Instant::now() + cfg.quote_timeout;
    let peers = list_peers(shared, cfg.quote_timeout).await?;
    let candidates = choice::candidates(&peers, &cfg.model_map, api.task_kind(), &info.model)?;
    let (quotes, mut errors) = quote_all(shared, &candidates, api, &info, &body, quote_deadline).await;
    let mut unused = UnusedQuotes { shared: Arc::clone(shared), ids: quotes.iter().map(|q| q.job_id).collect() };
    let mut last = errors.pop();
    for q in choice::rank(quotes) {
        unused.take(&q.job_id);
        shared.budget.reserve(q.job_id, q.price_msat, now_secs())?;
        match execute(shared, &q, &info).await {
            Ok(resp) => return Ok(resp),
            Err(Failure::Retry(e)) => {
                tracing::info!(
                    target: TARGET,
                    peer = %q.peer,
                    job = %hex::encode(&q.job_id[..8]),
                    "provider failed before payment, trying the next: {e}"
                );
                last = Some(e);
            }
            Err(Failure::Fatal(e)) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| GatewayError::ProviderFailed("no provider quoted the job".into())))
}

async fn quote_all(
    shared: &Arc<Shared>,
    candidates: &[String],
    api: Api,
    info: &RequestInfo,
    body: &Bytes,
    deadline: tokio::time::Instant,
) -> (Vec<QuoteRow>, Vec<GatewayError>) {
    let cfg = &shared.cfg;
    let job_secs = (cfg.quote_timeout + lcpd_deadline(cfg)).as_secs();
    let mut set = tokio::task::JoinSet::new();
    for peer in candidates {
        let args = QuoteArgs {
            peer: peer.clone(),
            task_kind: api.task_kind().to_string(),
            model: Some(info.model.clone()),
            input: body.to_vec(),
            input_content_type: None,
            max_price_msat: cfg.max_price_msat,
            timeout_secs: Some(u32::try_from(job_secs).unwrap_or(u32::MAX)),
        };
        let bus = shared.bus.clone();
        let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
        set.spawn(async move {
            (args.peer.clone(), bus.request(&ServiceId::Lcpd, Body::Lcpd(LcpdApi::RequestQuote(args)), wait).await)
        });
    }
    let (mut quotes, mut errors) = (Vec::new(), Vec::new());
    while let Some(joined) = set.join_next().await {
        let Ok((peer, r)) = joined else { continue };
        match r {
            Ok(Body::Lcpd(LcpdApi::Quote(q))) => quotes.push(q),
            Ok(other) => errors.push(unexpected("quote", &other)),
            Err(e) => {
                tracing::info!(target: TARGET, %peer, "no quote: {e}");
                errors.push(GatewayError::lcpd("quote", e));
            }
        }
    }
    (quotes, errors)
}

fn lcp_headers(r: &mut Response<GatewayBody>, q: &QuoteRow) {
    let hdrs = r.headers_mut();
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            hdrs.insert(HeaderName::from_static(name), v);
        }
    };
    put(h::H_PEER_ID, q.peer.clone());
    put(h::H_JOB_ID, hex::encode(q.job_id));
    put(h::H_PRICE_MSAT, q.price_msat.to_string());
    put(h::H_TERMS_HASH, hex::encode(q.terms_hash));
}

fn full_response(q: &QuoteRow, content_type: &str, body: Vec<u8>) -> Response<GatewayBody> {
    let mut r = with_type(Response::new(GatewayBody::full(body)), content_type);
    lcp_headers(&mut r, q);
    r
}

fn stream_response(q: &QuoteRow, content_type: Option<&str>, stream: JobStream) -> Response<GatewayBody> {
    let mut r =
        with_type(Response::new(GatewayBody::Job(Box::new(stream))), content_type.unwrap_or(h::DEFAULT_SSE_TYPE));
    r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r.headers_mut().insert(HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no"));
    lcp_headers(&mut r, q);
    r
}

/// Executes one quote: pays it and answers the request with its result (streamed when the client
/// asked for a stream).
async fn execute(shared: &Arc<Shared>, q: &QuoteRow, info: &RequestInfo) -> Result<Response<GatewayBody>, Failure> {
    let cfg = &shared.cfg;
    let (tx, mut rx) = mpsc::unbounded_channel();
    shared.tracker().insert(q.job_id, &q.peer, q.price_msat, tx, Instant::now());
    let mut guard = JobGuard { shared: Arc::clone(shared), job_id: q.job_id, done: false };
    let exec_secs = u32::try_from(lcpd_deadline(cfg).as_secs()).unwrap_or(u32::MAX);
    let req = LcpdApi::Execute { job_id: q.job_id, max_price_msat: cfg.max_price_msat, timeout_secs: Some(exec_secs) };
    match shared.bus.request(&ServiceId::Lcpd, Body::Lcpd(req), cfg.quote_timeout).await {
        Ok(Body::Lcpd(LcpdApi::Executing { .. })) => {}
        Err(e @ BusError::Remote(_)) => {
            // lcpd refused: nothing was paid.
            guard.done = true;
            let actions = shared.tracker().refused(&q.job_id);
            apply(shared, actions);
            return Err(Failure::Retry(GatewayError::lcpd("execute", e)));
        }
        // No answer: lcpd may be paying; the guard abandons the job (cancelled once its payment
        // outcome is known).
        Ok(other) => return Err(Failure::Fatal(unexpected("execute", &other))),
        Err(e) => return Err(Failure::Fatal(GatewayError::lcpd("execute", e))),
    }
    // Until the first result byte the first-byte bound, then the idle bound from the last chunk.
    let (mut limit, mut reason) = (cfg.first_byte_timeout, FIRST_BYTE_TIMEOUT_REASON);
    let mut deadline = tokio::time::Instant::now() + limit;
    let (mut paid, mut started) = (false, false);
    let mut content_type: Option<String> = None;
    let mut buf = Vec::new();
    loop {
        let ev = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => {
                tracing::info!(target: TARGET, peer = %q.peer, job = %hex::encode(&q.job_id[..8]), "{reason}");
                guard.give_up(reason);
                return Err(Failure::Fatal(GatewayError::Timeout(limit)));
            }
            Ok(None) => return Err(Failure::Fatal(GatewayError::ProviderFailed("the job's events stopped".into()))),
            Ok(Some(ev)) => ev,
        };
        if matches!(ev, JobEvent::Begin { .. } | JobEvent::Chunk(_) | JobEvent::End { .. }) {
            (limit, reason) = (cfg.idle_timeout, IDLE_TIMEOUT_REASON);
            deadline = tokio::time::Instant::now() + limit;
        }
        match ev {
            JobEvent::Paid { .. } => paid = true,
            JobEvent::Begin { content_type: ct, content_encoding } => {
                started = true;
                // lcpd hands over the whole result again when it accepted another delivery of it
                // than the one it began to forward.
                buf.clear();
                if !h::identity_encoding(Some(content_encoding.as_bytes())) {
                    return Err(Failure::Fatal(GatewayError::ResultEncoding(content_encoding)));
                }
                if info.stream {
                    tracing::debug!(target: TARGET, peer = %q.peer, job = %hex::encode(&q.job_id[..8]), "streaming");
                    let s = JobStream::new(info.api, None, rx, Box::new(guard), cfg.idle_timeout);
                    return Ok(stream_response(q, Some(&ct), s));
                }
                content_type = Some(ct);
            }
            JobEvent::Chunk(c) => {
                started = true;
                if info.stream {
                    let s = JobStream::new(info.api, Some(Bytes::from(c)), rx, Box::new(guard), cfg.idle_timeout);
                    return Ok(stream_response(q, content_type.as_deref(), s));
                }
                buf.extend_from_slice(&c);
            }
            JobEvent::End { .. } => {}
            JobEvent::Result(JobOutcomeRow::Ok { content_type: ct, .. }) => {
                guard.done = true;
                let ct = content_type.unwrap_or(ct);
                let ct = if ct.is_empty() {
                    if info.stream {
                        h::DEFAULT_SSE_TYPE.to_string()
                    } else {
                        h::DEFAULT_JSON_TYPE.to_string()
                    }
                } else {
                    ct
                };
                tracing::debug!(target: TARGET, peer = %q.peer, job = %hex::encode(&q.job_id[..8]), price_msat = q.price_msat, "job done");
                return Ok(full_response(q, &ct, buf));
            }
            JobEvent::Result(outcome) => {
                guard.done = true;
                let retry = may_try_next(&outcome, paid, started);
                let msg = match outcome {
                    JobOutcomeRow::Failed { message, .. } if !message.is_empty() => {
                        format!("provider job failed: {message}")
                    }
                    JobOutcomeRow::Cancelled => "provider job was cancelled".to_string(),
                    _ => "provider returned non-ok status".to_string(),
                };
                let e = GatewayError::ProviderFailed(msg);
                return Err(if retry { Failure::Retry(e) } else { Failure::Fatal(e) });
            }
        }
    }
}

/// The deadline lcpd gets for a job's result: it bounds the result's silence as the gateway's
/// own bounds do, a little longer, so that those fire first.
fn lcpd_deadline(cfg: &GatewayConfig) -> Duration {
    cfg.first_byte_timeout.max(cfg.idle_timeout) + EXECUTE_SLACK
}

/// Whether a job that ended without a result may be bought from the next provider: only when
/// it certainly cost nothing. A failure while the payment was in flight (the provider's error,
/// our deadline, a cancel) may still have paid this provider.
fn may_try_next(outcome: &JobOutcomeRow, paid: bool, started: bool) -> bool {
    outcome.nothing_paid() && !paid && !started
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_job_that_certainly_cost_nothing_fails_over() {
        let failed = |nothing_paid| JobOutcomeRow::Failed { lcp_code: None, message: "x".into(), nothing_paid };
        assert!(may_try_next(&failed(true), false, false));
        // The provider's error or our deadline while paying: the payment may have gone through.
        assert!(!may_try_next(&failed(false), false, false));
        assert!(!may_try_next(&JobOutcomeRow::Cancelled, false, false));
        // Paid, or the result had started: never a second provider.
        assert!(!may_try_next(&failed(true), true, false));
        assert!(!may_try_next(&failed(true), false, true));
    }
}
