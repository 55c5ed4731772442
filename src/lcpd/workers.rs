//! The jobd worker pool lcpd dispatches paid jobs to. Pure logic: announcements and time go in,
//! assignments come out; the runtime does the bus I/O.
//!
//! Rules:
//! * a worker is alive while its last announcement is younger than [`WORKER_TTL`], or until the
//!   runtime reports it unreachable;
//! * a job goes to a live worker that serves its task kind and model and has free capacity,
//!   preferring the worker that quoted it, then the least loaded;
//! * when every suitable worker is full, the job waits in a FIFO queue; at most
//!   `max_inflight` jobs are running or queued, beyond that submission fails;
//! * when a worker dies, its jobs that had not started streaming are dispatched again (or queued);
//!   jobs that had started streaming fail, and the requester gets a terminal error;
//! * runs a worker reports that lcpd does not know (`foreign`: left over from a previous lcpd)
//!   take capacity until they are gone, and a worker that refuses a job as full is taken as full
//!   until its next announcement, the job going back to the front of the queue.

use crate::bus::api::jobd::{Offer, WorkerAnnounce};
use crate::bus::ServiceId;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// A worker that has not announced itself for this long is considered gone.
pub const WORKER_TTL: Duration = Duration::from_millis(3500);
/// How long a queued job waits while no live worker serves its model (its worker died, say)
/// before it fails (the same as lcpd's grace for dispatching a paid job).
pub const NO_WORKER_GRACE: Duration = Duration::from_secs(300);

/// Why an orphaned job failed.
pub const FAIL_OUTPUT_SENT: &str = "the worker running this job went away after part of its result was sent";
/// Why an orphaned job failed.
pub const FAIL_NO_WORKER: &str = "no worker serving this job's model came back in time";

/// A job's key inside lcpd (peer and job id are enough to be unique).
pub type JobKey = (String, [u8; 32]);

/// What a job needs from a worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Need {
    /// Task kind.
    pub task_kind: String,
    /// Model, if the request names one.
    pub model: Option<String>,
}

impl Need {
    fn served_by(&self, offers: &[Offer]) -> bool {
        offers.iter().any(|o| {
            o.task_kind == self.task_kind && (o.model.is_none() || o.model.as_deref() == self.model.as_deref())
        })
    }
}

/// Why a job could not be submitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("no worker serves {task_kind} with model {model}")]
    NoWorker { task_kind: String, model: String },
    #[error("{0} jobs are running or queued already (max_inflight_jobs)")]
    Full(usize),
    #[error("job is already running or queued")]
    Duplicate,
}

/// Where a submitted job went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Send it to this worker now.
    Run(ServiceId),
    /// Wait for capacity.
    Queued,
}

/// What to do with a job after its worker died.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Orphan {
    /// It had not started streaming: run it on this worker now.
    Rerun(JobKey, ServiceId),
    /// It had not started streaming and waits in the queue again.
    Requeued(JobKey),
    /// It had started streaming, or no worker took it within [`NO_WORKER_GRACE`]: report a
    /// terminal error with this reason.
    Fail(JobKey, &'static str),
}

#[derive(Debug)]
struct Worker {
    instance: u64,
    offers: Vec<Offer>,
    capacity: u32,
    running: Vec<JobKey>,
    /// Runs it reported that are not ours (being cancelled); they hold capacity.
    foreign: u32,
    last_seen: Instant,
}

impl Worker {
    fn busy(&self) -> u32 {
        (self.running.len() as u32).saturating_add(self.foreign)
    }
}

#[derive(Debug)]
struct Job {
    need: Need,
    worker: Option<ServiceId>,
    streaming: bool,
    /// Since when it waits in the queue with no live worker serving it.
    orphaned_at: Option<Instant>,
}

/// The pool.
#[derive(Debug)]
pub struct WorkerPool {
    max_inflight: usize,
    workers: BTreeMap<ServiceId, Worker>,
    jobs: HashMap<JobKey, Job>,
    queue: VecDeque<JobKey>,
}

impl WorkerPool {
    /// A pool that holds at most `max_inflight` running or queued jobs.
    pub fn new(max_inflight: usize) -> Self {
        Self { max_inflight, workers: BTreeMap::new(), jobs: HashMap::new(), queue: VecDeque::new() }
    }

