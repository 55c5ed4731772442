//! Conformance checks every [`ComputeBackend`] must pass (see the trait contract). Each check
//! is an `async fn` returning a [`ConformanceFailure`] that names the check and what differed;
//! [`run_all`] runs the whole suite. Time limits are generous bounds, not orderings: the checks
//! synchronise on received chunks and returned results.

use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{ComputeBackend, ComputeError, JobOutcome, JobSpec, TaskOffer};

/// Upper bound for a job that should finish or deliver its first bytes.
pub const JOB_LIMIT: Duration = Duration::from_secs(20);
/// How soon `execute` must return after its token is cancelled.
pub const CANCEL_LIMIT: Duration = Duration::from_secs(3);
/// A task kind no backend serves.
pub const UNSUPPORTED_TASK_KIND: &str = "lcp.conformance.unsupported.v1";

/// A failed conformance check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("conformance check {check} failed: {detail}")]
pub struct ConformanceFailure {
    /// Name of the check.
    pub check: &'static str,
    /// What was expected and what happened.
    pub detail: String,
}

fn fail(check: &'static str, detail: impl Into<String>) -> ConformanceFailure {
    ConformanceFailure { check, detail: detail.into() }
}

/// Jobs the suite runs against one backend.
pub struct Suite {
    /// A well-formed job for an offer (it must quote successfully).
    pub job_for_offer: Box<dyn Fn(&TaskOffer) -> JobSpec + Send + Sync>,
    /// A job that completes with a non-empty result (streamed or not).
    pub complete_job: JobSpec,
    /// A streamed job that produces more than two chunks or keeps running.
    pub cancel_job: JobSpec,
    /// A job whose result is larger than `cap_bytes`.
    pub cap_job: JobSpec,
    /// Per-job cap used with `cap_job`.
    pub cap_bytes: u64,
}

/// Runs every check.
pub async fn run_all(backend: &dyn ComputeBackend, suite: &Suite) -> Result<(), ConformanceFailure> {
    check_offers_quote(backend, &*suite.job_for_offer).await?;
    check_unsupported_task_kind(backend, &suite.complete_job).await?;
    check_stream_integrity(backend, &suite.complete_job).await?;
    check_cancel(backend, &suite.cancel_job).await?;
    check_cancelled_before_start(backend, &suite.complete_job).await?;
    check_output_cap(backend, &suite.cap_job, suite.cap_bytes).await?;
    check_receiver_dropped(backend, &suite.complete_job).await?;
    Ok(())
}

/// Runs `job` to the end while draining the channel; returns the bytes and the result.
pub async fn run_to_end(
    backend: &dyn ComputeBackend,
    job: &JobSpec,
    capacity: usize,
) -> Result<(Vec<Bytes>, Result<JobOutcome, ComputeError>), ConformanceFailure> {
    let (tx, mut rx) = mpsc::channel(capacity);
    let exec = backend.execute(job, tx, CancellationToken::new());
    let drain = async {
        let mut chunks = Vec::new();
        while let Some(c) = rx.recv().await {
            chunks.push(c);
        }
        chunks
    };
    let (result, chunks) = tokio::time::timeout(JOB_LIMIT, async { tokio::join!(exec, drain) })
        .await
        .map_err(|_| fail("run_to_end", format!("job did not end within {JOB_LIMIT:?}")))?;
    Ok((chunks, result))
}

