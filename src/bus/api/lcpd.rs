//! lcpd's bus API.

use super::jobd::{Offer, OutputItem};
use serde::{Deserialize, Serialize};

/// A jobd worker as lcpd sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRow {
    /// Bus id (`jobd/NAME`).
    pub id: String,
    /// What it serves.
    pub offers: Vec<Offer>,
    /// Jobs it runs at once.
    pub capacity: u32,
    /// Jobs lcpd has running on it.
    pub running: u32,
}

/// A job to run on this node's workers without LCP or payment: an operator's self-test.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestJob {
    /// LCP task kind.
    pub task_kind: String,
    /// Model.
    pub model: String,
    /// Input bytes (for the OpenAI kinds, the HTTP request body).
    pub input: Vec<u8>,
}

/// One task a manifest advertises.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRow {
    /// Task kind.
    pub task_kind: String,
    /// The model of its params template, when it has the standard one.
    pub model: Option<String>,
}

/// An LCP manifest as clients see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRow {
    /// protocol_version.
    pub protocol_version: u16,
    /// max_payload_bytes.
    pub max_payload_bytes: u32,
    /// max_stream_bytes.
    pub max_stream_bytes: u64,
    /// max_job_bytes.
    pub max_job_bytes: u64,
    /// max_inflight_jobs, when sent.
    pub max_inflight_jobs: Option<u16>,
    /// supported_tasks.
    pub tasks: Vec<TaskRow>,
}

/// A peer that has sent its LCP manifest on its current connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LcpPeerRow {
    /// Node id, hex.
    pub node_id: String,
    /// Its manifest.
    pub manifest: ManifestRow,
}

/// A job to quote at a provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteArgs {
    /// Provider node id, hex.
    pub peer: String,
    /// Task kind.
    pub task_kind: String,
    /// Model (the standard params); `None` sends no params.
    pub model: Option<String>,
    /// Input bytes (for the OpenAI kinds: the HTTP request body).
    pub input: Vec<u8>,
    /// Input content type; default `application/json; charset=utf-8`.
    pub input_content_type: Option<String>,
    /// Refuse quotes above this price.
    pub max_price_msat: Option<u64>,
    /// Seconds until the job (quote, payment, result) must be finished; default 120.
    pub timeout_secs: Option<u32>,
}

/// A quote that passed the requester's checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteRow {
    /// Provider node id, hex.
    pub peer: String,
    /// Job id.
    pub job_id: [u8; 32],
    /// Price, msat.
    pub price_msat: u64,
    /// Quote expiry, unix seconds.
    pub quote_expiry: u64,
    /// terms_hash (the invoice's description hash).
    pub terms_hash: [u8; 32],
    /// The BOLT11 invoice.
    pub payment_request: String,
    /// Its payment hash.
    pub payment_hash: [u8; 32],
}

/// Which side of a job this node is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobRole {
    /// We run it for a peer.
    Provider,
    /// A peer runs it for us.
    Requester,
}

/// A job as `job list/show` print it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRow {
    /// Our side.
    pub role: JobRole,
    /// The other node, hex.
    pub peer: String,
    /// Job id.
    pub job_id: [u8; 32],
    /// State name.
    pub state: String,
    /// Task kind.
    pub task_kind: String,
    /// Model.
    pub model: Option<String>,
    /// Price, msat (0 before the quote).
    pub price_msat: u64,
    /// Quote expiry, unix seconds.
    pub quote_expiry: u64,
    /// terms_hash.
    pub terms_hash: [u8; 32],
    /// Payment hash.
    pub payment_hash: [u8; 32],
    /// The preimage, once paid (requester side).
    pub preimage: Option<[u8; 32]>,
    /// Requester side: the payment's outcome is not known yet (payd is asked until it is).
    pub payment_unresolved: bool,
    /// Result length.
    pub result_len: Option<u64>,
    /// Result content type.
    pub result_content_type: Option<String>,
    /// Result SHA-256.
    pub result_hash: Option<[u8; 32]>,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
    /// Created, unix seconds.
    pub created_at: u64,
    /// Last change, unix seconds.
    pub updated_at: u64,
}

/// How a requester job ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobOutcomeRow {
    /// Verified result.
    Ok {
        /// Content type.
        content_type: String,
        /// Length.
        len: u64,
        /// SHA-256.
        sha256: [u8; 32],
    },
    /// Failed.
    Failed {
        /// The provider's LCP error code, if it sent one.
        lcp_code: Option<u16>,
        /// One line.
        message: String,
        /// True only when it is certain that nothing was paid for the job (payd refused or failed
        /// the payment). False when it was paid or the payment's outcome is not known yet: a
        /// client must then not buy the same job elsewhere.
        nothing_paid: bool,
    },
    /// Cancelled (whether it was paid is in the job's record).
    Cancelled,
}

