//! The jobs the gateway is executing, without I/O: lcpd's job events are demultiplexed by job id
//! to the HTTP request that runs the job, and turned into budget and cancel actions.
//!
//! lcpd sends every job event to the gateway's one bus queue; the runtime's manager task owns the
//! queue and feeds each event here. The tracker forwards it to the request's channel and says what
//! the budget must record. When a client goes away (its request future or response body is
//! dropped) the job is *abandoned*: it is cancelled at once when it was paid or its result had
//! started, and otherwise as soon as its payment is reported, so that the payment outcome is still
//! learnt and counted. A request that gives up on its job (a time-out) abandons it the same way,
//! with its own reason ([`Tracker::give_up`]). A client that closes after its stream's terminal event was *served*
//! ([`Tracker::delivered`]): its job ends by itself. A job lcpd never finishes is dropped by
//! [`Tracker::sweep`]: one whose result has not moved for longer than a given age.

use crate::bus::api::lcpd::JobEvent;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Reason sent with `CancelJob` when a client disconnects.
pub const CANCEL_REASON: &str = "request canceled";
/// Reason sent with `CancelJob` when no result byte came in time.
pub const FIRST_BYTE_TIMEOUT_REASON: &str = "gateway time-out: no result in time";
/// Reason sent with `CancelJob` when a result stopped moving.
pub const IDLE_TIMEOUT_REASON: &str = "gateway time-out: the result stalled";

/// What the runtime must do after a tracker step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Record `price_msat` as paid for the job.
    Commit {
        /// Job id.
        job_id: [u8; 32],
        /// Provider.
        peer: String,
        /// Paid price.
        price_msat: u64,
    },
    /// Drop the job's budget reservation: it was not paid.
    Release {
        /// Job id.
        job_id: [u8; 32],
    },
    /// Send `CancelJob` to lcpd.
    Cancel {
        /// Job id.
        job_id: [u8; 32],
        /// Why (recorded by both nodes).
        reason: &'static str,
    },
}

#[derive(Debug)]
struct Entry {
    peer: String,
    price_msat: u64,
    tx: Option<mpsc::UnboundedSender<JobEvent>>,
    committed: bool,
    started: bool,
    abandoned: bool,
    cancel_sent: bool,
    reason: &'static str,
    /// When the job was inserted or its result last moved.
    since: Instant,
}

/// The executing jobs.
#[derive(Debug, Default)]
pub struct Tracker {
    jobs: HashMap<[u8; 32], Entry>,
}

impl Tracker {
    /// Starts tracking a job before `Execute` is sent; its events go to `tx`.
    pub fn insert(
        &mut self,
        job_id: [u8; 32],
        peer: &str,
        price_msat: u64,
        tx: mpsc::UnboundedSender<JobEvent>,
        now: Instant,
    ) {
        let e = Entry {
            peer: peer.to_string(),
            price_msat,
            tx: Some(tx),
            committed: false,
            started: false,
            abandoned: false,
            cancel_sent: false,
            reason: CANCEL_REASON,
            since: now,
        };
        self.jobs.insert(job_id, e);
    }

    /// Stops tracking a job whose `Execute` was refused (nothing was paid).
    pub fn refused(&mut self, job_id: &[u8; 32]) -> Vec<Action> {
        match self.jobs.remove(job_id) {
            Some(e) if !e.committed => vec![Action::Release { job_id: *job_id }],
            _ => Vec::new(),
        }
    }

    /// Number of jobs tracked.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Whether no job is tracked.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Whether a job is tracked.
    pub fn contains(&self, job_id: &[u8; 32]) -> bool {
        self.jobs.contains_key(job_id)
    }

    fn cancel_once(job_id: [u8; 32], e: &mut Entry, out: &mut Vec<Action>) {
        if !e.cancel_sent {
            e.cancel_sent = true;
            out.push(Action::Cancel { job_id, reason: e.reason });
        }
    }

