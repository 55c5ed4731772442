//! The exec backend: runs a configured local command per (task kind, models), with the job
//! input on stdin and the result from stdout.
//!
//! Safety rules:
//! * the command is an argv list from the operator's config, never a shell string, and nothing
//!   from the peer reaches argv or the environment (the environment is cleared, then `PATH` and
//!   the configured variables are set);
//! * every child runs under limits that cannot be disabled: a wall clock, an output cap, a
//!   stderr cap, `RLIMIT_AS` (address space) and `RLIMIT_CPU` (CPU seconds) set in the child
//!   before `exec`, and no core dumps;
//! * the child leads a new process group; on timeout, cancel, output cap or a dropped receiver
//!   the whole group is killed with `SIGKILL`, so grandchildren die too.
//!
//! Unix only.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    check_offered, check_offers_priced, error_body_text, quote_offered, result_content_type, ComputeBackend,
    ComputeError, JobOutcome, JobSpec, ResultSink, TaskOffer,
};
use crate::jobd::pricing::{PriceQuote, Pricer};

/// Default wall-clock limit of one process.
pub const DEFAULT_WALL_CLOCK_SECS: u64 = 60;
/// Default CPU-time limit (`RLIMIT_CPU`).
pub const DEFAULT_CPU_SECS: u64 = 60;
/// Default address-space limit (`RLIMIT_AS`), 2 GiB.
pub const DEFAULT_MEMORY_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Default stdout cap, 16 MiB.
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 16 * 1024 * 1024;
/// Default stderr bytes kept (the error carries at most 1024 of them).
pub const DEFAULT_MAX_STDERR_BYTES: u64 = 64 * 1024;
/// Default `PATH` of the child.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// Result content type of non-OpenAI task kinds unless configured.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";
/// How long to wait for a killed process group's leader to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);
const READ_BUF: usize = 16 * 1024;

/// Limits applied to every process. All must be > 0: limits cannot be disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecLimits {
    /// Wall-clock limit in seconds.
    pub wall_clock_secs: u64,
    /// CPU seconds (`RLIMIT_CPU`; SIGXCPU at the limit, SIGKILL one second later).
    pub cpu_secs: u64,
    /// Address space in bytes (`RLIMIT_AS`).
    pub memory_bytes: u64,
    /// Stdout cap in bytes.
    pub max_output_bytes: u64,
    /// Stderr bytes kept for the error report.
    pub max_stderr_bytes: u64,
}

impl Default for ExecLimits {
    fn default() -> Self {
        ExecLimits {
            wall_clock_secs: DEFAULT_WALL_CLOCK_SECS,
            cpu_secs: DEFAULT_CPU_SECS,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            max_stderr_bytes: DEFAULT_MAX_STDERR_BYTES,
        }
    }
}

impl ExecLimits {
    fn check(&self, prefix: &str) -> Result<(), ComputeError> {
        for (field, value) in [
            ("wall_clock_secs", self.wall_clock_secs),
            ("cpu_secs", self.cpu_secs),
            ("memory_bytes", self.memory_bytes),
            ("max_output_bytes", self.max_output_bytes),
            ("max_stderr_bytes", self.max_stderr_bytes),
        ] {
            if value == 0 {
                return Err(ComputeError::config(
                    format!("{prefix}{field}"),
                    "must be > 0 (limits cannot be disabled)",
                ));
            }
        }
        Ok(())
    }
}

/// One command and the jobs it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecCommandConfig {
    /// Task kind served.
    pub task_kind: String,
    /// Models served (each must have a price).
    pub models: Vec<String>,
    /// Program and arguments; `argv[0]` is an absolute path or found through `PATH`.
    pub argv: Vec<String>,
    /// Extra environment variables of the child.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory of the child.
    #[serde(default)]
    pub working_dir: Option<PathBuf>,
    /// Result content type of non-streamed, non-OpenAI jobs (default
    /// `application/octet-stream`); streamed jobs are SSE, OpenAI kinds JSON.
    #[serde(default)]
    pub content_type: Option<String>,
    /// Limits of this command instead of the backend-wide ones.
    #[serde(default)]
    pub limits: Option<ExecLimits>,
}

/// Configuration of [`ExecBackend`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecConfig {
    /// Commands (at least one).
    pub commands: Vec<ExecCommandConfig>,
    /// Default limits.
    pub limits: ExecLimits,
    /// `PATH` of the child (default `/usr/local/bin:/usr/bin:/bin`).
    pub path: Option<String>,
}

#[derive(Debug)]
struct Program {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    working_dir: Option<PathBuf>,
    content_type: String,
    limits: ExecLimits,
}

/// Local-process backend (see the module docs).
#[derive(Debug)]
pub struct ExecBackend {
    programs: BTreeMap<TaskOffer, Arc<Program>>,
    offers: Vec<TaskOffer>,
    pricer: Arc<Pricer>,
}

