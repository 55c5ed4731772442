//! jobd's runtime: `run(config, bus, shutdown)`.
//!
//! A worker announces what it serves to lcpd when it joins and every heartbeat, prices jobs
//! (`Quote`), runs them (`Execute`) with its output streamed to lcpd as `Output` events in order,
//! and stops them on `Cancel`. It refuses work beyond its capacity.
//!
//! A backend whose offers change (the openai backend follows what its upstream serves and
//! whether it answers) is followed for the worker's lifetime: the worker announces no offers
//! until they are known and announces again at once when they change, so lcpd's manifest
//! offers only what can be delivered.

use super::backend::{build_backend, ComputeBackend, JobSpec as BackendJob};
use super::pricing::Pricer;
use super::{JobdConfig, JobdError};
use crate::bus::api::jobd::{JobSpec, Offer, OutputItem, WorkerAnnounce};
use crate::bus::api::{Body, JobdApi};
use crate::bus::broker::HEARTBEAT_INTERVAL;
use crate::bus::{Bus, BusError, Corr, ErrorCode, Incoming, RemoteError, ServiceId};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Log target.
pub const TARGET: &str = "jobd";
/// Result chunks buffered between a backend and the bus.
pub const OUTPUT_BUFFER: usize = 16;
/// How long output waits for room on the bus before the job is given up.
pub const OUTPUT_BACKPRESSURE_LIMIT: Duration = Duration::from_secs(30);

type Running = Arc<Mutex<HashMap<[u8; 32], CancellationToken>>>;

struct Worker {
    bus: Bus,
    backend: Arc<dyn ComputeBackend>,
    capacity: u32,
    instance: u64,
    running: Running,
    /// Whether the backend's offers are known (fixed ones are; followed ones once reported).
    offers_known: AtomicBool,
}

impl Worker {
    fn announce(&self) -> Body {
        let offers = if self.offers_known.load(Ordering::SeqCst) {
            self.backend.offers().into_iter().map(|o| Offer { task_kind: o.task_kind, model: Some(o.model) }).collect()
        } else {
            Vec::new()
        };
        let runs = self.running.lock().unwrap_or_else(PoisonError::into_inner).keys().copied().collect();
        Body::Jobd(JobdApi::Announce(WorkerAnnounce { instance: self.instance, offers, capacity: self.capacity, runs }))
    }
}

fn backend_job(spec: &JobSpec) -> BackendJob {
    let mut j = BackendJob::new(
        spec.task_kind.clone(),
        spec.model.clone().unwrap_or_default(),
        Bytes::from(spec.input.clone()),
        spec.input_content_type.clone(),
    );
    j.max_output_bytes = spec.max_output_bytes;
    j
}

/// Runs a jobd worker until `shutdown` fires. Running jobs are cancelled on shutdown.
pub async fn run(config: JobdConfig, bus: Bus, shutdown: CancellationToken) -> Result<(), JobdError> {
    let pricer = Arc::new(Pricer::new(&config.pricing)?);
    let backend = build_backend(&config.backend, pricer)?;
    let models: Vec<String> =
        backend.offers().into_iter().map(|o| o.model).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    bus.set_info(
        None,
        vec![
            ("worker".into(), config.worker_name.clone()),
            ("backend".into(), backend.name().into()),
            ("capacity".into(), config.capacity.to_string()),
            ("models".into(), models.join(",")),
        ],
    );
    let mut offer_updates = backend.offer_updates();
    let backend_offers_fixed = offer_updates.is_none();
    let w = Arc::new(Worker {
        bus: bus.clone(),
        backend,
        capacity: config.capacity,
        instance: rand::random(),
        running: Arc::new(Mutex::new(HashMap::new())),
        offers_known: AtomicBool::new(backend_offers_fixed),
    });
    let mut rx = bus.take_incoming().ok_or(BusError::Taken)?;
    let follow_stop = shutdown.child_token();
    let _stop_following = follow_stop.clone().drop_guard();
    if offer_updates.is_some() {
        let backend = w.backend.clone();
        tokio::spawn(async move { backend.follow(follow_stop).await });
    }
    let mut heartbeat = tokio::time::interval(HEARTBEAT_INTERVAL);
    tracing::info!(target: TARGET, worker = %config.worker_name, backend = w.backend.name(), capacity = config.capacity, "jobd ready");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = heartbeat.tick() => {
                if let Err(e) = bus.send_event(&ServiceId::Lcpd, w.announce()) {
                    tracing::debug!(target: TARGET, "announce failed: {e}");
                }
            }
            changed = offers_changed(&mut offer_updates) => {
                if changed {
                    w.offers_known.store(true, Ordering::SeqCst);
                    let offers = w.backend.offers().len();
                    tracing::debug!(target: TARGET, offers, "offers changed; announcing");
                    if let Err(e) = bus.send_event(&ServiceId::Lcpd, w.announce()) {
                        tracing::debug!(target: TARGET, "announce failed: {e}");
                    }
                } else {
                    offer_updates = None;
                }
            }
            m = rx.recv() => match m {
                Some(m) => handle(&w, m),
                None => break,
            },
        }
    }
    for t in w.running.lock().unwrap_or_else(PoisonError::into_inner).values() {
        t.cancel();
    }
    Ok(())
}

