//! Response bodies: a whole body (errors, JSON results, the model list) or a job's result streamed
//! as lcpd delivers it, one HTTP body frame per result chunk, so that each chunk is written to the
//! client as soon as it arrives.

use crate::bus::api::lcpd::{JobEvent, JobOutcomeRow};
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Marks a job finished for its guard (so dropping the body does not cancel a finished job).
pub trait Finish: Send {
    /// The job is over; nothing to cancel.
    fn finish(&mut self);
}

/// A streamed job result.
pub struct JobStream {
    first: Option<Bytes>,
    rx: mpsc::UnboundedReceiver<JobEvent>,
    guard: Box<dyn Finish>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    done: bool,
}

impl JobStream {
    /// A stream that starts with `first` (if any), then the chunks from `rx` until the job's
    /// result. The job is abandoned (see the guard) when the body is dropped before that.
    pub fn new(
        first: Option<Bytes>,
        rx: mpsc::UnboundedReceiver<JobEvent>,
        guard: Box<dyn Finish>,
        deadline: tokio::time::Instant,
    ) -> Self {
        Self { first, rx, guard, deadline: Box::pin(tokio::time::sleep_until(deadline)), done: false }
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

fn stream_error(msg: String) -> std::io::Error {
    std::io::Error::other(msg)
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
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                loop {
                    match s.rx.poll_recv(cx) {
                        Poll::Ready(Some(JobEvent::Chunk(c))) if c.is_empty() => continue,
                        Poll::Ready(Some(JobEvent::Chunk(c))) => return Poll::Ready(Some(Ok(Frame::data(c.into())))),
                        Poll::Ready(Some(JobEvent::Result(outcome))) => {
                            s.done = true;
                            s.guard.finish();
                            // A failure after the first byte cannot change the status any more:
                            // the stream is cut, so the client sees an incomplete response rather
                            // than a clean end.
                            return Poll::Ready(match outcome {
                                JobOutcomeRow::Ok { .. } => None,
                                JobOutcomeRow::Failed { message, .. } => {
                                    Some(Err(stream_error(format!("job failed: {message}"))))
                                }
                                JobOutcomeRow::Cancelled => Some(Err(stream_error("job cancelled".into()))),
                            });
                        }
                        Poll::Ready(Some(_)) => continue,
                        Poll::Ready(None) => {
                            s.done = true;
                            return Poll::Ready(Some(Err(stream_error("the job's events stopped".into()))));
                        }
                        Poll::Pending => break,
                    }
                }
                if s.deadline.as_mut().poll(cx).is_ready() {
                    s.done = true;
                    return Poll::Ready(Some(Err(stream_error("no complete result in time".into()))));
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

    struct Flag(Arc<AtomicBool>);
    impl Finish for Flag {
        fn finish(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn stream() -> (mpsc::UnboundedSender<JobEvent>, GatewayBody, Arc<AtomicBool>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let flag = Arc::new(AtomicBool::new(false));
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        let s = JobStream::new(Some(Bytes::from_static(b"a")), rx, Box::new(Flag(flag.clone())), deadline);
        (tx, GatewayBody::Job(Box::new(s)), flag)
    }

    #[tokio::test]
    async fn chunks_flow_until_an_ok_result() {
        let (tx, mut body, flag) = stream();
        tx.send(JobEvent::Chunk(b"b".to_vec())).unwrap();
        tx.send(JobEvent::Chunk(Vec::new())).unwrap();
        tx.send(JobEvent::End { len: 2, sha256: [0; 32] }).unwrap();
        let f = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&f[..], b"a");
        let f = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&f[..], b"b");
        assert!(!flag.load(Ordering::SeqCst));
        tx.send(JobEvent::Result(JobOutcomeRow::Ok { content_type: "t".into(), len: 2, sha256: [0; 32] })).unwrap();
        assert!(body.frame().await.is_none());
        assert!(flag.load(Ordering::SeqCst) && body.is_end_stream());
    }

    #[tokio::test]
    async fn a_failure_after_the_first_byte_cuts_the_stream() {
        let (tx, body, flag) = stream();
        tx.send(JobEvent::Result(JobOutcomeRow::Failed {
            lcp_code: Some(7),
            message: "boom".into(),
            nothing_paid: false,
        }))
        .unwrap();
        let e = body.collect().await.unwrap_err();
        assert!(e.to_string().contains("boom"), "{e}");
        assert!(flag.load(Ordering::SeqCst));
        let (tx, body, _) = stream();
        drop(tx);
        assert!(body.collect().await.is_err());
    }

    #[test]
    fn full_bodies_have_an_exact_size() {
        let b = GatewayBody::full(&b"xyz"[..]);
        assert_eq!(b.size_hint().exact(), Some(3));
        assert!(GatewayBody::empty().is_end_stream());
    }
}