    fn commit_once(job_id: [u8; 32], e: &mut Entry, price_msat: u64, out: &mut Vec<Action>) {
        if !e.committed {
            e.committed = true;
            out.push(Action::Commit { job_id, peer: e.peer.clone(), price_msat });
        }
    }

    /// An event of a job from lcpd: forwarded to the request, and the budget actions it implies.
    /// Events of jobs not tracked are ignored.
    pub fn on_event(&mut self, job_id: [u8; 32], event: JobEvent) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(e) = self.jobs.get_mut(&job_id) else { return out };
        let finished = matches!(event, JobEvent::Result(_));
        let nothing_paid = matches!(&event, JobEvent::Result(o) if o.nothing_paid());
        match &event {
            JobEvent::Paid { price_msat, .. } => {
                Self::commit_once(job_id, e, *price_msat, &mut out);
                if e.abandoned {
                    Self::cancel_once(job_id, e, &mut out);
                }
            }
            JobEvent::Begin { .. } | JobEvent::Chunk(_) => {
                e.started = true;
                if e.abandoned {
                    Self::cancel_once(job_id, e, &mut out);
                }
            }
            JobEvent::End { .. } | JobEvent::Result(_) => {}
        }
        if let Some(tx) = &e.tx {
            if tx.send(event).is_err() {
                // The request is gone without saying so: same as abandoned.
                e.tx = None;
                e.abandoned = true;
                if (e.committed || e.started) && !finished {
                    Self::cancel_once(job_id, e, &mut out);
                }
            }
        }
        if finished {
            if let Some(mut e) = self.jobs.remove(&job_id) {
                if !e.committed {
                    if !e.started && nothing_paid {
                        out.push(Action::Release { job_id });
                    } else {
                        // A result only flows after payment, and a job that ended while its
                        // payment was in flight may have been paid: count it.
                        let p = e.price_msat;
                        Self::commit_once(job_id, &mut e, p, &mut out);
                    }
                }
            }
        }
        out
    }

    /// The job's result moved at `now` (the sweep counts a job's age from its last movement).
    pub fn heard(&mut self, job_id: &[u8; 32], now: Instant) {
        if let Some(e) = self.jobs.get_mut(job_id) {
            e.since = now;
        }
    }

    /// The request gave up on its job (a time-out): abandoned, cancelled with `reason`.
    pub fn give_up(&mut self, job_id: [u8; 32], reason: &'static str) -> Vec<Action> {
        if let Some(e) = self.jobs.get_mut(&job_id) {
            e.reason = reason;
        }
        self.abandon(job_id)
    }

    /// The client of a job went away.
    pub fn abandon(&mut self, job_id: [u8; 32]) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(e) = self.jobs.get_mut(&job_id) else { return out };
        e.tx = None;
        e.abandoned = true;
        if e.committed || e.started {
            Self::cancel_once(job_id, e, &mut out);
        }
        out
    }

    /// The client of a job closed after receiving the whole result (the stream's terminal event),
    /// before the job's end reached us: nothing more goes to the request, nothing is cancelled,
    /// and the job's end still settles the budget.
    pub fn delivered(&mut self, job_id: [u8; 32]) {
        if let Some(e) = self.jobs.get_mut(&job_id) {
            e.tx = None;
        }
    }

    /// Drops jobs whose result has not moved for longer than `max_age` (lcpd never finished them). A job that may
    /// have been paid counts as paid; one still running is cancelled.
    pub fn sweep(&mut self, now: Instant, max_age: Duration) -> Vec<Action> {
        let stale: Vec<[u8; 32]> = self
            .jobs
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.since) > max_age)
            .map(|(k, _)| *k)
            .collect();
        let mut out = Vec::new();
        for job_id in stale {
            if let Some(mut e) = self.jobs.remove(&job_id) {
                let p = e.price_msat;
                Self::commit_once(job_id, &mut e, p, &mut out);
                Self::cancel_once(job_id, &mut e, &mut out);
            }
        }
        out
    }

    /// Every job still tracked, to cancel at shutdown. Their payment outcome will not be learnt,
    /// so each counts as paid.
    pub fn drain(&mut self) -> Vec<Action> {
        let ids: Vec<[u8; 32]> = self.jobs.keys().copied().collect();
        let mut out = Vec::new();
        for job_id in ids {
            if let Some(mut e) = self.jobs.remove(&job_id) {
                let p = e.price_msat;
                Self::commit_once(job_id, &mut e, p, &mut out);
                Self::cancel_once(job_id, &mut e, &mut out);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::api::lcpd::JobOutcomeRow;

    const J: [u8; 32] = [7; 32];

    fn tracked() -> (Tracker, mpsc::UnboundedReceiver<JobEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut t = Tracker::default();
        t.insert(J, "peer", 100, tx, Instant::now());
        (t, rx)
    }

    fn paid(price: u64) -> JobEvent {
        JobEvent::Paid { payment_hash: [1; 32], preimage: [2; 32], price_msat: price }
    }

    fn ok() -> JobEvent {
        JobEvent::Result(JobOutcomeRow::Ok { content_type: "a".into(), len: 1, sha256: [0; 32] })
    }

    fn failed() -> JobEvent {
        JobEvent::Result(JobOutcomeRow::Failed { lcp_code: None, message: "payment failed".into(), nothing_paid: true })
    }

    /// The provider's error while the payment was in flight: whether it was paid is not known.
    fn failed_while_paying() -> JobEvent {
        JobEvent::Result(JobOutcomeRow::Failed { lcp_code: Some(7), message: "busy".into(), nothing_paid: false })
    }

    fn commit(price: u64) -> Action {
        Action::Commit { job_id: J, peer: "peer".into(), price_msat: price }
    }

    #[test]
    fn a_paid_job_is_forwarded_and_committed_once() {
        let (mut t, mut rx) = tracked();
        assert_eq!(t.on_event(J, paid(90)), vec![commit(90)]);
        assert_eq!(t.on_event(J, JobEvent::Chunk(b"x".to_vec())), vec![]);
        assert_eq!(t.on_event(J, ok()), vec![]);
        assert!(t.is_empty());
        assert_eq!(rx.try_recv().unwrap(), paid(90));
        assert_eq!(rx.try_recv().unwrap(), JobEvent::Chunk(b"x".to_vec()));
        assert_eq!(rx.try_recv().unwrap(), ok());
        // Events of jobs no longer tracked are ignored.
        assert_eq!(t.on_event(J, paid(90)), vec![]);
    }

    #[test]
    fn a_job_failing_before_payment_releases_its_reservation() {
        let (mut t, _rx) = tracked();
        assert_eq!(t.on_event(J, failed()), vec![Action::Release { job_id: J }]);
        let (mut t, _rx) = tracked();
        assert_eq!(t.refused(&J), vec![Action::Release { job_id: J }]);
        assert!(t.is_empty());
    }

    #[test]
    fn a_job_ending_while_its_payment_is_in_flight_counts_as_paid() {
        let (mut t, _rx) = tracked();
        assert_eq!(t.on_event(J, failed_while_paying()), vec![commit(100)]);
        let (mut t, _rx) = tracked();
        assert_eq!(t.on_event(J, JobEvent::Result(JobOutcomeRow::Cancelled)), vec![commit(100)]);
        assert!(t.is_empty());
    }

    #[test]
    fn abandoned_while_paying_cancels_once_the_payment_is_known() {
        let (mut t, rx) = tracked();
        drop(rx);
        assert_eq!(t.abandon(J), vec![]);
        assert_eq!(t.on_event(J, paid(100)), vec![commit(100), Action::Cancel { job_id: J, reason: CANCEL_REASON }]);
        assert_eq!(t.on_event(J, JobEvent::Chunk(vec![1])), vec![]);
        assert_eq!(t.on_event(J, JobEvent::Result(JobOutcomeRow::Cancelled)), vec![]);
        assert!(t.is_empty());
        // Abandoned and then the payment fails: nothing spent, nothing to cancel.
        let (mut t, _rx) = tracked();
        t.abandon(J);
        assert_eq!(t.on_event(J, failed()), vec![Action::Release { job_id: J }]);
    }

    #[test]
    fn abandoned_after_payment_cancels_at_once() {
        let (mut t, _rx) = tracked();
        t.on_event(J, paid(100));
        assert_eq!(t.abandon(J), vec![Action::Cancel { job_id: J, reason: CANCEL_REASON }]);
        assert_eq!(t.abandon(J), vec![]);
        // A result that started before the payment report counts as paid.
        let (mut t, _rx) = tracked();
        t.on_event(J, JobEvent::Begin { content_type: "t".into(), content_encoding: "identity".into() });
        assert_eq!(t.abandon(J), vec![Action::Cancel { job_id: J, reason: CANCEL_REASON }]);
        assert_eq!(t.on_event(J, JobEvent::Result(JobOutcomeRow::Cancelled)), vec![commit(100)]);
    }

    #[test]
    fn a_delivered_job_is_neither_cancelled_nor_left_uncounted() {
        let (mut t, rx) = tracked();
        t.on_event(J, JobEvent::Begin { content_type: "t".into(), content_encoding: "identity".into() });
        drop(rx);
        t.delivered(J);
        assert_eq!(t.on_event(J, JobEvent::Chunk(vec![1])), vec![]);
        assert_eq!(t.on_event(J, paid(100)), vec![commit(100)]);
        assert_eq!(t.on_event(J, ok()), vec![]);
        assert!(t.is_empty());
        // Delivered before the payment report: the result still commits the price.
        let (mut t, rx) = tracked();
        drop(rx);
        t.delivered(J);
        assert_eq!(t.on_event(J, ok()), vec![commit(100)]);
    }

    #[test]
    fn a_dropped_receiver_counts_as_abandoned() {
        let (mut t, rx) = tracked();
        drop(rx);
        assert_eq!(t.on_event(J, paid(100)), vec![commit(100), Action::Cancel { job_id: J, reason: CANCEL_REASON }]);
    }

    #[test]
    fn a_job_given_up_is_cancelled_with_its_reason_and_a_moving_one_is_not_swept() {
        let (mut t, _rx) = tracked();
        t.on_event(J, paid(100));
        assert_eq!(t.give_up(J, IDLE_TIMEOUT_REASON), vec![Action::Cancel { job_id: J, reason: IDLE_TIMEOUT_REASON }]);
        // Not paid yet: cancelled with that reason once the payment is known.
        let (mut t, _rx) = tracked();
        assert_eq!(t.give_up(J, FIRST_BYTE_TIMEOUT_REASON), vec![]);
        let want = vec![commit(100), Action::Cancel { job_id: J, reason: FIRST_BYTE_TIMEOUT_REASON }];
        assert_eq!(t.on_event(J, paid(100)), want);
        // A result that keeps moving is not stale, however long the job runs.
        let (mut t, _rx) = tracked();
        let t0 = Instant::now();
        for i in 1..=5 {
            t.heard(&J, t0 + Duration::from_secs(8 * i));
            assert_eq!(t.sweep(t0 + Duration::from_secs(8 * i + 5), Duration::from_secs(10)), vec![]);
        }
        assert!(t.contains(&J));
        assert_eq!(t.sweep(t0 + Duration::from_secs(51), Duration::from_secs(10)).len(), 2);
    }

    #[test]
    fn stale_jobs_are_swept_as_paid_and_cancelled() {
        let (mut t, _rx) = tracked();
        let later = Instant::now() + Duration::from_secs(100);
        assert_eq!(t.sweep(later, Duration::from_secs(200)), vec![]);
        assert_eq!(
            t.sweep(later, Duration::from_secs(10)),
            vec![commit(100), Action::Cancel { job_id: J, reason: CANCEL_REASON }]
        );
        assert!(t.is_empty());
        let (mut t, _rx) = tracked();
        t.on_event(J, paid(100));
        assert_eq!(t.drain(), vec![Action::Cancel { job_id: J, reason: CANCEL_REASON }]);
    }
}
