//! The dispatcher: lcpd's side of the jobd workers. It owns the [`WorkerPool`], turns
//! announcements into pool updates, sends `Execute` to the chosen worker, forwards the worker's
//! output to the job's owner in order, and re-dispatches or fails the jobs of a worker that dies.
//!
//! Each dispatch gets a fresh run id (the `job_id` the worker sees), so output that arrives late
//! from a worker the job was taken away from is recognised and dropped. Workers announce the run
//! ids they run; a run the dispatcher does not know (left over from before an lcpd restart, or
//! superseded) is cancelled, and holds its worker's capacity until it is gone.
//!
//! When a job may run again: a paid LCP job's output is buffered by lcpd until it ends, except an
//! SSE result, whose bytes go to the requester as they come. So a job whose worker dies runs again
//! on another worker unless bytes of it already left the node (an SSE chunk, or any output of an
//! operator's test job); only then does it fail.

use super::engine::provider::CONTENT_TYPE_SSE_PREFIX;
use super::workers::{JobKey, Need, Orphan, Placement, PoolError, WorkerPool};
use crate::bus::api::jobd::{JobSpec, OutputItem, WorkerAnnounce};
use crate::bus::api::lcpd::WorkerRow;
use crate::bus::api::{Body, JobdApi, LcpdApi};
use crate::bus::{Bus, BusError, ErrorCode, RemoteError, ServiceId};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long lcpd waits for a worker to accept a job.
pub const EXECUTE_TIMEOUT: Duration = Duration::from_secs(10);
/// LCP error code reported when a job's worker died after its output had left the node
/// (rate_limited: the reference's class for an unavailable upstream).
pub const WORKER_LOST_CODE: u16 = 7;

/// Who gets a job's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// A bus client that asked for a test job; output goes to it as `LcpdApi::JobOutput`.
    Client { id: ServiceId, job_id: [u8; 32] },
    /// A paid LCP job; output goes back to lcpd's engine through the dispatcher's local channel.
    Lcp,
}

/// Output of LCP jobs, handed back to lcpd's loop.
pub type LocalOutput = mpsc::UnboundedSender<(JobKey, OutputItem)>;

struct Active {
    owner: Owner,
    spec: JobSpec,
    run_id: Option<[u8; 32]>,
    worker: Option<ServiceId>,
    /// The current run's result is SSE (its chunks leave the node as they come).
    sse: bool,
}

/// The outcome of an `Execute` request, fed back into the dispatcher's loop.
#[derive(Debug)]
pub struct Executed {
    key: JobKey,
    run_id: [u8; 32],
    worker: ServiceId,
    result: Result<(), BusError>,
}

/// The dispatcher state; methods are called from lcpd's loop.
pub struct Dispatcher {
    bus: Bus,
    pool: WorkerPool,
    active: HashMap<JobKey, Active>,
    runs: HashMap<[u8; 32], JobKey>,
    executed: mpsc::Sender<Executed>,
    local: LocalOutput,
}

impl Dispatcher {
    /// A dispatcher holding at most `max_inflight` jobs; `executed` feeds `Execute` outcomes back,
    /// `local` carries the output of [`Owner::Lcp`] jobs.
    pub fn new(bus: Bus, max_inflight: usize, executed: mpsc::Sender<Executed>, local: LocalOutput) -> Self {
        Self { bus, pool: WorkerPool::new(max_inflight), active: HashMap::new(), runs: HashMap::new(), executed, local }
    }

    /// Stops a job: its worker is told to cancel the run, and the job leaves the pool (its late
    /// output is dropped). Returns whether the job was known.
    pub fn cancel(&mut self, key: &JobKey) -> bool {
        let Some(a) = self.active.get(key) else { return false };
        if let (Some(run_id), Some(worker)) = (a.run_id, a.worker.clone()) {
            self.cancel_run(worker, run_id);
        }
        self.finish(key);
        true
    }

