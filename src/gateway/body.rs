//! Response bodies: a whole body (errors, JSON results, the model list) or a job's result streamed
//! as lcpd delivers it, one HTTP body frame per result chunk, so that each chunk is written to the
//! client as soon as it arrives.
//!
//! A streamed result is SSE. A job that fails after its first byte can no longer change the HTTP
//! status, so the stream ends with an error event in OpenAI's shape and then closes cleanly (a cut
//! chunked body reads as a broken connection to clients). A client that closes the connection
//! after the stream's terminal event (OpenAI's SDKs close at `data: [DONE]`) was served: its job is
//! not cancelled. lcpd hands a result over again from its start (a new `Begin`) when it accepted
//! another delivery than the one it began to forward: the bytes the client already has are
//! checked against the new delivery's start (by hash) and skipped.
//!
//! A stream is bounded by its silence, not its length: each chunk must come within the idle
//! time-out of the one before. A stream that stalls ends with a `timeout` error event, and its job
//! is cancelled at the provider so that it does not run on.

use super::http::Api;
use super::sse::{error_event, SseEnd};
use crate::bus::api::lcpd::{JobEvent, JobOutcomeRow};
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Marks a job finished for its guard (so dropping the body does not cancel a finished job).
pub trait Finish: Send {
    /// The job is over; nothing to cancel.
    fn finish(&mut self);
    /// The client has the whole result (the stream's terminal event) but the job has not ended
    /// yet: it must end by itself, not be cancelled.
    fn delivered(&mut self);
    /// The result stalled past the idle time-out: the job is given up (cancelled).
    fn stalled(&mut self);
}

/// A streamed job result.
pub struct JobStream {
    first: Option<Bytes>,
    rx: mpsc::UnboundedReceiver<JobEvent>,
    guard: Box<dyn Finish>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    idle: std::time::Duration,
    api: Api,
    sse: SseEnd,
    /// Bytes sent to the client, and their hash.
    sent: u64,
    sent_hash: Sha256,
    /// After a new `Begin`: how many bytes of the new delivery the client already has, and the
    /// hash of those seen so far.
    replay: Option<(u64, Sha256)>,
    done: bool,
}

impl JobStream {
    /// A stream of an `api` result that starts with `first` (if any), then the chunks from `rx`
    /// until the job's result, each within `idle` of the one before. The job is abandoned (see the
    /// guard) when the body is dropped before that, unless the client had received the stream's
    /// terminal event.
    pub fn new(
        api: Api,
        first: Option<Bytes>,
        rx: mpsc::UnboundedReceiver<JobEvent>,
        guard: Box<dyn Finish>,
        idle: std::time::Duration,
    ) -> Self {
        let deadline = Box::pin(tokio::time::sleep(idle));
        let (sse, sent_hash) = (SseEnd::default(), Sha256::new());
        Self { first, rx, guard, deadline, idle, api, sse, sent: 0, sent_hash, replay: None, done: false }
    }

    /// The frame that ends the stream on a failure: nothing more when the client already has the
    /// terminal event, else an error event.
    fn fail(&mut self, code: &str, message: &str) -> Option<Result<Frame<Bytes>, std::io::Error>> {
        self.done = true;
        if self.sse.complete() {
            return None;
        }
        let e = error_event(self.api, self.sse.at_boundary(), code, message);
        Some(Ok(Frame::data(Bytes::from(e))))
    }

    fn data(&mut self, b: Bytes) -> Option<Result<Frame<Bytes>, std::io::Error>> {
        self.sse.feed(&b);
        self.sent += b.len() as u64;
        self.sent_hash.update(&b);
        Some(Ok(Frame::data(b)))
    }

