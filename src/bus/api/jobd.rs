//! jobd's bus API: worker announcements, pricing, execution with streamed output, cancel.

use serde::{Deserialize, Serialize};

/// One thing a worker serves: a task kind, for one model or (`model: None`) any model.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Offer {
    /// LCP task kind, e.g. `openai.chat_completions.v1`.
    pub task_kind: String,
    /// Model name, or `None` for any.
    pub model: Option<String>,
}

/// What a worker says about itself when it joins and with every heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerAnnounce {
    /// Random per worker process: a new value means the worker restarted (and its jobs died).
    pub instance: u64,
    /// Task kinds and models it serves.
    pub offers: Vec<Offer>,
    /// How many jobs it runs at once.
    pub capacity: u32,
    /// The run ids (the `job_id` of [`JobSpec`]) it runs now. lcpd cancels those it does not
    /// know (runs of a previous lcpd, or superseded ones) and counts them against the capacity
    /// until they are gone.
    pub runs: Vec<[u8; 32]>,
}

/// A job as jobd sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The LCP job id.
    pub job_id: [u8; 32],
    /// LCP task kind.
    pub task_kind: String,
    /// The model from the request params, if any.
    pub model: Option<String>,
    /// The raw params TLV stream of the quote request.
    pub params: Vec<u8>,
    /// The decoded input stream.
    pub input: Vec<u8>,
    /// Content type of the input stream.
    pub input_content_type: String,
    /// Cap on result bytes (the requester's limits), if any.
    pub max_output_bytes: Option<u64>,
}

/// One item of a job's output, streamed from jobd to lcpd as events, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutputItem {
    /// The result starts; its content type.
    Begin {
        /// e.g. `application/json; charset=utf-8` or `text/event-stream; charset=utf-8`.
        content_type: String,
    },
    /// Result bytes, as they arrive.
    Chunk(Vec<u8>),
    /// The result is complete.
    End {
        /// Total bytes.
        len: u64,
        /// SHA-256 of all bytes.
        sha256: [u8; 32],
    },
    /// The job failed; `lcp_code` is the LCP error code to report.
    Failed {
        /// LCP error code (section 5 of the protocol).
        lcp_code: u16,
        /// One line.
        message: String,
    },
}

/// jobd's API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobdApi {
    /// jobd -> lcpd, event: join, and heartbeat.
    Announce(WorkerAnnounce),
    /// lcpd -> jobd, request: price this job. Answered with [`JobdApi::Priced`].
    Quote(JobSpec),
    /// jobd -> lcpd, reply: the price.
    Priced {
        /// Price in millisatoshis.
        price_msat: u64,
    },
    /// jobd -> lcpd, reply: the job cannot be quoted; `lcp_code` is the LCP error to send.
    Refused {
        /// LCP error code.
        lcp_code: u16,
        /// One line.
        message: String,
    },
    /// lcpd -> jobd, request: run this paid job. Answered with [`JobdApi::Started`] (or an error,
    /// e.g. `resource_exhausted` when the worker is full); the output follows as
    /// [`JobdApi::Output`] events.
    Execute(JobSpec),
    /// jobd -> lcpd, reply: the job runs.
    Started,
    /// lcpd -> jobd, request: stop this job. Answered with [`JobdApi::Cancelled`].
    Cancel {
        /// The job.
        job_id: [u8; 32],
    },
    /// jobd -> lcpd, reply to cancel.
    Cancelled {
        /// Whether the job was still running.
        was_running: bool,
    },
    /// jobd -> lcpd, event: output of a running job.
    Output {
        /// The job.
        job_id: [u8; 32],
        /// The item.
        item: OutputItem,
    },
}
