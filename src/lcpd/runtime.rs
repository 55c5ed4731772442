//! lcpd's runtime: `run(config, bus, shutdown)`.

use super::dispatch::{Dispatcher, Owner};
use super::workers::PoolError;
use super::{LcpdConfig, LcpdError};
use crate::bus::api::jobd::JobSpec;
use crate::bus::api::lcpd::TestJob;
use crate::bus::api::{Body, JobdApi, LcpdApi};
use crate::bus::{Bus, BusError, Corr, ErrorCode, Incoming, RemoteError, ServiceId, ToErrorCode};
use crate::datadir::Datadir;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Log target.
pub const TARGET: &str = "lcpd";

/// Schema of `lcpd.db` (forward-only migrations; see `crate::store`).
pub const MIGRATIONS: &[&str] = &[];

/// How often silent workers are looked for.
pub const WORKER_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Content type of OpenAI-kind inputs.
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

impl ToErrorCode for PoolError {
    fn code(&self) -> ErrorCode {
        match self {
            PoolError::NoWorker { .. } => ErrorCode::FailedPrecondition,
            PoolError::Full(_) => ErrorCode::ResourceExhausted,
            PoolError::Duplicate => ErrorCode::AlreadyExists,
        }
    }
}

/// Runs lcpd until `shutdown` fires.
pub async fn run(config: LcpdConfig, bus: Bus, shutdown: CancellationToken) -> Result<(), LcpdError> {
    let dd = Datadir::open(&config.node.datadir)?;
    let _db = crate::store::open(&dd.db_path("lcpd"), MIGRATIONS)?;
    bus.set_info(
        None,
        vec![
            ("network".into(), config.node.network.to_string()),
            ("max_inflight_jobs".into(), config.max_inflight_jobs.to_string()),
        ],
    );
    let mut rx = bus.take_incoming().ok_or(BusError::Taken)?;
    let (ex_tx, mut ex_rx) = mpsc::channel(1024);
    let mut d = Dispatcher::new(bus.clone(), config.max_inflight_jobs as usize, ex_tx);
    let mut tick = tokio::time::interval(WORKER_CHECK_INTERVAL);
    tracing::info!(target: TARGET, "lcpd ready");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            m = rx.recv() => match m {
                Some(m) => handle(&mut d, &bus, m),
                None => break,
            },
            Some(ex) = ex_rx.recv() => d.on_executed(ex),
            _ = tick.tick() => d.tick(),
        }
    }
    Ok(())
}

fn handle(d: &mut Dispatcher, bus: &Bus, m: Incoming) {
    let from = m.from;
    match (m.corr, m.body) {
        (Corr::Event, Body::Jobd(JobdApi::Announce(a))) if matches!(from, ServiceId::Jobd(_)) => d.on_announce(from, a),
        (Corr::Event, Body::Jobd(JobdApi::Output { job_id, item })) => d.on_output(&from, job_id, item),
        (Corr::Request(id), body) => {
            let answer = request(d, &from, body).unwrap_or_else(Body::Error);
            if let Err(e) = bus.reply(&from, id, answer) {
                tracing::warn!(target: TARGET, to = %from, "reply failed: {e}");
            }
        }
        (_, body) => tracing::debug!(target: TARGET, %from, "ignored: {}", crate::bus::broker::body_name(&body)),
    }
}

fn request(d: &mut Dispatcher, from: &ServiceId, body: Body) -> Result<Body, RemoteError> {
    match body {
        Body::Lcpd(LcpdApi::ListWorkers) => Ok(Body::Lcpd(LcpdApi::Workers(d.worker_rows()))),
        Body::Lcpd(LcpdApi::RunTestJob(t)) => run_test_job(d, from, t),
        other => Err(RemoteError::new(
            ErrorCode::Unimplemented,
            format!("lcpd does not implement {}", crate::bus::broker::body_name(&other)),
        )),
    }
}

/// A test job from an operator's client: run on a worker without LCP or payment.
fn run_test_job(d: &mut Dispatcher, from: &ServiceId, t: TestJob) -> Result<Body, RemoteError> {
    if !matches!(from, ServiceId::Client(_)) {
        return Err(RemoteError::new(ErrorCode::PermissionDenied, "test jobs are for clients"));
    }
    let job_id: [u8; 32] = rand::random();
    let spec = JobSpec {
        job_id,
        task_kind: t.task_kind,
        model: Some(t.model),
        params: Vec::new(),
        input: t.input,
        input_content_type: JSON_CONTENT_TYPE.into(),
        max_output_bytes: None,
    };
    let key = (format!("test:{from}"), job_id);
    let queued =
        d.submit(key, Owner::Client { id: from.clone(), job_id }, spec, None).map_err(|e| RemoteError::from_err(&e))?;
    Ok(Body::Lcpd(LcpdApi::JobAccepted { job_id, queued }))
}