    /// A chunk of the result: what the client does not have yet (`None`: nothing new), or the end
    /// of the stream when a result handed over again does not start with what the client has.
    fn chunk(&mut self, mut b: Bytes) -> Option<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if let Some((left, hash)) = &mut self.replay {
            let n = usize::try_from(*left).unwrap_or(usize::MAX).min(b.len());
            hash.update(&b[..n]);
            *left -= n as u64;
            if *left > 0 {
                return None;
            }
            let same = hash.clone().finalize() == self.sent_hash.clone().finalize();
            self.replay = None;
            if !same {
                return Some(self.fail("job_failed", "the result was handed over again with other bytes"));
            }
            b = b.slice(n..);
            if b.is_empty() {
                return None;
            }
        }
        Some(self.data(b))
    }
}

impl Drop for JobStream {
    fn drop(&mut self) {
        if !self.done && self.sse.complete() {
            self.guard.delivered();
        }
    }
}

/// A response body.
pub enum GatewayBody {
    /// Everything at once (`None` once sent).
    Full(Option<Bytes>),
    /// A job's result as it arrives.
    Job(Box<JobStream>),
}

impl GatewayBody {
    /// A whole body.
    pub fn full(b: impl Into<Bytes>) -> Self {
        GatewayBody::Full(Some(b.into()))
    }