impl ExecBackend {
    /// Checks the config (argv non-empty, limits > 0, offers unique and priced) and builds the
    /// backend. A config that disables a limit (sets it to 0) is refused.
    pub fn new(config: &ExecConfig, pricer: Arc<Pricer>) -> Result<Self, ComputeError> {
        config.limits.check("limits.")?;
        if config.commands.is_empty() {
            return Err(ComputeError::config("commands", "at least one command is required"));
        }
        let path = config.path.clone().unwrap_or_else(|| DEFAULT_PATH.into());
        let mut programs = BTreeMap::new();
        for (i, cmd) in config.commands.iter().enumerate() {
            let prefix = format!("commands[{i}].");
            if cmd.argv.first().is_none_or(|a| a.is_empty()) {
                return Err(ComputeError::config(format!("{prefix}argv"), "must name a program"));
            }
            if cmd.argv.iter().any(|a| a.contains('\0')) {
                return Err(ComputeError::config(format!("{prefix}argv"), "must not contain NUL bytes"));
            }
            if cmd.models.is_empty() {
                return Err(ComputeError::config(format!("{prefix}models"), "at least one model is required"));
            }
            let limits = cmd.limits.unwrap_or(config.limits);
            limits.check(&format!("{prefix}limits."))?;
            let mut env = vec![("PATH".to_owned(), path.clone())];
            env.extend(cmd.env.iter().map(|(k, v)| (k.clone(), v.clone())));
            let program = Arc::new(Program {
                argv: cmd.argv.clone(),
                env,
                working_dir: cmd.working_dir.clone(),
                content_type: cmd.content_type.clone().unwrap_or_else(|| DEFAULT_CONTENT_TYPE.into()),
                limits,
            });
            for model in &cmd.models {
                let offer = TaskOffer { task_kind: cmd.task_kind.clone(), model: model.clone() };
                if programs.insert(offer, Arc::clone(&program)).is_some() {
                    return Err(ComputeError::config(
                        format!("{prefix}models"),
                        format!("{} / {model} is served by two commands", cmd.task_kind),
                    ));
                }
            }
        }
        let offers: Vec<TaskOffer> = programs.keys().cloned().collect();
        check_offers_priced(&offers, &pricer)?;
        Ok(ExecBackend { programs, offers, pricer })
    }
}

#[async_trait]
impl ComputeBackend for ExecBackend {
    fn name(&self) -> &'static str {
        "exec"
    }

    fn offers(&self) -> Vec<TaskOffer> {
        self.offers.clone()
    }

    fn quote(&self, job: &JobSpec) -> Result<PriceQuote, ComputeError> {
        quote_offered(&self.offers, &self.pricer, job)
    }

    fn result_content_type(&self, job: &JobSpec) -> String {
        let configured =
            self.programs.get(&job.offer()).map(|p| p.content_type.as_str()).unwrap_or(DEFAULT_CONTENT_TYPE);
        result_content_type(job, configured)
    }

    async fn execute(
        &self,
        job: &JobSpec,
        out: mpsc::Sender<Bytes>,
        cancel: CancellationToken,
    ) -> Result<JobOutcome, ComputeError> {
        check_offered(&self.offers, job)?;
        let program = self
            .programs
            .get(&job.offer())
            .cloned()
            .ok_or_else(|| ComputeError::UnsupportedTaskKind { task_kind: job.task_kind.clone() })?;
        if cancel.is_cancelled() {
            return Err(ComputeError::Cancelled);
        }
        let mut sink = ResultSink::new(out, cancel.clone(), program.limits.max_output_bytes, job);
        run_process(&program, job, &mut sink, &cancel).await?;
        Ok(sink.finish(result_content_type(job, &program.content_type)))
    }
}

fn spawn(program: &Program) -> Result<Child, ComputeError> {
    let (exe, args) = program.argv.split_first().ok_or_else(|| ComputeError::config("argv", "must name a program"))?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env_clear()
        .envs(program.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    if let Some(dir) = &program.working_dir {
        cmd.current_dir(dir);
    }
    let memory = program.limits.memory_bytes;
    let cpu = program.limits.cpu_secs;
    // SAFETY: the closure runs in the forked child before exec; it only calls setrlimit, which
    // is async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            set_rlimit(libc::RLIMIT_AS, memory, memory)?;
            set_rlimit(libc::RLIMIT_CPU, cpu, cpu.saturating_add(1))?;
            set_rlimit(libc::RLIMIT_CORE, 0, 0)?;
            // If the worker dies (even by SIGKILL), its job dies with it instead of running on
            // unsupervised. (The parent is the worker's thread that spawned the child; the
            // kernel signals when that thread exits, which for jobd is process exit or shutdown.)
            // prctl with integer arguments only (inside the enclosing unsafe block).
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| ComputeError::Process(format!("cannot start {exe:?}: {e}")))
}