/// Resolves when the followed offers change (`true`) or their sender is gone (`false`); never
/// for fixed offers.
async fn offers_changed(updates: &mut Option<tokio::sync::watch::Receiver<Vec<super::backend::TaskOffer>>>) -> bool {
    match updates {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

fn handle(w: &Arc<Worker>, m: Incoming) {
    let Corr::Request(id) = m.corr else {
        tracing::debug!(target: TARGET, from = %m.from, "event ignored");
        return;
    };
    let answer = match m.body {
        Body::Jobd(JobdApi::Quote(spec)) => match w.backend.quote(&backend_job(&spec)) {
            Ok(q) => Ok(Body::Jobd(JobdApi::Priced { price_msat: q.price_msat })),
            Err(e) => Ok(Body::Jobd(JobdApi::Refused { lcp_code: e.lcp_error_code(), message: e.to_string() })),
        },
        Body::Jobd(JobdApi::Execute(spec)) => execute(w, m.from.clone(), spec),
        Body::Jobd(JobdApi::Cancel { job_id }) => {
            let t = w.running.lock().unwrap_or_else(PoisonError::into_inner).get(&job_id).cloned();
            if let Some(t) = &t {
                t.cancel();
            }
            Ok(Body::Jobd(JobdApi::Cancelled { was_running: t.is_some() }))
        }
        other => Err(RemoteError::new(
            ErrorCode::Unimplemented,
            format!("jobd does not implement {}", crate::bus::broker::body_name(&other)),
        )),
    };
    if let Err(e) = w.bus.reply(&m.from, id, answer.unwrap_or_else(Body::Error)) {
        tracing::warn!(target: TARGET, to = %m.from, "reply failed: {e}");
    }
}

fn execute(w: &Arc<Worker>, owner: ServiceId, spec: JobSpec) -> Result<Body, RemoteError> {
    let token = CancellationToken::new();
    {
        let mut running = w.running.lock().unwrap_or_else(PoisonError::into_inner);
        if running.contains_key(&spec.job_id) {
            return Err(RemoteError::new(ErrorCode::AlreadyExists, "this job runs already"));
        }
        if running.len() as u32 >= w.capacity {
            return Err(RemoteError::new(
                ErrorCode::ResourceExhausted,
                format!("worker is full ({} jobs running)", w.capacity),
            ));
        }
        running.insert(spec.job_id, token.clone());
    }
    let w = w.clone();
    tokio::spawn(async move {
        let job_id = spec.job_id;
        let outcome = run_job(&w, &owner, &spec, token).await;
        w.running.lock().unwrap_or_else(PoisonError::into_inner).remove(&job_id);
        let last = match outcome {
            Ok(item) => item,
            Err(e) => e,
        };
        if let Err(e) = send_output(&w.bus, &owner, job_id, last).await {
            tracing::warn!(target: TARGET, job = %hex::encode(&job_id[..8]), "final output not delivered: {e}");
        }
    });
    Ok(Body::Jobd(JobdApi::Started))
}

/// Runs one job, forwarding output as it arrives; returns the terminal item (End or Failed).
async fn run_job(
    w: &Worker,
    owner: &ServiceId,
    spec: &JobSpec,
    token: CancellationToken,
) -> Result<OutputItem, OutputItem> {
    let job = backend_job(spec);
    let failed = |code: u16, msg: String| OutputItem::Failed { lcp_code: code, message: msg };
    let content_type = w.backend.result_content_type(&job);
    let lost = |e: BusError| failed(super::backend::error_code::RATE_LIMITED, format!("output lost on the bus: {e}"));
    send_output(&w.bus, owner, spec.job_id, OutputItem::Begin { content_type }).await.map_err(lost)?;
    let (tx, mut rx) = mpsc::channel::<Bytes>(OUTPUT_BUFFER);
    let backend = w.backend.clone();
    let exec_token = token.clone();
    let exec = tokio::spawn(async move { backend.execute(&job, tx, exec_token).await });
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = send_output(&w.bus, owner, spec.job_id, OutputItem::Chunk(chunk.to_vec())).await {
            token.cancel();
            return Err(lost(e));
        }
    }
    match exec.await {
        Ok(Ok(o)) => Ok(OutputItem::End { len: o.len, sha256: o.sha256 }),
        Ok(Err(e)) => Err(failed(e.lcp_error_code(), e.to_string())),
        Err(e) => Err(failed(super::backend::error_code::PAYMENT_INVALID, format!("job task failed: {e}"))),
    }
}

/// Sends one output event, waiting (bounded) while the bus pushes back.
async fn send_output(bus: &Bus, owner: &ServiceId, job_id: [u8; 32], item: OutputItem) -> Result<(), BusError> {
    let body = Body::Jobd(JobdApi::Output { job_id, item });
    let deadline = tokio::time::Instant::now() + OUTPUT_BACKPRESSURE_LIMIT;
    let mut wait = Duration::from_millis(1);
    loop {
        match bus.send_event_ref(owner, &body) {
            Err(BusError::Backpressure) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}