/// Offers are non-empty, sorted, unique, and every offer quotes with a positive price for its
/// model; a model not offered for a kind is refused with code 2.
pub async fn check_offers_quote(
    backend: &dyn ComputeBackend,
    job_for_offer: &(dyn Fn(&TaskOffer) -> JobSpec + Send + Sync),
) -> Result<(), ConformanceFailure> {
    const CHECK: &str = "offers_quote";
    let offers = backend.offers();
    if offers.is_empty() {
        return Err(fail(CHECK, "backend offers nothing"));
    }
    if offers.windows(2).any(|w| w[0] >= w[1]) {
        return Err(fail(CHECK, format!("offers not sorted/unique: {offers:?}")));
    }
    for offer in &offers {
        let job = job_for_offer(offer);
        if job.offer() != *offer {
            return Err(fail(CHECK, format!("job_for_offer built {:?} for {offer:?}", job.offer())));
        }
        let quote = backend.quote(&job).map_err(|e| fail(CHECK, format!("offer {offer:?} does not quote: {e}")))?;
        if quote.model != offer.model || quote.price_msat == 0 {
            return Err(fail(CHECK, format!("offer {offer:?} quoted {quote:?}")));
        }
        if quote.stream != job.stream {
            return Err(fail(CHECK, format!("quote stream flag differs for {offer:?}")));
        }
        let mut other = job.clone();
        other.model = format!("{}-not-offered", offer.model);
        match backend.quote(&other) {
            Err(e) if e.lcp_error_code() == 2 => {}
            other => return Err(fail(CHECK, format!("unoffered model must be code 2, got {other:?}"))),
        }
    }
    Ok(())
}

/// An unsupported task kind is refused with code 2 by `quote` and by `execute`, which sends
/// nothing.
pub async fn check_unsupported_task_kind(
    backend: &dyn ComputeBackend,
    job: &JobSpec,
) -> Result<(), ConformanceFailure> {
    const CHECK: &str = "unsupported_task_kind";
    let mut job = job.clone();
    job.task_kind = UNSUPPORTED_TASK_KIND.into();
    match backend.quote(&job) {
        Err(e) if e.lcp_error_code() == 2 => {}
        other => return Err(fail(CHECK, format!("quote: expected code 2, got {other:?}"))),
    }
    let (chunks, result) = run_to_end(backend, &job, 4).await?;
    match result {
        Err(e) if e.lcp_error_code() == 2 => {}
        other => return Err(fail(CHECK, format!("execute: expected code 2, got {other:?}"))),
    }
    if !chunks.is_empty() {
        return Err(fail(CHECK, "execute sent bytes for an unsupported kind"));
    }
    Ok(())
}

/// All bytes arrive, no chunk is empty, and the outcome's length and SHA-256 match them;
/// a non-streamed job arrives as exactly one chunk.
pub async fn check_stream_integrity(backend: &dyn ComputeBackend, job: &JobSpec) -> Result<(), ConformanceFailure> {
    const CHECK: &str = "stream_integrity";
    let (chunks, result) = run_to_end(backend, job, 1).await?;
    let outcome = result.map_err(|e| fail(CHECK, format!("job failed: {e}")))?;
    if chunks.iter().any(Bytes::is_empty) {
        return Err(fail(CHECK, "an empty chunk was sent"));
    }
    if !job.stream && chunks.len() != 1 {
        return Err(fail(CHECK, format!("non-streamed job sent {} chunks, want 1", chunks.len())));
    }
    let all: Vec<u8> = chunks.concat();
    if all.is_empty() {
        return Err(fail(CHECK, "no result bytes"));
    }
    if outcome.len != all.len() as u64 {
        return Err(fail(CHECK, format!("outcome len {} != {} bytes received", outcome.len, all.len())));
    }
    let digest: [u8; 32] = Sha256::digest(&all).into();
    if outcome.sha256 != digest {
        return Err(fail(CHECK, "outcome sha256 differs from the received bytes"));
    }
    if outcome.content_type.is_empty() || outcome.content_encoding != "identity" {
        return Err(fail(CHECK, format!("bad content metadata {outcome:?}")));
    }
    let announced = backend.result_content_type(job);
    if outcome.content_type != announced {
        return Err(fail(CHECK, format!("outcome content type {:?} != announced {announced:?}", outcome.content_type)));
    }
    Ok(())
}

