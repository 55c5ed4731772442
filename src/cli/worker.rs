//! `lcp-cli worker ...`: the node's jobd workers.

use super::{to_json, CliError, Progress};
use crate::bus::api::jobd::OutputItem;
use crate::bus::api::lcpd::{TestJob, WorkerRow};
use crate::bus::api::{Body, LcpdApi};
use crate::bus::{Bus, Corr, ServiceId};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, Instant};

/// `worker` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum WorkerCmd {
    /// List the jobd workers, what they serve and how busy they are
    List,
    /// Run a job on this node's workers, without LCP or payment, and print the result
    Test {
        /// Task kind
        #[arg(long, default_value = "openai.chat_completions.v1")]
        task_kind: String,
        /// Model
        #[arg(long)]
        model: String,
        /// Input file (for the OpenAI kinds: the JSON request body); `-` reads stdin
        #[arg(long, conflicts_with = "prompt", value_name = "FILE")]
        input: Option<String>,
        /// Build a chat request with this user message instead of --input
        #[arg(long)]
        prompt: Option<String>,
        /// Give up after this many seconds
        #[arg(long, default_value_t = 120, value_name = "SECS")]
        deadline: u64,
    },
}

/// Runs a `worker` subcommand.
pub async fn run(bus: &Bus, cmd: WorkerCmd, json: bool, timeout: Duration) -> Result<String, CliError> {
    match cmd {
        WorkerCmd::List => {
            let rows = list(bus, timeout).await?;
            if json {
                return to_json(&rows);
            }
            Ok(format_rows(&rows))
        }
        WorkerCmd::Test { task_kind, model, input, prompt, deadline } => {
            let input = match (input, prompt) {
                (Some(path), _) => read_input(&path)?,
                (None, Some(p)) => serde_json::to_vec(&serde_json::json!({
                    "model": model, "messages": [{"role": "user", "content": p}]
                }))
                .map_err(|e| CliError::Other(e.to_string()))?,
                (None, None) => return Err(CliError::Other("give --input FILE or --prompt TEXT".into())),
            };
            test(bus, TestJob { task_kind, model, input }, json, timeout, Duration::from_secs(deadline)).await
        }
    }
}

fn read_input(path: &str) -> Result<Vec<u8>, CliError> {
    let r = if path == "-" {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut v).map(|_| v)
    } else {
        std::fs::read(path)
    };
    r.map_err(|e| CliError::Other(format!("{path}: {e}")))
}

/// Asks lcpd for its workers.
pub async fn list(bus: &Bus, timeout: Duration) -> Result<Vec<WorkerRow>, CliError> {
    match bus.request(&ServiceId::Lcpd, Body::Lcpd(LcpdApi::ListWorkers), timeout).await? {
        Body::Lcpd(LcpdApi::Workers(w)) => Ok(w),
        other => Err(CliError::Other(format!("unexpected answer from lcpd: {other:?}"))),
    }
}

fn format_rows(rows: &[WorkerRow]) -> String {
    if rows.is_empty() {
        return "(no workers)".into();
    }
    let mut out = format!("{:<28} {:>8} {:>8}  OFFERS\n", "WORKER", "CAPACITY", "RUNNING");
    for r in rows {
        let offers: Vec<String> =
            r.offers.iter().map(|o| format!("{}:{}", o.task_kind, o.model.as_deref().unwrap_or("*"))).collect();
        let _ = writeln!(out, "{:<28} {:>8} {:>8}  {}", r.id, r.capacity, r.running, offers.join(" "));
    }
    out.trim_end().to_string()
}

async fn test(bus: &Bus, job: TestJob, json: bool, timeout: Duration, deadline: Duration) -> Result<String, CliError> {
    let mut rx = bus.take_incoming().ok_or_else(|| CliError::Other("bus queue taken".into()))?;
    let started = Instant::now();
    let (job_id, queued) = match bus.request(&ServiceId::Lcpd, Body::Lcpd(LcpdApi::RunTestJob(job)), timeout).await? {
        Body::Lcpd(LcpdApi::JobAccepted { job_id, queued }) => (job_id, queued),
        other => return Err(CliError::Other(format!("unexpected answer from lcpd: {other:?}"))),
    };
    if queued {
        eprintln!("queued: every worker for this model is busy");
    }
    let mut content_type = String::new();
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    let mut collected = Vec::new();
    let mut stdout = std::io::stdout().lock();
    let end = tokio::time::Instant::from_std(started + deadline);
    let mut progress = Progress::new(json, started);
    loop {
        let wake = end.min(tokio::time::Instant::now() + Progress::TICK);
        let msg = match tokio::time::timeout_at(wake, rx.recv()).await {
            Ok(m) => m.ok_or_else(|| CliError::Other("the bus closed".into()))?,
            Err(_) if wake < end => {
                progress.draw(false);
                continue;
            }
            Err(_) => return Err(CliError::Other(format!("no result within {} s", deadline.as_secs()))),
        };
        let (Corr::Event, Body::Lcpd(LcpdApi::JobOutput { job_id: j, item })) = (msg.corr, msg.body) else { continue };
        if j != job_id {
            continue;
        }
        match item {
            OutputItem::Begin { content_type: ct } => content_type = ct,
            OutputItem::Chunk(b) => {
                hasher.update(&b);
                len += b.len() as u64;
                progress.add(b.len());
                if json {
                    collected.extend_from_slice(&b);
                } else {
                    stdout.write_all(&b).and_then(|_| stdout.flush()).map_err(|e| CliError::Other(e.to_string()))?;
                }
            }
            OutputItem::End { len: l, sha256 } => {
                progress.finish();
                let ours: [u8; 32] = hasher.finalize().into();
                if l != len || sha256 != ours {
                    return Err(CliError::Other(format!(
                        "result check failed: worker says {l} bytes, got {len}; hashes {}",
                        if sha256 == ours { "match" } else { "differ" }
                    )));
                }
                if json {
                    let v = serde_json::json!({
                        "job_id": hex::encode(job_id), "content_type": content_type, "len": len,
                        "sha256": hex::encode(ours), "result": String::from_utf8_lossy(&collected),
                        "elapsed_ms": started.elapsed().as_millis() as u64,
                    });
                    return to_json(&v);
                }
                let _ = writeln!(stdout);
                eprintln!("{len} bytes, sha256 {}, {} ms", hex::encode(ours), started.elapsed().as_millis());
                return Ok(String::new());
            }
            OutputItem::Failed { lcp_code, message } => {
                return Err(CliError::Other(format!("job failed (LCP code {lcp_code}): {message}")))
            }
        }
    }
}
