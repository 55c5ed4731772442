//! `lcp-cli job ...`: LCP jobs at a provider (quote, run, cancel) and the node's job records.

use super::{to_json, CliError, Progress};
use crate::bus::api::lcpd::{JobEvent, JobOutcomeRow, JobRow, LcpdApi, QuoteArgs, QuoteRow};
use crate::bus::api::Body;
use crate::bus::{Bus, ServiceId};
use crate::wire::lcp::v02;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::io::Write;
use std::time::{Duration, Instant};

/// What to run and where.
#[derive(clap::Args, Debug, Clone)]
pub struct JobArgs {
    /// Provider node id, hex
    pub peer: String,
    /// Model
    #[arg(long, short = 'm')]
    pub model: String,
    /// Task kind
    #[arg(long, default_value = v02::TASK_OPENAI_CHAT)]
    pub task_kind: String,
    /// A user message; the request body of the task kind is built from it (chat completions:
    /// `messages`; responses: `input`)
    #[arg(long, short = 'p', conflicts_with = "input")]
    pub prompt: Option<String>,
    /// The request body from a file (`-` for stdin)
    #[arg(long, short = 'i')]
    pub input: Option<String>,
    /// Ask for a streamed (SSE) result (with --prompt)
    #[arg(long)]
    pub stream: bool,
    /// With --prompt: the most output tokens to ask for (chat: `max_tokens`; responses:
    /// `max_output_tokens`); the provider prices the job for it. 0 leaves it out (the provider's
    /// maximum)
    #[arg(long, default_value_t = DEFAULT_MAX_TOKENS, value_name = "N", conflicts_with = "input")]
    pub max_tokens: u32,
    /// Refuse quotes above this price
    #[arg(long, value_name = "MSAT")]
    pub max_price_msat: Option<u64>,
    /// Seconds the job may wait for its result to begin, and at most between two parts of it (a
    /// long result that keeps coming is never cut)
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub job_timeout: u32,
}

/// `job` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum JobCmd {
    /// Peers that have sent an LCP manifest, with what they offer
    Peers,
    /// Ask a provider for a quote (nothing is paid)
    Quote(JobArgs),
    /// Quote, pay and stream the result to stdout (progress on stderr)
    Run(JobArgs),
    /// Pay an earlier quote and stream its result (or print a result already received)
    Accept {
        /// Job id, hex
        job_id: String,
        /// Refuse to pay above this price
        #[arg(long, value_name = "MSAT")]
        max_price_msat: Option<u64>,
        /// Seconds the result may wait to begin, and at most between two parts of it
        #[arg(long, default_value_t = 120, value_name = "SECS")]
        job_timeout: u32,
    },
    /// The node's jobs, newest first (both roles)
    List {
        /// At most this many per role
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One job
    Show {
        /// Job id, hex
        job_id: String,
        /// Print the stored result instead of the record (with --json: in a JSON object)
        #[arg(long)]
        result: bool,
    },
    /// Cancel a job we requested (`lcp_cancel` to the provider)
    Cancel {
        /// Job id, hex
        job_id: String,
        /// Reason sent to the provider
        #[arg(long)]
        reason: Option<String>,
    },
}

/// Output tokens a `--prompt` request asks for unless told: enough for a chat answer, and a price
/// far below a provider's maximum (4096 by default), which a request without a limit pays for.
pub const DEFAULT_MAX_TOKENS: u32 = 1024;

fn parse_id(s: &str) -> Result<[u8; 32], CliError> {
    super::parse_hex32("job id", s)
}