    fn cancel_run(&self, worker: ServiceId, run_id: [u8; 32]) {
        let bus = self.bus.clone();
        tokio::spawn(async move {
            let body = Body::Jobd(JobdApi::Cancel { job_id: run_id });
            if let Err(e) = bus.request(&worker, body, EXECUTE_TIMEOUT).await {
                tracing::warn!(target: "lcpd", worker = %worker, "cancel not confirmed: {e}");
            }
        });
    }

    /// The pool, for the manifest's offers.
    pub fn pool(&self) -> &WorkerPool {
        &self.pool
    }

    /// Rows for `lcp-cli worker list`.
    pub fn worker_rows(&self) -> Vec<WorkerRow> {
        self.pool.rows()
    }

    /// A worker announced itself.
    pub fn on_announce(&mut self, from: ServiceId, a: WorkerAnnounce) {
        let foreign: Vec<[u8; 32]> = a.runs.iter().filter(|r| !self.runs.contains_key(*r)).copied().collect();
        for run_id in &foreign {
            tracing::info!(target: "lcpd", worker = %from, run = %hex::encode(&run_id[..8]), "cancelling a run that is not ours");
            self.cancel_run(from.clone(), *run_id);
        }
        let foreign = u32::try_from(foreign.len()).unwrap_or(u32::MAX);
        let (orphans, start) = self.pool.announce(from, a, foreign, Instant::now());
        self.handle_orphans(orphans);
        for (key, w) in start {
            self.start(key, w);
        }
    }

    /// Submits a job; returns whether it is queued.
    pub fn submit(
        &mut self,
        key: JobKey,
        owner: Owner,
        spec: JobSpec,
        prefer: Option<&ServiceId>,
    ) -> Result<bool, PoolError> {
        let need = Need { task_kind: spec.task_kind.clone(), model: spec.model.clone() };
        let placement = self.pool.submit(key.clone(), need, prefer)?;
        self.active.insert(key.clone(), Active { owner, spec, run_id: None, worker: None, sse: false });
        match placement {
            Placement::Run(w) => {
                self.start(key, w);
                Ok(false)
            }
            Placement::Queued => Ok(true),
        }
    }

    fn start(&mut self, key: JobKey, worker: ServiceId) {
        let Some(a) = self.active.get_mut(&key) else { return };
        if let Some(old) = a.run_id.take() {
            self.runs.remove(&old);
        }
        let run_id: [u8; 32] = rand::random();
        a.run_id = Some(run_id);
        a.worker = Some(worker.clone());
        a.sse = false;
        self.runs.insert(run_id, key.clone());
        let spec = JobSpec { job_id: run_id, ..a.spec.clone() };
        let (bus, tx) = (self.bus.clone(), self.executed.clone());
        tracing::debug!(target: "lcpd", worker = %worker, run = %hex::encode(&run_id[..8]), "dispatching job");
        tokio::spawn(async move {
            let result = match bus.request(&worker, Body::Jobd(JobdApi::Execute(spec)), EXECUTE_TIMEOUT).await {
                Ok(Body::Jobd(JobdApi::Started)) => Ok(()),
                Ok(other) => Err(BusError::UnexpectedReply(format!("{other:?}"))),
                Err(e) => Err(e),
            };
            let _ = tx.send(Executed { key, run_id, worker, result }).await;
        });
    }