    /// An empty body.
    pub fn empty() -> Self {
        GatewayBody::Full(None)
    }
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            GatewayBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            GatewayBody::Job(s) => {
                if s.done {
                    return Poll::Ready(None);
                }
                if let Some(b) = s.first.take() {
                    return Poll::Ready(s.data(b));
                }
                loop {
                    let ev = s.rx.poll_recv(cx);
                    if matches!(ev, Poll::Ready(Some(_))) {
                        // The job moved: the silence bound starts again.
                        let next = tokio::time::Instant::now() + s.idle;
                        s.deadline.as_mut().reset(next);
                    }
                    match ev {
                        Poll::Ready(Some(JobEvent::Chunk(c))) if c.is_empty() => continue,
                        Poll::Ready(Some(JobEvent::Chunk(c))) => match s.chunk(c.into()) {
                            Some(frame) => return Poll::Ready(frame),
                            None => continue,
                        },
                        Poll::Ready(Some(JobEvent::Begin { .. })) if s.sent > 0 => {
                            s.replay = Some((s.sent, Sha256::new()));
                        }
                        Poll::Ready(Some(JobEvent::Result(outcome))) => {
                            s.guard.finish();
                            return Poll::Ready(match outcome {
                                JobOutcomeRow::Ok { .. } => {
                                    s.done = true;
                                    None
                                }
                                JobOutcomeRow::Failed { message, .. } => {
                                    s.fail("job_failed", &format!("the job failed: {message}"))
                                }
                                JobOutcomeRow::Cancelled => s.fail("job_cancelled", "the job was cancelled"),
                            });
                        }
                        Poll::Ready(Some(_)) => continue,
                        Poll::Ready(None) => {
                            return Poll::Ready(s.fail("job_lost", "the job's events stopped"));
                        }
                        Poll::Pending => break,
                    }
                }
                if s.deadline.as_mut().poll(cx).is_ready() {
                    if s.sse.complete() {
                        // The client has the whole stream: served, whatever the job does next.
                        s.done = true;
                        s.guard.delivered();
                        return Poll::Ready(None);
                    }
                    s.guard.stalled();
                    let msg = format!("the provider's result stalled: nothing for {:?}", s.idle);
                    return Poll::Ready(s.fail("timeout", &msg));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            GatewayBody::Full(b) => b.is_none(),
            GatewayBody::Job(s) => s.done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            GatewayBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            GatewayBody::Full(None) => SizeHint::with_exact(0),
            GatewayBody::Job(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[derive(Default)]
    struct Flags {
        finished: AtomicBool,
        delivered: AtomicBool,
        stalled: AtomicBool,
    }

    struct Flag(Arc<Flags>);
    impl Finish for Flag {
        fn finish(&mut self) {
            self.0.finished.store(true, Ordering::SeqCst);
        }
        fn delivered(&mut self) {
            self.0.delivered.store(true, Ordering::SeqCst);
        }
        fn stalled(&mut self) {
            self.0.stalled.store(true, Ordering::SeqCst);
        }
    }

    const IDLE: std::time::Duration = std::time::Duration::from_secs(30);

    fn stream_of(api: Api, first: &'static [u8]) -> (mpsc::UnboundedSender<JobEvent>, GatewayBody, Arc<Flags>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let flags = Arc::new(Flags::default());
        let s = JobStream::new(api, Some(Bytes::from_static(first)), rx, Box::new(Flag(flags.clone())), IDLE);
        (tx, GatewayBody::Job(Box::new(s)), flags)
    }

    fn stream() -> (mpsc::UnboundedSender<JobEvent>, GatewayBody, Arc<Flags>) {
        stream_of(Api::ChatCompletions, b"a")
    }

    #[tokio::test]
    async fn chunks_flow_until_an_ok_result() {
        let (tx, mut body, flags) = stream();
        tx.send(JobEvent::Chunk(b"b".to_vec())).unwrap();
        tx.send(JobEvent::Chunk(Vec::new())).unwrap();
        tx.send(JobEvent::End { len: 2, sha256: [0; 32] }).unwrap();
        let f = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&f[..], b"a");
        let f = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&f[..], b"b");
        assert!(!flags.finished.load(Ordering::SeqCst));
        tx.send(JobEvent::Result(JobOutcomeRow::Ok { content_type: "t".into(), len: 2, sha256: [0; 32] })).unwrap();
        assert!(body.frame().await.is_none());
        assert!(flags.finished.load(Ordering::SeqCst) && body.is_end_stream());
        drop(body);
        assert!(!flags.delivered.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_failure_after_the_first_byte_ends_with_an_error_event() {
        let failed = || {
            JobEvent::Result(JobOutcomeRow::Failed { lcp_code: Some(7), message: "boom".into(), nothing_paid: false })
        };
        let (tx, body, flags) = stream_of(Api::ChatCompletions, b"data: {}\n\n");
        tx.send(failed()).unwrap();
        let all = body.collect().await.expect("a clean end").to_bytes();
        let text = String::from_utf8(all.to_vec()).unwrap();
        assert!(text.starts_with("data: {}\n\ndata: {\"error\":"), "{text}");
        assert!(text.contains("boom") && text.ends_with("\n\n"), "{text}");
        assert!(flags.finished.load(Ordering::SeqCst));
        // Stopped inside an event: the error is an event of its own.
        let (tx, body, _) = stream_of(Api::Responses, b"event: response.output_text.delta\ndata: {\"a");
        tx.send(JobEvent::Result(JobOutcomeRow::Cancelled)).unwrap();
        let text = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
        assert!(text.ends_with("\"a\n\nevent: error\ndata: {\"code\":\"job_cancelled\",\"message\":\"the job was cancelled\",\"param\":null,\"type\":\"error\"}\n\n"), "{text}");
        // The job's events stop: an error event too, and the job is abandoned (not finished).
        let (tx, body, flags) = stream();
        drop(tx);
        let text = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
        assert!(text.contains("job_lost"), "{text}");
        assert!(!flags.finished.load(Ordering::SeqCst) && !flags.delivered.load(Ordering::SeqCst));
        // A failure after the terminal event adds nothing.
        let (tx, body, _) = stream_of(Api::ChatCompletions, b"data: [DONE]\n\n");
        tx.send(failed()).unwrap();
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"data: [DONE]\n\n");
    }

    #[tokio::test]
    async fn a_result_handed_over_again_is_not_sent_twice() {
        let begin = || JobEvent::Begin { content_type: "t".into(), content_encoding: "identity".into() };
        let ok = JobEvent::Result(JobOutcomeRow::Ok { content_type: "t".into(), len: 4, sha256: [0; 32] });
        let (tx, body, _) = stream_of(Api::ChatCompletions, b"ab");
        for e in [JobEvent::Chunk(b"c".to_vec()), begin(), JobEvent::Chunk(b"a".to_vec())] {
            tx.send(e).unwrap();
        }
        for e in [JobEvent::Chunk(b"bcd".to_vec()), ok.clone()] {
            tx.send(e).unwrap();
        }
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"abcd");
        // Handed over again with other bytes: the stream ends with an error event.
        let (tx, body, _) = stream_of(Api::ChatCompletions, b"ab");
        for e in [begin(), JobEvent::Chunk(b"xbcd".to_vec()), ok] {
            tx.send(e).unwrap();
        }
        let text = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
        assert!(text.starts_with("ab") && text.contains("other bytes") && !text.contains("cd"), "{text}");
    }

    #[tokio::test]
    async fn a_body_dropped_after_the_terminal_event_was_delivered() {
        let (tx, mut body, flags) = stream_of(Api::ChatCompletions, b"data: {}\n\n");
        body.frame().await.unwrap().unwrap();
        tx.send(JobEvent::Chunk(b"data: [DONE]\n\n".to_vec())).unwrap();
        body.frame().await.unwrap().unwrap();
        drop(body);
        assert!(flags.delivered.load(Ordering::SeqCst));
        assert!(!flags.finished.load(Ordering::SeqCst));
        // Dropped before the terminal event: abandoned (neither flag), so the guard cancels.
        let (_tx, mut body, flags) = stream_of(Api::ChatCompletions, b"data: {}\n\n");
        body.frame().await.unwrap().unwrap();
        drop(body);
        assert!(!flags.delivered.load(Ordering::SeqCst) && !flags.finished.load(Ordering::SeqCst));
    }

    /// Chunks 100 ms apart (the provider's pace) keep a 300 ms-idle stream alive for a second;
    /// 300 ms of silence then ends it with a `timeout` error event and gives the job up.
    #[tokio::test]
    async fn silence_ends_a_stream_but_length_does_not() {
        let idle = std::time::Duration::from_millis(300);
        let (tx, rx) = mpsc::unbounded_channel();
        let flags = Arc::new(Flags::default());
        let first = Some(Bytes::from_static(b"data: {}\n\n"));
        let s = JobStream::new(Api::ChatCompletions, first, rx, Box::new(Flag(flags.clone())), idle);
        let mut body = GatewayBody::Job(Box::new(s));
        body.frame().await.unwrap().unwrap();
        let started = tokio::time::Instant::now();
        for _ in 0..10 {
            tokio::time::sleep(idle / 3).await;
            tx.send(JobEvent::Chunk(b"data: {}\n\n".to_vec())).unwrap();
            let f = body.frame().await.unwrap().unwrap().into_data().unwrap();
            assert_eq!(&f[..], b"data: {}\n\n");
        }
        assert!(started.elapsed() > 3 * idle, "the stream outlasted its idle bound");
        assert!(!flags.stalled.load(Ordering::SeqCst));
        let rest = body.collect().await.expect("a clean end").to_bytes();
        let text = String::from_utf8(rest.to_vec()).unwrap();
        assert!(text.starts_with("data: {\"error\":") && text.contains("\"timeout\""), "{text}");
        assert!(flags.stalled.load(Ordering::SeqCst) && !flags.delivered.load(Ordering::SeqCst));
        // A stall after the terminal event: the client was served, nothing is given up.
        let (tx, rx) = mpsc::unbounded_channel::<JobEvent>();
        let flags = Arc::new(Flags::default());
        let first = Some(Bytes::from_static(b"data: [DONE]\n\n"));
        let body = GatewayBody::Job(Box::new(JobStream::new(
            Api::ChatCompletions,
            first,
            rx,
            Box::new(Flag(flags.clone())),
            idle,
        )));
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"data: [DONE]\n\n");
        assert!(flags.delivered.load(Ordering::SeqCst) && !flags.stalled.load(Ordering::SeqCst));
        drop(tx);
    }

    #[test]
    fn full_bodies_have_an_exact_size() {
        let b = GatewayBody::full(&b"xyz"[..]);
        assert_eq!(b.size_hint().exact(), Some(3));
        assert!(GatewayBody::empty().is_end_stream());
    }
}