fn input_of(a: &JobArgs) -> Result<Vec<u8>, CliError> {
    match (&a.prompt, &a.input) {
        (Some(p), _) => {
            let mut body = match a.task_kind.as_str() {
                v02::TASK_OPENAI_CHAT => serde_json::json!({
                    "model": a.model,
                    "messages": [{"role": "user", "content": p}],
                }),
                v02::TASK_OPENAI_RESPONSES => serde_json::json!({"model": a.model, "input": p}),
                other => {
                    return Err(CliError::Other(format!(
                        "--prompt builds a request for {} or {} only; give --input FILE for {other}",
                        v02::TASK_OPENAI_CHAT,
                        v02::TASK_OPENAI_RESPONSES
                    )))
                }
            };
            if a.stream {
                body["stream"] = serde_json::Value::Bool(true);
            }
            if a.max_tokens > 0 {
                let field = if a.task_kind == v02::TASK_OPENAI_CHAT { "max_tokens" } else { "max_output_tokens" };
                body[field] = serde_json::Value::from(a.max_tokens);
            }
            serde_json::to_vec(&body).map_err(|e| CliError::Other(e.to_string()))
        }
        (None, Some(path)) if path == "-" => {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)
                .map_err(|e| CliError::Other(format!("stdin: {e}")))?;
            Ok(v)
        }
        (None, Some(path)) => std::fs::read(path).map_err(|e| CliError::Other(format!("{path}: {e}"))),
        (None, None) => Err(CliError::Other("give --prompt TEXT or --input FILE".into())),
    }
}

async fn lcpd(bus: &Bus, req: LcpdApi, wait: Duration) -> Result<LcpdApi, CliError> {
    match bus.request(&ServiceId::Lcpd, Body::Lcpd(req), wait).await? {
        Body::Lcpd(a) => Ok(a),
        other => Err(CliError::Other(format!("unexpected answer from lcpd: {other:?}"))),
    }
}

fn quote_text(q: &QuoteRow) -> String {
    format!(
        "job        {}\npeer       {}\nprice      {} msat\nexpires    {}\nterms hash {}\npayment    {}\ninvoice    {}",
        hex::encode(q.job_id),
        q.peer,
        q.price_msat,
        q.quote_expiry,
        hex::encode(q.terms_hash),
        hex::encode(q.payment_hash),
        q.payment_request
    )
}

fn row_line(r: &JobRow) -> String {
    format!(
        "{}  {:<9}  {:<15}  {}  {} msat  {}{}",
        hex::encode(r.job_id),
        format!("{:?}", r.role).to_lowercase(),
        r.state,
        &r.peer[..r.peer.len().min(16)],
        r.price_msat,
        r.model.as_deref().unwrap_or("-"),
        r.error.as_ref().map(|e| format!("  ({e})")).unwrap_or_default()
    )
}