impl JobOutcomeRow {
    /// Whether it is certain that the job cost nothing (see [`JobOutcomeRow::Failed`]).
    pub fn nothing_paid(&self) -> bool {
        matches!(self, Self::Failed { nothing_paid: true, .. })
    }
}

/// Events of a job being executed, in order, to the client that asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobEvent {
    /// The invoice is paid.
    Paid {
        /// Payment hash.
        payment_hash: [u8; 32],
        /// Preimage: sha256(preimage) == payment_hash.
        preimage: [u8; 32],
        /// Amount, msat.
        price_msat: u64,
    },
    /// The result stream starts.
    Begin {
        /// Content type.
        content_type: String,
        /// Content encoding.
        content_encoding: String,
    },
    /// Result bytes, as they arrive (verified at `End` and `Result`).
    Chunk(Vec<u8>),
    /// The stream ended and matched its length and hash.
    End {
        /// Length.
        len: u64,
        /// SHA-256.
        sha256: [u8; 32],
    },
    /// The job is over.
    Result(JobOutcomeRow),
}

/// lcpd's API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LcpdApi {
    /// client -> lcpd: the workers. Answered with [`LcpdApi::Workers`].
    ListWorkers,
    /// lcpd -> client.
    Workers(Vec<WorkerRow>),
    /// client -> lcpd: run a test job on a worker. Answered with [`LcpdApi::JobAccepted`]; the
    /// output follows as [`LcpdApi::JobOutput`] events to the client, ending with `End` or
    /// `Failed`.
    RunTestJob(TestJob),
    /// lcpd -> client: the job is running or queued.
    JobAccepted {
        /// Job id chosen by lcpd.
        job_id: [u8; 32],
        /// Whether it waits for a free worker.
        queued: bool,
    },
    /// lcpd -> client, event: output of the client's job, in order.
    JobOutput {
        /// The job.
        job_id: [u8; 32],
        /// The item.
        item: OutputItem,
    },
    /// client -> lcpd: peers with a manifest. Answered with [`LcpdApi::LcpPeers`].
    ListLcpPeers,
    /// lcpd -> client.
    LcpPeers(Vec<LcpPeerRow>),
    /// client -> lcpd: our node id and manifest. Answered with [`LcpdApi::LocalInfo`].
    GetLocalInfo,
    /// lcpd -> client.
    LocalInfo {
        /// Node id, hex.
        node_id: String,
        /// Our manifest.
        manifest: ManifestRow,
    },
    /// client -> lcpd: quote a job at a peer (quote_request and input go out; the quote is
    /// checked). Answered with [`LcpdApi::Quote`] when the quote arrives, or an error.
    RequestQuote(QuoteArgs),
    /// lcpd -> client.
    Quote(QuoteRow),
    /// client -> lcpd: accept a quote: pay and receive the result. Answered with
    /// [`LcpdApi::Executing`]; [`LcpdApi::JobEvent`]s follow to the client, the last one a
    /// [`JobEvent::Result`]. For a job already done, the stored result is sent again.
    Execute {
        /// Job id from the quote.
        job_id: [u8; 32],
        /// Refuse to pay above this price.
        max_price_msat: Option<u64>,
        /// Seconds from now until the result must be in; default 120.
        timeout_secs: Option<u32>,
    },
    /// lcpd -> client: the job is being paid or was paid.
    Executing {
        /// Job id.
        job_id: [u8; 32],
    },
    /// lcpd -> client, event: progress of an executing job.
    JobEvent {
        /// Job id.
        job_id: [u8; 32],
        /// What happened.
        event: JobEvent,
    },
    /// client -> lcpd: cancel a requester job (`lcp_cancel` to the provider). Answered with
    /// [`LcpdApi::Done`].
    CancelJob {
        /// Job id.
        job_id: [u8; 32],
        /// Reason sent to the provider.
        reason: Option<String>,
    },
    /// lcpd -> client: the request succeeded.
    Done,
    /// client -> lcpd: the newest jobs, both roles. Answered with [`LcpdApi::Jobs`].
    ListJobs {
        /// At most this many per role.
        limit: u32,
    },
    /// lcpd -> client.
    Jobs(Vec<JobRow>),
    /// client -> lcpd: one job (both roles, if we are on both sides). Answered with
    /// [`LcpdApi::Job`].
    GetJob {
        /// Job id.
        job_id: [u8; 32],
        /// Include the stored result bytes.
        with_result: bool,
    },
    /// lcpd -> client.
    Job {
        /// Its rows (one per role we have it in).
        rows: Vec<JobRow>,
        /// The result, when asked for and stored.
        result: Option<Vec<u8>>,
    },
}