fn set_rlimit(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> std::io::Result<()> {
    let limit = libc::rlimit { rlim_cur: soft as libc::rlim_t, rlim_max: hard as libc::rlim_t };
    // SAFETY: plain syscall with a valid pointer to a local struct.
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Kills the process group on drop unless disarmed (covers a dropped `execute` future).
struct GroupKiller {
    pgid: Option<libc::pid_t>,
}

impl GroupKiller {
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // SAFETY: sends a signal to the process group we created; errors (ESRCH when the
            // group is already gone) are irrelevant.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

enum Stop {
    Cancelled,
    Timeout,
    Failed(ComputeError),
}

async fn run_process(
    program: &Program,
    job: &JobSpec,
    sink: &mut ResultSink,
    cancel: &CancellationToken,
) -> Result<(), ComputeError> {
    let mut child = spawn(program)?;
    let pgid = child
        .id()
        .and_then(|id| libc::pid_t::try_from(id).ok())
        .ok_or_else(|| ComputeError::Process("spawned child has no pid".into()))?;
    let mut killer = GroupKiller { pgid: Some(pgid) };
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (Some(mut stdin), Some(stdout), Some(stderr)) = (stdin, stdout, stderr) else {
        return Err(ComputeError::Process("child pipes missing".into()));
    };
    let input = job.input.clone();
    let limits = program.limits;

    let feed = async move {
        // The child may exit without reading its input: a broken pipe is not an error.
        let _ = stdin.write_all(&input).await;
        drop(stdin);
    };
    let stderr_task = read_capped(stderr, limits.max_stderr_bytes);
    let stdout_task = read_stdout(stdout, job.stream, sink);
    let work = async {
        // The first stdout error (cap, cancel, closed receiver) ends the wait at once.
        let ((), collected, stderr_buf) = tokio::try_join!(
            async {
                feed.await;
                Ok(())
            },
            stdout_task,
            async { Ok(stderr_task.await) },
        )?;
        let status = child.wait().await.map_err(|e| ComputeError::Process(format!("waiting for child: {e}")))?;
        Ok::<_, ComputeError>((collected, status, stderr_buf))
    };
    let wall = Duration::from_secs(limits.wall_clock_secs);
    let result = tokio::select! {
        biased;
        () = cancel.cancelled() => Err(Stop::Cancelled),
        res = tokio::time::timeout(wall, work) => match res {
            Err(_) => Err(Stop::Timeout),
            Ok(Err(e)) => Err(Stop::Failed(e)),
            Ok(Ok(done)) => Ok(done),
        },
    };
    match result {
        Ok((collected, status, stderr_buf)) => {
            // The leader is reaped; kill stragglers that kept running in its group.
            killer.kill();
            if !status.success() {
                return Err(ComputeError::ProcessFailed {
                    status: describe(status),
                    stderr: error_body_text(&stderr_buf),
                });
            }
            if let Some(buf) = collected {
                sink.send(buf).await?;
            }
            Ok(())
        }
        Err(stop) => {
            killer.kill();
            // Reap the leader (bounded: SIGKILL cannot be caught).
            let _ = tokio::time::timeout(REAP_TIMEOUT, child.wait()).await;
            Err(match stop {
                Stop::Cancelled => ComputeError::Cancelled,
                Stop::Timeout => ComputeError::Timeout { what: "process wall clock", limit: wall },
                Stop::Failed(e) => e,
            })
        }
    }
}

/// Streams stdout into the sink (streamed jobs) or collects it under the cap (others).
async fn read_stdout(
    mut stdout: impl AsyncRead + Unpin,
    stream: bool,
    sink: &mut ResultSink,
) -> Result<Option<Bytes>, ComputeError> {
    let mut collected = BytesMut::new();
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let n = stdout.read(&mut buf).await.map_err(|e| ComputeError::Process(format!("reading stdout: {e}")))?;
        if n == 0 {
            break;
        }
        let data = buf.get(..n).unwrap_or_default();
        if stream {
            sink.send(Bytes::copy_from_slice(data)).await?;
        } else {
            sink.check_room(collected.len() as u64, n)?;
            collected.extend_from_slice(data);
        }
    }
    Ok((!stream).then(|| collected.freeze()))
}

/// Reads all of `r`, keeping at most `cap` bytes (the rest is drained so the child never
/// blocks on a full pipe).
async fn read_capped(mut r: impl AsyncRead + Unpin, cap: u64) -> Vec<u8> {
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    let mut kept = Vec::new();
    let mut buf = vec![0u8; READ_BUF];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len()).min(n);
                kept.extend_from_slice(buf.get(..room).unwrap_or_default());
            }
        }
    }
    kept
}

fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit code {code}");
    }
    match status.signal() {
        Some(libc::SIGKILL) => "killed by SIGKILL (memory, CPU or external kill)".into(),
        Some(libc::SIGXCPU) => "killed by SIGXCPU (CPU time limit)".into(),
        Some(libc::SIGSEGV) => "killed by SIGSEGV".into(),
        Some(sig) => format!("killed by signal {sig}"),
        None => "unknown exit status".into(),
    }
}