/// Runs a `job` subcommand.
pub async fn run(bus: &Bus, cmd: JobCmd, json: bool, timeout: Duration) -> Result<String, CliError> {
    match cmd {
        JobCmd::Peers => match lcpd(bus, LcpdApi::ListLcpPeers, timeout).await? {
            LcpdApi::LcpPeers(p) if json => to_json(&p),
            LcpdApi::LcpPeers(p) if p.is_empty() => Ok("(no LCP peers)".into()),
            LcpdApi::LcpPeers(p) => {
                let mut out = String::new();
                for peer in &p {
                    let tasks: Vec<String> = peer
                        .manifest
                        .tasks
                        .iter()
                        .map(|t| {
                            format!("{}{}", t.task_kind, t.model.as_ref().map(|m| format!(":{m}")).unwrap_or_default())
                        })
                        .collect();
                    let _ = writeln!(
                        out,
                        "{}  v{}  max_payload {}  tasks: {}",
                        peer.node_id,
                        peer.manifest.protocol_version,
                        peer.manifest.max_payload_bytes,
                        if tasks.is_empty() { "-".into() } else { tasks.join(", ") }
                    );
                }
                Ok(out.trim_end().to_string())
            }
            other => Err(CliError::Other(format!("unexpected answer from lcpd: {other:?}"))),
        },
        JobCmd::Quote(a) => {
            let q = quote(bus, &a).await?;
            if json {
                to_json(&q)
            } else {
                Ok(quote_text(&q))
            }
        }
        JobCmd::Run(a) => {
            let started = Instant::now();
            let q = quote(bus, &a).await?;
            if !json {
                eprintln!("quote: {} msat from {} (terms hash {})", q.price_msat, q.peer, hex::encode(q.terms_hash));
            }
            execute(bus, q.job_id, Some(&q), a.max_price_msat, a.job_timeout, json, started).await
        }
        JobCmd::Accept { job_id, max_price_msat, job_timeout } => {
            let id = parse_id(&job_id)?;
            execute(bus, id, None, max_price_msat, job_timeout, json, Instant::now()).await
        }
        JobCmd::List { limit } => match lcpd(bus, LcpdApi::ListJobs { limit }, timeout).await? {
            LcpdApi::Jobs(rows) if json => to_json(&rows),
            LcpdApi::Jobs(rows) if rows.is_empty() => Ok("(no jobs)".into()),
            LcpdApi::Jobs(rows) => Ok(rows.iter().map(row_line).collect::<Vec<_>>().join("\n")),
            other => Err(CliError::Other(format!("unexpected answer from lcpd: {other:?}"))),
        },
        JobCmd::Show { job_id, result } => {
            let id = parse_id(&job_id)?;
            match lcpd(bus, LcpdApi::GetJob { job_id: id, with_result: result }, timeout).await? {
                LcpdApi::Job { result: Some(r), .. } if result && json => to_json(&serde_json::json!({
                    "job_id": hex::encode(id),
                    "result_len": r.len(),
                    "result": String::from_utf8_lossy(&r),
                })),
                LcpdApi::Job { result: Some(r), .. } if result => Ok(String::from_utf8_lossy(&r).into_owned()),
                LcpdApi::Job { .. } if result => Err(CliError::Other("no stored result for this job".into())),
                LcpdApi::Job { rows, .. } if json => to_json(&rows),
                LcpdApi::Job { rows, .. } => {
                    let mut out = String::new();
                    for r in &rows {
                        let _ = writeln!(out, "{}", row_line(r));
                        let _ = writeln!(out, "  peer         {}", r.peer);
                        let _ = writeln!(out, "  task         {} {}", r.task_kind, r.model.as_deref().unwrap_or(""));
                        let _ = writeln!(out, "  terms hash   {}", hex::encode(r.terms_hash));
                        let _ = writeln!(out, "  payment hash {}", hex::encode(r.payment_hash));
                        if let Some(p) = r.preimage {
                            let ok = <[u8; 32]>::from(Sha256::digest(p)) == r.payment_hash;
                            let _ = writeln!(out, "  preimage     {} (sha256 matches: {ok})", hex::encode(p));
                        } else if r.payment_unresolved {
                            let _ = writeln!(out, "  payment      outcome not known yet; lcpd keeps asking payd");
                        }
                        if let (Some(len), Some(h)) = (r.result_len, r.result_hash) {
                            let _ = writeln!(
                                out,
                                "  result       {len} bytes, {}, sha256 {}",
                                r.result_content_type.as_deref().unwrap_or("-"),
                                hex::encode(h)
                            );
                        }
                    }
                    Ok(out.trim_end().to_string())
                }
                other => Err(CliError::Other(format!("unexpected answer from lcpd: {other:?}"))),
            }
        }
        JobCmd::Cancel { job_id, reason } => {
            let id = parse_id(&job_id)?;
            match lcpd(bus, LcpdApi::CancelJob { job_id: id, reason }, timeout).await? {
                LcpdApi::Done => Ok(if json { "{\"cancelled\": true}".into() } else { "cancelled".into() }),
                other => Err(CliError::Other(format!("unexpected answer from lcpd: {other:?}"))),
            }
        }
    }
}

async fn quote(bus: &Bus, a: &JobArgs) -> Result<QuoteRow, CliError> {
    let args = QuoteArgs {
        peer: super::parse_node_id(&a.peer)?,
        task_kind: a.task_kind.clone(),
        model: Some(a.model.clone()),
        input: input_of(a)?,
        input_content_type: None,
        max_price_msat: a.max_price_msat,
        timeout_secs: Some(a.job_timeout),
    };
    let wait = Duration::from_secs(u64::from(a.job_timeout) + 5);
    match lcpd(bus, LcpdApi::RequestQuote(args), wait).await? {
        LcpdApi::Quote(q) => Ok(q),
        other => Err(CliError::Other(format!("unexpected answer from lcpd: {other:?}"))),
    }
}