/// After the first chunk of `job` arrives, cancelling makes `execute` return
/// [`ComputeError::Cancelled`] within [`CANCEL_LIMIT`], although the receiver stops reading.
pub async fn check_cancel(backend: &dyn ComputeBackend, job: &JobSpec) -> Result<(), ConformanceFailure> {
    const CHECK: &str = "cancel";
    let (tx, mut rx) = mpsc::channel(1);
    let cancel = CancellationToken::new();
    let exec = backend.execute(job, tx, cancel.clone());
    tokio::pin!(exec);
    let first = tokio::time::timeout(JOB_LIMIT, async {
        tokio::select! {
            res = &mut exec => Err(res),
            chunk = rx.recv() => Ok(chunk),
        }
    })
    .await
    .map_err(|_| fail(CHECK, "no first chunk"))?;
    match first {
        Ok(Some(_)) => {}
        Ok(None) => return Err(fail(CHECK, "channel closed before the first chunk")),
        Err(res) => return Err(fail(CHECK, format!("job ended before cancel: {res:?}"))),
    }
    cancel.cancel();
    let res = tokio::time::timeout(CANCEL_LIMIT, &mut exec)
        .await
        .map_err(|_| fail(CHECK, format!("execute ran on {CANCEL_LIMIT:?} after cancel")))?;
    match res {
        Err(ComputeError::Cancelled) => Ok(()),
        other => Err(fail(CHECK, format!("expected Cancelled, got {other:?}"))),
    }
}

/// A token cancelled before `execute` starts yields [`ComputeError::Cancelled`] and no bytes.
pub async fn check_cancelled_before_start(
    backend: &dyn ComputeBackend,
    job: &JobSpec,
) -> Result<(), ConformanceFailure> {
    const CHECK: &str = "cancelled_before_start";
    let (tx, mut rx) = mpsc::channel(4);
    let cancel = CancellationToken::new();
    cancel.cancel();
    let res = tokio::time::timeout(CANCEL_LIMIT, backend.execute(job, tx, cancel))
        .await
        .map_err(|_| fail(CHECK, "execute did not return"))?;
    if !matches!(res, Err(ComputeError::Cancelled)) {
        return Err(fail(CHECK, format!("expected Cancelled, got {res:?}")));
    }
    if rx.recv().await.is_some() {
        return Err(fail(CHECK, "bytes were sent for a cancelled job"));
    }
    Ok(())
}

/// With `max_output_bytes = cap`, a larger result fails with
/// [`ComputeError::OutputTooLarge`] and at most `cap` bytes are sent.
pub async fn check_output_cap(backend: &dyn ComputeBackend, job: &JobSpec, cap: u64) -> Result<(), ConformanceFailure> {
    const CHECK: &str = "output_cap";
    let mut job = job.clone();
    job.max_output_bytes = Some(cap);
    let (chunks, result) = run_to_end(backend, &job, 4).await?;
    let sent: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    if sent > cap {
        return Err(fail(CHECK, format!("sent {sent} bytes over the cap {cap}")));
    }
    match result {
        Err(ComputeError::OutputTooLarge { limit }) if limit == cap => Ok(()),
        other => Err(fail(CHECK, format!("expected OutputTooLarge {{ limit: {cap} }}, got {other:?}"))),
    }
}

/// A dropped receiver ends the job with [`ComputeError::ReceiverClosed`].
pub async fn check_receiver_dropped(backend: &dyn ComputeBackend, job: &JobSpec) -> Result<(), ConformanceFailure> {
    const CHECK: &str = "receiver_dropped";
    let (tx, rx) = mpsc::channel(1);
    drop(rx);
    let res = tokio::time::timeout(JOB_LIMIT, backend.execute(job, tx, CancellationToken::new()))
        .await
        .map_err(|_| fail(CHECK, "execute did not return"))?;
    match res {
        Err(ComputeError::ReceiverClosed) => Ok(()),
        other => Err(fail(CHECK, format!("expected ReceiverClosed, got {other:?}"))),
    }
}