    /// Records an announcement; `foreign` is how many of the runs it reports are not ours.
    /// Returns what to do with the jobs of a previous instance of the same worker (a restart
    /// kills them), and queued jobs that can run now.
    pub fn announce(
        &mut self,
        id: ServiceId,
        a: WorkerAnnounce,
        foreign: u32,
        now: Instant,
    ) -> (Vec<Orphan>, Vec<(JobKey, ServiceId)>) {
        let mut orphans = Vec::new();
        if let Some(old) = self.workers.get_mut(&id).filter(|w| w.instance != a.instance) {
            tracing::warn!(target: "lcpd", worker = %id, jobs = old.running.len(), "worker restarted");
            old.instance = a.instance;
            let lost = std::mem::take(&mut old.running);
            for key in lost {
                let Some(job) = self.jobs.get_mut(&key) else { continue };
                job.worker = None;
                if job.streaming {
                    self.jobs.remove(&key);
                    orphans.push(Orphan::Fail(key, FAIL_OUTPUT_SENT));
                } else {
                    self.queue.push_front(key.clone());
                    orphans.push(Orphan::Requeued(key));
                }
            }
        }
        let w = self.workers.entry(id).or_insert_with(|| Worker {
            instance: a.instance,
            offers: vec![],
            capacity: 0,
            running: vec![],
            foreign: 0,
            last_seen: now,
        });
        w.offers = a.offers;
        w.capacity = a.capacity;
        w.foreign = foreign;
        w.last_seen = now;
        let offers = &w.offers;
        for j in self.jobs.values_mut().filter(|j| j.need.served_by(offers)) {
            j.orphaned_at = None;
        }
        (orphans, self.drain_queue())
    }

    /// One row per live worker.
    pub fn rows(&self) -> Vec<crate::bus::api::lcpd::WorkerRow> {
        self.workers
            .iter()
            .map(|(id, w)| crate::bus::api::lcpd::WorkerRow {
                id: id.to_string(),
                offers: w.offers.clone(),
                capacity: w.capacity,
                running: w.busy(),
            })
            .collect()
    }