    /// The outcome of an `Execute` request.
    pub fn on_executed(&mut self, ex: Executed) {
        let current = self.active.get(&ex.key).and_then(|a| a.run_id) == Some(ex.run_id);
        match ex.result {
            Ok(()) => {}
            Err(_) if !current => {}
            Err(BusError::Remote(RemoteError { code: ErrorCode::Unavailable, .. })) | Err(BusError::Timeout { .. }) => {
                tracing::warn!(target: "lcpd", worker = %ex.worker, "worker unreachable; re-dispatching its jobs");
                let orphans = self.pool.worker_gone(&ex.worker);
                self.handle_orphans(orphans);
            }
            Err(BusError::Remote(RemoteError { code: ErrorCode::ResourceExhausted, message })) => {
                // Busy with runs we do not know of yet: the job waits for room, first in line.
                tracing::info!(target: "lcpd", worker = %ex.worker, "worker full, job queued again: {message}");
                self.forget_run(&ex.key);
                for (k, w) in self.pool.refused_full(&ex.key, &ex.worker) {
                    self.start(k, w);
                }
            }
            Err(e) => self.fail(&ex.key, WORKER_LOST_CODE, &format!("worker {} refused the job: {e}", ex.worker)),
        }
    }

    /// Output from a worker.
    pub fn on_output(&mut self, from: &ServiceId, run_id: [u8; 32], item: OutputItem) {
        let Some(key) = self.runs.get(&run_id).cloned() else {
            tracing::debug!(target: "lcpd", worker = %from, "output for an unknown or superseded run dropped");
            return;
        };
        let Some(a) = self.active.get_mut(&key) else { return };
        if a.worker.as_ref() != Some(from) {
            tracing::warn!(target: "lcpd", worker = %from, "output from a worker that does not run this job dropped");
            return;
        }
        if let OutputItem::Begin { content_type } = &item {
            a.sse = content_type.starts_with(CONTENT_TYPE_SSE_PREFIX);
        }
        let owner = a.owner.clone();
        let leaves_node = a.sse || owner != Owner::Lcp;
        let terminal = matches!(item, OutputItem::End { .. } | OutputItem::Failed { .. });
        if matches!(item, OutputItem::Chunk(_)) && leaves_node {
            self.pool.started_streaming(&key);
        }
        self.deliver(&key, &owner, item);
        if terminal {
            self.finish(&key);
        }
    }

    /// Periodic: expire silent workers.
    pub fn tick(&mut self) {
        let orphans = self.pool.expire(Instant::now());
        self.handle_orphans(orphans);
    }

    fn handle_orphans(&mut self, orphans: Vec<Orphan>) {
        for o in orphans {
            match o {
                Orphan::Rerun(key, w) => self.start(key, w),
                Orphan::Requeued(key) => self.forget_run(&key),
                Orphan::Fail(key, reason) => self.fail(&key, WORKER_LOST_CODE, reason),
            }
        }
    }

    /// The job is back in the queue: its run is no longer current (late output is dropped).
    fn forget_run(&mut self, key: &JobKey) {
        if let Some(a) = self.active.get_mut(key) {
            a.worker = None;
            if let Some(old) = a.run_id.take() {
                self.runs.remove(&old);
            }
        }
    }

    fn fail(&mut self, key: &JobKey, code: u16, message: &str) {
        if let Some(a) = self.active.get(key) {
            let owner = a.owner.clone();
            self.deliver(key, &owner, OutputItem::Failed { lcp_code: code, message: message.to_string() });
        }
        self.finish(key);
    }

    fn finish(&mut self, key: &JobKey) {
        if let Some(a) = self.active.remove(key) {
            if let Some(r) = a.run_id {
                self.runs.remove(&r);
            }
        }
        let next = self.pool.finished(key);
        for (k, w) in next {
            self.start(k, w);
        }
    }

    fn deliver(&self, key: &JobKey, owner: &Owner, item: OutputItem) {
        match owner {
            Owner::Lcp => {
                if self.local.send((key.clone(), item)).is_err() {
                    tracing::warn!(target: "lcpd", "job output dropped: lcpd's loop is gone");
                }
            }
            Owner::Client { id, job_id } => {
                let body = Body::Lcpd(LcpdApi::JobOutput { job_id: *job_id, item });
                if let Err(e) = self.bus.send_event(id, body) {
                    tracing::warn!(target: "lcpd", client = %id, "output not delivered: {e}");
                }
            }
        }
    }
}
