//! Jobs per second through lcpd's dispatcher with 1, 2 and 4 jobd workers (threads of one
//! in-process node) on a CPU-bound exec job (SHA-256 of 8 MB of zeros), 8 jobs per iteration.
//! Baseline in the same run: the same 8 commands started directly, one after the other.
//!
//! Run: `cargo bench --bench workers`

use criterion::{criterion_group, criterion_main, Criterion};
use lcp::jobd::JobdFile;
use lcp::testkit::{InProcessNode, TestJobs};
use std::time::{Duration, Instant};

const JOBS: usize = 8;
const SCRIPT: &str = "head -c 8000000 /dev/zero | sha256sum";

const CONFIG: &str = r#"
capacity = 1
[backend]
kind = "exec"
[[backend.commands]]
task_kind = "bench.cpu.v1"
models = ["cpu"]
argv = ["/bin/sh", "-c", "cat >/dev/null; head -c 8000000 /dev/zero | sha256sum"]
content_type = "text/plain"
[pricing.models.cpu]
price = { input_msat_per_mtok = 1000, output_msat_per_mtok = 1000 }
"#;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let file: JobdFile = toml::from_str(CONFIG).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = lcp::demo::node_config(dir.path()).unwrap();
    cfg.jobd.capacity = 1;
    cfg.jobd.backend = file.backend_config(None).unwrap().unwrap();
    cfg.jobd.pricing = file.pricing.unwrap();
    let mut n = InProcessNode::start_with(dir, cfg).unwrap();
    let client = rt.block_on(n.client()).unwrap();
    let mut jobs = TestJobs::new(&client).unwrap();

    let mut g = c.benchmark_group("exec_cpu_8_jobs");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("direct_sequential", |b| {
        b.iter(|| {
            for _ in 0..JOBS {
                let st = std::process::Command::new("/bin/sh").args(["-c", SCRIPT]).output().unwrap();
                assert!(st.status.success());
            }
        })
    });
    let mut workers = 1;
    for target in [1usize, 2, 4] {
        while workers < target {
            workers += 1;
            n.node.start_worker(&format!("b{workers}")).unwrap();
        }
        rt.block_on(lcp::testkit::poll_until(lcp::testkit::PATIENCE, "workers", || async {
            let w = lcp::cli::worker::list(&client, Duration::from_secs(5)).await.ok()?;
            (w.len() == target).then_some(())
        }))
        .unwrap();
        g.bench_function(format!("dispatch_{target}_workers"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    rt.block_on(async {
                        let mut ids = Vec::new();
                        for _ in 0..JOBS {
                            ids.push(jobs.submit("bench.cpu.v1", "cpu", b"x").await.unwrap().0);
                        }
                        jobs.wait(&ids, Duration::from_secs(120)).await.unwrap();
                    });
                    total += t.elapsed();
                }
                total
            })
        });
    }
    g.finish();
    client.close();
    n.node.shutdown().unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