    /// Live workers and their offers (for the manifest's `supported_tasks`).
    pub fn offers(&self) -> Vec<Offer> {
        let mut v: Vec<Offer> = self.workers.values().flat_map(|w| w.offers.iter().cloned()).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Live workers that serve `need`, least loaded first (for quotes).
    pub fn candidates(&self, need: &Need) -> Vec<ServiceId> {
        let mut v: Vec<(&ServiceId, &Worker)> =
            self.workers.iter().filter(|(_, w)| need.served_by(&w.offers)).collect();
        v.sort_by_key(|(_, w)| i64::from(w.busy()) - i64::from(w.capacity));
        v.into_iter().map(|(id, _)| id.clone()).collect()
    }

    /// Number of running and queued jobs.
    pub fn inflight(&self) -> usize {
        self.jobs.len()
    }

    fn pick(&self, need: &Need, prefer: Option<&ServiceId>) -> Option<ServiceId> {
        let free = |w: &Worker| w.busy() < w.capacity && need.served_by(&w.offers);
        if let Some(p) = prefer {
            if self.workers.get(p).is_some_and(free) {
                return Some(p.clone());
            }
        }
        self.workers
            .iter()
            .filter(|(_, w)| free(w))
            .min_by_key(|(_, w)| (u64::from(w.busy()) * 1000) / u64::from(w.capacity.max(1)))
            .map(|(id, _)| id.clone())
    }

    /// Submits a paid job. `prefer` is the worker that quoted it.
    pub fn submit(&mut self, key: JobKey, need: Need, prefer: Option<&ServiceId>) -> Result<Placement, PoolError> {
        if self.jobs.contains_key(&key) {
            return Err(PoolError::Duplicate);
        }
        if !self.workers.values().any(|w| need.served_by(&w.offers)) {
            return Err(PoolError::NoWorker {
                task_kind: need.task_kind.clone(),
                model: need.model.clone().unwrap_or_else(|| "(any)".into()),
            });
        }
        if self.jobs.len() >= self.max_inflight {
            return Err(PoolError::Full(self.max_inflight));
        }
        let placement = match self.pick(&need, prefer) {
            Some(w) => {
                self.assign(&key, &w);
                Placement::Run(w)
            }
            None => {
                self.queue.push_back(key.clone());
                Placement::Queued
            }
        };
        let worker = match &placement {
            Placement::Run(w) => Some(w.clone()),
            Placement::Queued => None,
        };
        self.jobs.insert(key, Job { need, worker, streaming: false, orphaned_at: None });
        Ok(placement)
    }

    fn assign(&mut self, key: &JobKey, w: &ServiceId) {
        if let Some(wk) = self.workers.get_mut(w) {
            wk.running.push(key.clone());
        }
        if let Some(j) = self.jobs.get_mut(key) {
            j.worker = Some(w.clone());
            j.orphaned_at = None;
        }
    }

    /// The worker a job runs on, if it runs.
    pub fn worker_of(&self, key: &JobKey) -> Option<&ServiceId> {
        self.jobs.get(key).and_then(|j| j.worker.as_ref())
    }

    /// The worker refused the job as full (it runs work we do not know of): the job goes back to
    /// the front of the queue and the worker counts as full until its next announcement.
    /// Returns queued jobs that can run now (elsewhere).
    pub fn refused_full(&mut self, key: &JobKey, worker: &ServiceId) -> Vec<(JobKey, ServiceId)> {
        if let Some(w) = self.workers.get_mut(worker) {
            w.running.retain(|k| k != key);
            w.foreign = w.capacity.saturating_sub(w.running.len() as u32);
        }
        if let Some(j) = self.jobs.get_mut(key).filter(|j| j.worker.as_ref() == Some(worker)) {
            j.worker = None;
            self.queue.push_front(key.clone());
        }
        self.drain_queue()
    }

    /// The job's first output reached the requester: from now on a worker death fails it.
    pub fn started_streaming(&mut self, key: &JobKey) {
        if let Some(j) = self.jobs.get_mut(key) {
            j.streaming = true;
        }
    }

    /// A job ended (done, failed or cancelled). Returns queued jobs that can run now.
    pub fn finished(&mut self, key: &JobKey) -> Vec<(JobKey, ServiceId)> {
        if let Some(j) = self.jobs.remove(key) {
            if let Some(w) = j.worker.and_then(|w| self.workers.get_mut(&w)) {
                w.running.retain(|k| k != key);
            }
        }
        self.queue.retain(|k| k != key);
        self.drain_queue()
    }

    fn drain_queue(&mut self) -> Vec<(JobKey, ServiceId)> {
        let mut started = Vec::new();
        let mut still = VecDeque::new();
        while let Some(key) = self.queue.pop_front() {
            let need = match self.jobs.get(&key) {
                Some(j) => j.need.clone(),
                None => continue,
            };
            match self.pick(&need, None) {
                Some(w) => {
                    self.assign(&key, &w);
                    started.push((key, w));
                }
                None => still.push_back(key),
            }
        }
        self.queue = still;
        started
    }

    /// Removes workers silent for longer than [`WORKER_TTL`], and fails orphaned jobs that no
    /// worker took within [`NO_WORKER_GRACE`]; returns what to do with their jobs.
    pub fn expire(&mut self, now: Instant) -> Vec<Orphan> {
        let dead: Vec<ServiceId> = self
            .workers
            .iter()
            .filter(|(_, w)| now.saturating_duration_since(w.last_seen) > WORKER_TTL)
            .map(|(id, _)| id.clone())
            .collect();
        let mut out: Vec<Orphan> = dead.iter().flat_map(|id| self.worker_gone(id)).collect();
        let mut given_up = Vec::new();
        for (key, j) in self.jobs.iter_mut().filter(|(_, j)| j.worker.is_none()) {
            if self.workers.values().any(|w| j.need.served_by(&w.offers)) {
                j.orphaned_at = None;
                continue;
            }
            let since = *j.orphaned_at.get_or_insert(now);
            if now.saturating_duration_since(since) > NO_WORKER_GRACE {
                given_up.push(key.clone());
            }
        }
        given_up.sort();
        for key in given_up {
            self.jobs.remove(&key);
            self.queue.retain(|k| k != &key);
            out.push(Orphan::Fail(key, FAIL_NO_WORKER));
        }
        out
    }

    /// A worker is gone (unreachable, or expired); returns what to do with its jobs.
    pub fn worker_gone(&mut self, id: &ServiceId) -> Vec<Orphan> {
        let Some(w) = self.workers.remove(id) else { return vec![] };
        tracing::warn!(target: "lcpd", worker = %id, jobs = w.running.len(), "worker gone");
        let mut out = Vec::new();
        for key in w.running {
            let Some(job) = self.jobs.get_mut(&key) else { continue };
            job.worker = None;
            if job.streaming {
                self.jobs.remove(&key);
                out.push(Orphan::Fail(key, FAIL_OUTPUT_SENT));
                continue;
            }
            let need = job.need.clone();
            match self.pick(&need, None) {
                Some(nw) => {
                    self.assign(&key, &nw);
                    out.push(Orphan::Rerun(key, nw));
                }
                None => {
                    self.queue.push_front(key.clone());
                    out.push(Orphan::Requeued(key));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAT: &str = "openai.chat_completions.v1";

    fn ann(models: &[&str], capacity: u32) -> WorkerAnnounce {
        WorkerAnnounce {
            instance: 1,
            offers: models.iter().map(|m| Offer { task_kind: CHAT.into(), model: Some(m.to_string()) }).collect(),
            capacity,
            runs: vec![],
        }
    }
    fn w(n: &str) -> ServiceId {
        ServiceId::Jobd(n.into())
    }
    fn key(n: u8) -> JobKey {
        ("peer".into(), [n; 32])
    }
    fn need(m: &str) -> Need {
        Need { task_kind: CHAT.into(), model: Some(m.into()) }
    }

    #[test]
    fn dispatches_to_a_serving_worker_with_capacity_and_prefers_the_quoter() {
        let t = Instant::now();
        let mut p = WorkerPool::new(10);
        p.announce(w("a"), ann(&["m1"], 1), 0, t);
        p.announce(w("b"), ann(&["m1", "m2"], 2), 0, t);
        assert_eq!(p.submit(key(1), need("m2"), None), Ok(Placement::Run(w("b"))));
        assert_eq!(p.submit(key(2), need("m1"), Some(&w("b"))), Ok(Placement::Run(w("b"))));
        // b is full now: the preference yields to capacity.
        assert_eq!(p.submit(key(3), need("m1"), Some(&w("b"))), Ok(Placement::Run(w("a"))));
        assert!(matches!(p.submit(key(4), need("m3"), None), Err(PoolError::NoWorker { .. })));
        assert_eq!(p.submit(key(1), need("m2"), None), Err(PoolError::Duplicate));
        assert_eq!(p.candidates(&need("m1")).len(), 2);
    }

    #[test]
    fn queues_when_busy_up_to_max_inflight_and_drains_in_order() {
        let t = Instant::now();
        let mut p = WorkerPool::new(3);
        p.announce(w("a"), ann(&["m"], 1), 0, t);
        assert_eq!(p.submit(key(1), need("m"), None), Ok(Placement::Run(w("a"))));
        assert_eq!(p.submit(key(2), need("m"), None), Ok(Placement::Queued));
        assert_eq!(p.submit(key(3), need("m"), None), Ok(Placement::Queued));
        assert_eq!(p.submit(key(4), need("m"), None), Err(PoolError::Full(3)));
        assert_eq!(p.finished(&key(1)), vec![(key(2), w("a"))]);
        // A new worker joining takes queued work at once.
        assert_eq!(p.announce(w("b"), ann(&["m"], 1), 0, t), (vec![], vec![(key(3), w("b"))]));
        assert_eq!(p.inflight(), 2);
    }

    #[test]
    fn dead_worker_jobs_rerun_unless_streaming_started() {
        let t = Instant::now();
        let mut p = WorkerPool::new(10);
        p.announce(w("a"), ann(&["m"], 2), 0, t);
        p.submit(key(1), need("m"), None).unwrap();
        p.submit(key(2), need("m"), None).unwrap();
        p.started_streaming(&key(2));
        p.announce(w("b"), ann(&["m"], 1), 0, t + Duration::from_secs(3));
        let out = p.expire(t + WORKER_TTL + Duration::from_millis(1));
        assert_eq!(out, vec![Orphan::Rerun(key(1), w("b")), Orphan::Fail(key(2), FAIL_OUTPUT_SENT)]);
        assert_eq!(p.worker_of(&key(1)), Some(&w("b")));
        assert_eq!(p.worker_of(&key(2)), None);
        assert_eq!(p.inflight(), 1);
    }

    #[test]
    fn a_job_without_a_worker_waits_for_one_then_fails() {
        let t = Instant::now();
        let mut p = WorkerPool::new(10);
        p.announce(w("a"), ann(&["m"], 1), 0, t);
        p.submit(key(1), need("m"), None).unwrap();
        p.submit(key(2), need("m"), None).unwrap();
        // The only worker for the model dies: its jobs wait, in their order.
        let gone = t + WORKER_TTL + Duration::from_millis(1);
        assert_eq!(p.expire(gone), vec![Orphan::Requeued(key(1))]);
        assert_eq!(p.inflight(), 2);
        // A worker for the model comes back in time: the job runs there.
        let (_, started) = p.announce(w("c"), ann(&["m"], 1), 0, gone);
        assert_eq!(started, vec![(key(1), w("c"))]);
        // It dies too, and none comes back: after the grace both waiting jobs fail.
        let gone2 = gone + WORKER_TTL + Duration::from_millis(1);
        assert_eq!(p.expire(gone2), vec![Orphan::Requeued(key(1))]);
        assert_eq!(p.expire(gone2 + NO_WORKER_GRACE), vec![]);
        let out = p.expire(gone2 + NO_WORKER_GRACE + Duration::from_millis(1));
        assert_eq!(out, vec![Orphan::Fail(key(1), FAIL_NO_WORKER), Orphan::Fail(key(2), FAIL_NO_WORKER)]);
        assert_eq!(p.inflight(), 0);
    }

    #[test]
    fn dead_worker_jobs_requeue_when_others_are_full() {
        let t = Instant::now();
        let mut p = WorkerPool::new(10);
        p.announce(w("a"), ann(&["m"], 1), 0, t);
        p.announce(w("b"), ann(&["m"], 1), 0, t);
        p.submit(key(1), need("m"), None).unwrap();
        p.submit(key(2), need("m"), None).unwrap();
        let gone = p.worker_of(&key(1)).cloned().unwrap();
        let other = p.worker_of(&key(2)).cloned().unwrap();
        assert_eq!(p.worker_gone(&gone), vec![Orphan::Requeued(key(1))]);
        assert_eq!(p.finished(&key(2)), vec![(key(1), other)]);
    }

    #[test]
    fn a_restarted_worker_loses_its_jobs() {
        let t = Instant::now();
        let mut p = WorkerPool::new(10);
        p.announce(w("a"), ann(&["m"], 1), 0, t);
        p.submit(key(1), need("m"), None).unwrap();
        let again = WorkerAnnounce { instance: 2, ..ann(&["m"], 1) };
        // The job ran on the old instance; the new one takes it again.
        let (orphans, started) = p.announce(w("a"), again, 0, t);
        assert_eq!(orphans, vec![Orphan::Requeued(key(1))]);
        assert_eq!(started, vec![(key(1), w("a"))]);
    }

    #[test]
    fn foreign_runs_hold_capacity_and_a_full_refusal_requeues_first() {
        let t = Instant::now();
        let mut p = WorkerPool::new(10);
        // A worker still busy with a run of a previous lcpd: no room for ours.
        p.announce(w("a"), ann(&["m"], 1), 1, t);
        assert_eq!(p.submit(key(1), need("m"), None), Ok(Placement::Queued));
        assert_eq!(p.rows()[0].running, 1);
        // That run was cancelled: the next announcement frees the worker and the job runs.
        assert_eq!(p.announce(w("a"), ann(&["m"], 1), 0, t), (vec![], vec![(key(1), w("a"))]));
        // A worker that refuses a job as full although we counted room for it.
        p.announce(w("b"), ann(&["m"], 2), 0, t);
        assert_eq!(p.submit(key(2), need("m"), None), Ok(Placement::Run(w("b"))));
        assert_eq!(p.refused_full(&key(2), &w("b")), vec![]);
        assert_eq!(p.worker_of(&key(2)), None);
        assert_eq!(p.submit(key(3), need("m"), None), Ok(Placement::Queued));
        // Its next announcement tells the truth: the refused job runs first, then the next.
        let (_, started) = p.announce(w("b"), ann(&["m"], 2), 0, t);
        assert_eq!(started, vec![(key(2), w("b")), (key(3), w("b"))]);
        assert_eq!(p.inflight(), 3);
    }

    #[test]
    fn any_model_offers_serve_every_model() {
        let t = Instant::now();
        let mut p = WorkerPool::new(4);
        let any = WorkerAnnounce {
            instance: 7,
            offers: vec![Offer { task_kind: CHAT.into(), model: None }],
            capacity: 1,
            runs: vec![],
        };
        p.announce(w("x"), any, 0, t);
        assert_eq!(p.submit(key(1), need("whatever"), None), Ok(Placement::Run(w("x"))));
        let other = Need { task_kind: "openai.responses.v1".into(), model: None };
        assert!(matches!(p.submit(key(2), other, None), Err(PoolError::NoWorker { .. })));
    }
}
