//! The exec backend: real child processes under limits.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lcp::jobd::backend::exec::{ExecBackend, ExecCommandConfig, ExecConfig, ExecLimits};
use lcp::jobd::backend::{ComputeBackend, ComputeError, JobOutcome, JobSpec, CONTENT_TYPE_SSE};
use lcp::jobd::pricing::{ModelConfig, ModelPrice, Pricer, PricingConfig};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(20);
const KIND: &str = "exec.test.v1";
const MODEL: &str = "local";

fn pricer() -> Arc<Pricer> {
    let mut config = PricingConfig::default();
    config.models.insert(
        MODEL.into(),
        ModelConfig {
            max_output_tokens: Some(16),
            price: ModelPrice {
                input_msat_per_mtok: 1_000_000,
                cached_input_msat_per_mtok: None,
                output_msat_per_mtok: 1_000_000,
            },
        },
    );
    Arc::new(Pricer::new(&config).expect("pricer"))
}

fn command(argv: &[&str]) -> ExecCommandConfig {
    ExecCommandConfig {
        task_kind: KIND.into(),
        models: vec![MODEL.into()],
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        env: BTreeMap::new(),
        working_dir: None,
        content_type: None,
        limits: None,
    }
}

fn backend(cmd: ExecCommandConfig, limits: ExecLimits) -> ExecBackend {
    ExecBackend::new(&ExecConfig { commands: vec![cmd], limits, path: None }, pricer()).expect("valid exec config")
}

fn spec(input: &[u8], stream: bool) -> JobSpec {
    let mut s = JobSpec::new(KIND, MODEL, Bytes::copy_from_slice(input), "application/octet-stream");
    s.stream = stream;
    s
}

async fn run(b: &ExecBackend, job: &JobSpec) -> (Vec<u8>, Result<JobOutcome, ComputeError>) {
    let (tx, mut rx) = mpsc::channel(64);
    let exec = b.execute(job, tx, CancellationToken::new());
    let collect = async {
        let mut all = Vec::new();
        while let Some(c) = rx.recv().await {
            all.extend_from_slice(&c);
        }
        all
    };
    let (res, all) =
        tokio::time::timeout(LIMIT, async { tokio::join!(exec, collect) }).await.expect("job ends within the limit");
    (all, res)
}

/// Whether `pid` is gone or a zombie (dead, waiting to be reaped by someone else).
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