/// How long one `Execute` may wait for lcpd's answer.
const EXECUTE_WAIT: Duration = Duration::from_secs(45);

/// Whether an error from lcpd is its answer (final) rather than lcpd or its bus being away.
fn is_answer(e: &CliError) -> bool {
    use crate::bus::{BusError, ErrorCode};
    match e {
        CliError::Bus(BusError::Remote(r)) => !matches!(r.code, ErrorCode::Unavailable | ErrorCode::Unimplemented),
        CliError::Bus(_) => false,
        _ => true,
    }
}

/// Pays and streams: result bytes to stdout as they arrive, a progress line on stderr when it is
/// a terminal, a summary on stderr at the end (or everything as JSON with `--json`).
///
/// lcpd hosts the bus: when it restarts (the broker's epoch changes) the job's events stop, so
/// the client sends `Execute` again for the same job id. That never pays twice (a paying or paid
/// job is only watched again, a finished one sends its stored result again), and the bytes
/// already printed are not printed again. Errors name the job id, for `job show`.
async fn execute(
    bus: &Bus,
    job_id: [u8; 32],
    q: Option<&QuoteRow>,
    max_price_msat: Option<u64>,
    job_timeout: u32,
    json: bool,
    started: Instant,
) -> Result<String, CliError> {
    let id_hex = hex::encode(job_id);
    let named = |e: String| CliError::Other(format!("job {id_hex}: {e}"));
    let mut rx = bus.take_incoming().ok_or_else(|| CliError::Other("bus queue taken".into()))?;
    // The job's time bounds silence, as lcpd's deadline does: every event of the job moves it.
    let patience = Duration::from_secs(u64::from(job_timeout) + 15);
    let mut deadline = tokio::time::Instant::now() + patience;
    let execute_req = |deadline: tokio::time::Instant| {
        // What is left of the job's own time (the client's deadline has 15 s more).
        let left = deadline.saturating_duration_since(tokio::time::Instant::now()).as_secs().saturating_sub(15).max(1);
        LcpdApi::Execute { job_id, max_price_msat, timeout_secs: Some(u32::try_from(left).unwrap_or(job_timeout)) }
    };
    let mut epoch = bus.broker_epoch();
    // Whether the job's events are (believed to be) coming; false while lcpd is away.
    let mut attached = match lcpd(bus, execute_req(deadline), EXECUTE_WAIT).await {
        Ok(LcpdApi::Executing { .. }) => true,
        Ok(other) => return Err(CliError::Other(format!("unexpected answer from lcpd: {other:?}"))),
        Err(e) if is_answer(&e) => return Err(named(e.to_string())),
        // Lost with lcpd: asked again once its bus is back.
        Err(_) => false,
    };
    let mut progress = Progress::new(json, started);
    let mut stdout = std::io::stdout();
    // The current stream's bytes, and how many of them went to stdout (a stream sent again after
    // a re-attach starts over; what was printed is not printed twice).
    let (mut result, mut written, mut paid) = (Vec::new(), 0usize, None);
    loop {
        let now_epoch = bus.broker_epoch();
        if !attached || now_epoch != epoch {
            epoch = now_epoch;
            match lcpd(bus, execute_req(deadline), Progress::TICK * 8).await {
                Ok(LcpdApi::Executing { .. }) => {
                    attached = true;
                    if !json {
                        eprintln!("\nlcpd restarted; watching job {id_hex} again");
                    }
                }
                Ok(other) => return Err(CliError::Other(format!("unexpected answer from lcpd: {other:?}"))),
                Err(e) if is_answer(&e) => return Err(named(e.to_string())),
                Err(_) => attached = false,
            }
        }
        let wake = deadline.min(tokio::time::Instant::now() + Progress::TICK);
        let m = match tokio::time::timeout_at(wake, rx.recv()).await {
            Ok(Some(m)) => m,
            Ok(None) => return Err(named("the bus closed before the job finished".into())),
            Err(_) if wake < deadline => {
                progress.draw(false);
                continue;
            }
            Err(_) => {
                return Err(named(format!(
                    "timed out waiting for the result (`lcp-cli job show {id_hex}` shows where it is)"
                )))
            }
        };
        let Body::Lcpd(LcpdApi::JobEvent { job_id: j, event }) = m.body else { continue };
        if j != job_id {
            continue;
        }
        deadline = deadline.max(tokio::time::Instant::now() + patience);
        match event {
            JobEvent::Paid { payment_hash, preimage, price_msat } => paid = Some((payment_hash, preimage, price_msat)),
            JobEvent::Begin { .. } => result.clear(),
            JobEvent::End { .. } => {}
            JobEvent::Chunk(data) => {
                result.extend_from_slice(&data);
                if result.len() > written {
                    progress.add(result.len() - written);
                    if !json {
                        // A closed stdout (`| head`) ends the output, not the job.
                        let _ = stdout.write_all(&result[written..]).and_then(|()| stdout.flush());
                    }
                    written = result.len();
                }
            }
            JobEvent::Result(outcome) => {
                progress.finish();
                if paid.is_none() {
                    // Paid before a re-attach: the record has the proof.
                    paid = paid_record(bus, job_id).await;
                }
                return finish(job_id, q, paid, outcome, result, json, started);
            }
        }
    }
}

