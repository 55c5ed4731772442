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
}