async fn wait_dead(pid: u32) {
    let deadline = Instant::now() + LIMIT;
    while !is_dead(pid) {
        assert!(Instant::now() < deadline, "process {pid} still alive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn read_pid(path: &Path) -> u32 {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(pid) = text.trim().parse() {
                return pid;
            }
        }
        assert!(Instant::now() < deadline, "pid file {path:?} never written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn echo_job_returns_stdin_and_hash() {
    let b = backend(command(&["cat"]), ExecLimits::default());
    let input = b"hello exec\n\x00binary\xff";
    let (out, res) = run(&b, &spec(input, false)).await;
    let outcome = res.expect("cat succeeds");
    assert_eq!(out, input);
    assert_eq!(outcome.len, input.len() as u64);
    assert_eq!(outcome.sha256, <[u8; 32]>::from(Sha256::digest(input)));
    assert_eq!(outcome.content_type, "application/octet-stream");

    let (out, res) = run(&b, &spec(input, true)).await;
    assert_eq!(out, input);
    assert_eq!(res.expect("streamed").content_type, CONTENT_TYPE_SSE);
}

#[tokio::test]
async fn environment_is_cleared_and_configured() {
    let mut cmd = command(&["sh", "-c", "printf '%s|%s|%s' \"$HOME\" \"$FOO\" \"$PATH\""]);
    cmd.env.insert("FOO".into(), "bar".into());
    cmd.content_type = Some("text/plain".into());
    let b = backend(cmd, ExecLimits::default());
    let (out, res) = run(&b, &spec(b"x", false)).await;
    assert_eq!(res.expect("runs").content_type, "text/plain");
    assert_eq!(String::from_utf8_lossy(&out), "|bar|/usr/local/bin:/usr/bin:/bin");
}

#[tokio::test]
async fn non_zero_exit_reports_status_and_stderr() {
    let b =
        backend(command(&["sh", "-c", "cat >/dev/null; echo partial; echo oops >&2; exit 3"]), ExecLimits::default());
    let (out, res) = run(&b, &spec(b"in", false)).await;
    assert!(out.is_empty(), "a failed job sends no result bytes");
    match res {
        Err(e @ ComputeError::ProcessFailed { .. }) => {
            assert_eq!(e.lcp_error_code(), 5);
            let ComputeError::ProcessFailed { status, stderr } = &e else { unreachable!("matched above") };
            assert_eq!(status, "exit code 3");
            assert_eq!(stderr, "oops");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn stderr_in_the_error_is_capped() {
    let b = backend(command(&["sh", "-c", "yes e | head -c 100000 >&2; exit 1"]), ExecLimits::default());
    match run(&b, &spec(b"in", false)).await.1 {
        Err(ComputeError::ProcessFailed { stderr, .. }) => {
            assert!(stderr.len() <= 1024 + '…'.len_utf8(), "{}", stderr.len());
            assert!(stderr.ends_with('…'));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn timeout_kills_child_and_grandchild() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pids");
    let mut cmd =
        command(&["sh", "-c", "sleep 1000 & echo $! > \"$PIDFILE.tmp\"; mv \"$PIDFILE.tmp\" \"$PIDFILE\"; wait"]);
    cmd.env.insert("PIDFILE".into(), pidfile.to_string_lossy().into_owned());
    let b = backend(cmd, ExecLimits { wall_clock_secs: 1, ..ExecLimits::default() });
    let started = Instant::now();
    let (_, res) = run(&b, &spec(b"", false)).await;
    match res {
        Err(e @ ComputeError::Timeout { .. }) => assert_eq!(e.lcp_error_code(), 7),
        other => panic!("unexpected {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_secs(1));
    let grandchild = read_pid(&pidfile).await;
    wait_dead(grandchild).await;
}

#[tokio::test]
async fn output_cap_stops_the_process_early() {
    let b = backend(
        command(&["yes"]),
        ExecLimits { max_output_bytes: 100_000, wall_clock_secs: 60, ..ExecLimits::default() },
    );
    let started = Instant::now();
    let (out, res) = run(&b, &spec(b"", false)).await;
    assert!(out.is_empty());
    assert!(matches!(res, Err(ComputeError::OutputTooLarge { limit: 100_000 })));
    assert!(started.elapsed() < Duration::from_secs(30), "did not wait for the wall clock");

    let mut streamed = spec(b"", true);
    streamed.max_output_bytes = Some(5_000);
    let (out, res) = run(&b, &streamed).await;
    // The read that crosses the cap is not sent (here often the very first one).
    assert!(out.len() <= 5_000, "{}", out.len());
    assert!(matches!(res, Err(ComputeError::OutputTooLarge { limit: 5_000 })));
}

#[tokio::test]
async fn memory_limit_makes_a_big_allocation_fail() {
    let cmd = command(&["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"]);
    let tight = backend(cmd.clone(), ExecLimits { memory_bytes: 64 * 1024 * 1024, ..ExecLimits::default() });
    match run(&tight, &spec(b"", false)).await.1 {
        Err(ComputeError::ProcessFailed { stderr, .. }) => {
            assert!(stderr.contains("memory"), "stderr: {stderr}")
        }
        other => panic!("unexpected {other:?}"),
    }
    // The same command within a roomy limit succeeds, so the limit made the difference.
    let small = command(&["dd", "if=/dev/zero", "of=/dev/null", "bs=4M", "count=1"]);
    let roomy = backend(small, ExecLimits::default());
    run(&roomy, &spec(b"", false)).await.1.expect("fits");
    let small_tight = backend(
        command(&["dd", "if=/dev/zero", "of=/dev/null", "bs=4M", "count=1"]),
        ExecLimits { memory_bytes: 64 * 1024 * 1024, ..ExecLimits::default() },
    );
    run(&small_tight, &spec(b"", false)).await.1.expect("4 MiB fits in 64 MiB");
}

#[tokio::test]
async fn cpu_limit_kills_a_spinning_child() {
    let b = backend(
        command(&["sh", "-c", "while :; do :; done"]),
        ExecLimits { cpu_secs: 1, wall_clock_secs: 30, ..ExecLimits::default() },
    );
    match run(&b, &spec(b"", false)).await.1 {
        Err(ComputeError::ProcessFailed { status, .. }) => {
            assert!(status.contains("SIGXCPU") || status.contains("SIGKILL"), "{status}")
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn cancel_kills_the_process_promptly() {
    let b = Arc::new(backend(command(&["sh", "-c", "echo $$; exec sleep 1000"]), ExecLimits::default()));
    let (tx, mut rx) = mpsc::channel(4);
    let cancel = CancellationToken::new();
    let job = spec(b"", true);
    let (b2, c2) = (Arc::clone(&b), cancel.clone());
    let task = tokio::spawn(async move { b2.execute(&job, tx, c2).await });
    let first = tokio::time::timeout(LIMIT, rx.recv()).await.expect("pid line").expect("channel open");
    let pid: u32 = String::from_utf8_lossy(&first).trim().parse().expect("pid");
    cancel.cancel();
    let res = tokio::time::timeout(Duration::from_secs(5), task).await.expect("cancel is prompt").expect("no panic");
    assert!(matches!(res, Err(ComputeError::Cancelled)));
    wait_dead(pid).await;
}

#[tokio::test]
async fn dropped_future_kills_the_process_group() {
    let b = backend(command(&["sh", "-c", "echo $$; exec sleep 1000"]), ExecLimits::default());
    let (tx, mut rx) = mpsc::channel(4);
    let job = spec(b"", true);
    let pid = {
        let exec = b.execute(&job, tx, CancellationToken::new());
        tokio::pin!(exec);
        let first = tokio::select! {
            r = &mut exec => panic!("job ended early: {r:?}"),
            c = rx.recv() => c.expect("pid line"),
        };
        String::from_utf8_lossy(&first).trim().parse::<u32>().expect("pid")
    };
    wait_dead(pid).await;
}

#[tokio::test]
async fn refuses_configs_without_limits() {
    let zeroed = [
        ExecLimits { wall_clock_secs: 0, ..ExecLimits::default() },
        ExecLimits { cpu_secs: 0, ..ExecLimits::default() },
        ExecLimits { memory_bytes: 0, ..ExecLimits::default() },
        ExecLimits { max_output_bytes: 0, ..ExecLimits::default() },
        ExecLimits { max_stderr_bytes: 0, ..ExecLimits::default() },
    ];
    for limits in zeroed {
        let global = ExecBackend::new(&ExecConfig { commands: vec![command(&["cat"])], limits, path: None }, pricer());
        assert!(matches!(global, Err(ComputeError::Config { .. })), "{limits:?}");
        let mut cmd = command(&["cat"]);
        cmd.limits = Some(limits);
        let per_command =
            ExecBackend::new(&ExecConfig { commands: vec![cmd], limits: ExecLimits::default(), path: None }, pricer());
        assert!(matches!(per_command, Err(ComputeError::Config { .. })));
    }
    let no_limits_in_toml: Result<ExecConfig, _> = toml::from_str(
        "[[commands]]\ntask_kind = \"k\"\nmodels = [\"local\"]\nargv = [\"cat\"]\n[limits]\nmemory_bytes = 0",
    );
    let parsed = no_limits_in_toml.expect("parses");
    assert!(matches!(ExecBackend::new(&parsed, pricer()), Err(ComputeError::Config { .. })));
    for bad in [
        ExecConfig::default(),
        ExecConfig { commands: vec![command(&[])], ..ExecConfig::default() },
        ExecConfig { commands: vec![command(&["cat"]), command(&["tac"])], ..ExecConfig::default() },
    ] {
        assert!(matches!(ExecBackend::new(&bad, pricer()), Err(ComputeError::Config { .. })));
    }
}

#[tokio::test]
async fn missing_program_is_a_process_error() {
    let b = backend(command(&["/nonexistent/program"]), ExecLimits::default());
    match run(&b, &spec(b"x", false)).await.1 {
        Err(e @ ComputeError::Process(_)) => assert_eq!(e.lcp_error_code(), 5),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn streamed_output_arrives_before_the_process_writes_more() {
    // The child prints a line, then blocks opening a FIFO until the test, having received that
    // line, opens the FIFO's write end.
    let dir = tempfile::tempdir().expect("tempdir");
    let gate = dir.path().join("gate");
    let status = std::process::Command::new("mkfifo").arg(&gate).status().expect("mkfifo runs");
    assert!(status.success());
    let mut cmd = command(&["sh", "-c", "echo first; cat \"$GATE\" >/dev/null; echo second"]);
    cmd.env.insert("GATE".into(), gate.to_string_lossy().into_owned());
    let b = Arc::new(backend(cmd, ExecLimits::default()));
    let (tx, mut rx) = mpsc::channel(4);
    let job = spec(b"", true);
    let b2 = Arc::clone(&b);
    let task = tokio::spawn(async move { b2.execute(&job, tx, CancellationToken::new()).await });
    let first = tokio::time::timeout(LIMIT, rx.recv())
        .await
        .expect("first line while the child is blocked")
        .expect("channel open");
    assert_eq!(&first[..], b"first\n");
    // Open the gate: opening for write unblocks the child's open for read.
    let gate_path = gate.clone();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut w = std::fs::OpenOptions::new().write(true).open(gate_path).expect("open fifo");
        w.write_all(b"go").expect("write fifo");
    })
    .await
    .expect("gate opened");
    let mut rest = Vec::new();
    while let Some(c) = tokio::time::timeout(LIMIT, rx.recv()).await.expect("more") {
        rest.extend_from_slice(&c);
    }
    assert_eq!(rest, b"second\n");
    let outcome = tokio::time::timeout(LIMIT, task).await.expect("ends").expect("no panic").expect("succeeds");
    assert_eq!(outcome.len, 13);
}