/// The payment of a job we requested, from lcpd's record.
async fn paid_record(bus: &Bus, job_id: [u8; 32]) -> Option<([u8; 32], [u8; 32], u64)> {
    match lcpd(bus, LcpdApi::GetJob { job_id, with_result: false }, EXECUTE_WAIT).await.ok()? {
        LcpdApi::Job { rows, .. } => rows
            .into_iter()
            .find(|r| r.role == crate::bus::api::lcpd::JobRole::Requester)
            .and_then(|r| r.preimage.map(|p| (r.payment_hash, p, r.price_msat))),
        _ => None,
    }
}

fn finish(
    job_id: [u8; 32],
    q: Option<&QuoteRow>,
    paid: Option<([u8; 32], [u8; 32], u64)>,
    outcome: JobOutcomeRow,
    result: Vec<u8>,
    json: bool,
    started: Instant,
) -> Result<String, CliError> {
    let preimage_ok = paid.map(|(h, p, _)| <[u8; 32]>::from(Sha256::digest(p)) == h);
    match outcome {
        JobOutcomeRow::Ok { content_type, len, sha256 } => {
            if json {
                let v = serde_json::json!({
                    "job_id": hex::encode(job_id),
                    "peer": q.map(|q| q.peer.clone()),
                    "price_msat": paid.map(|p| p.2).or(q.map(|q| q.price_msat)),
                    "terms_hash": q.map(|q| hex::encode(q.terms_hash)),
                    "payment_hash": paid.map(|p| hex::encode(p.0)),
                    "preimage": paid.map(|p| hex::encode(p.1)),
                    "preimage_matches": preimage_ok,
                    "content_type": content_type,
                    "result_len": len,
                    "result_sha256": hex::encode(sha256),
                    "result": String::from_utf8_lossy(&result),
                    "elapsed_ms": started.elapsed().as_millis() as u64,
                });
                return to_json(&v);
            }
            eprintln!();
            if let Some((h, _, price)) = paid {
                eprintln!(
                    "paid {price} msat, payment hash {}, sha256(preimage) matches: {}",
                    hex::encode(h),
                    preimage_ok.unwrap_or(false)
                );
            }
            eprintln!(
                "result: {len} bytes, {content_type}, sha256 {} ({:.2}s)",
                hex::encode(sha256),
                started.elapsed().as_secs_f64()
            );
            Ok(String::new())
        }
        JobOutcomeRow::Failed { lcp_code, message, .. } => Err(CliError::Other(match lcp_code {
            Some(c) => format!("job {} failed (lcp_error {c}): {message}", hex::encode(job_id)),
            None => format!("job {} failed: {message}", hex::encode(job_id)),
        })),
        JobOutcomeRow::Cancelled => Err(CliError::Other(format!("job {} cancelled", hex::encode(job_id)))),
    }
}
