#!/usr/bin/env bash
# The whole test run, the README's test command and what CI runs (`.ci/run` calls this): install
# what the tests need (scripts/deps.sh: Debian packages, the Python `openai` package,
# cargo-nextest), check formatting and lints, a short fuzz run, then every test, with nextest's
# summary line. Where a Docker engine answers, the node image is built in the background meanwhile
# and the cluster tests (tests/docker_cluster.rs) run last; without an engine they say why and skip.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# A test run builds each target once: incremental compilation would only add its caches to the disk.
export CARGO_INCREMENTAL=0
start=$(date +%s)
# Each step's line says the time so far and the disk space left (a full disk fails the link step
# with a bus error, so the log should show it coming).
stamp() { echo "== $1 ($(( $(date +%s) - start ))s, $(df -Ph . | awk 'NR == 2 { print $4 }') free)"; }

stamp "system packages"
bash scripts/deps.sh --test

docker_pid=""
mkdir -p target
if docker info >/dev/null 2>&1; then
  stamp "docker image build (background, log in target/ci-docker-build.log)"
  bash scripts/docker-build.sh >target/ci-docker-build.log 2>&1 &
  docker_pid=$!
else
  stamp "no Docker engine: the cluster tests will be skipped"
fi

stamp "cargo fmt --check"
cargo fmt --check

stamp "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

stamp "fuzz smoke (wire decoders)"
bash scripts/fuzz-smoke.sh 15

stamp "build the tests"
cargo nextest run --locked --no-run

if [ -n "$docker_pid" ]; then
  # The tests below measure and time things: they run once the image build is done.
  stamp "waiting for the docker image build"
  if ! wait "$docker_pid"; then
    tail -n 60 target/ci-docker-build.log
    echo "docker image build failed (full log: target/ci-docker-build.log)" >&2
    exit 1
  fi
  tail -n 1 target/ci-docker-build.log
  if [ -n "${CI:-}" ]; then
    # A CI machine builds the image once: its build stage's layers and the vendored crates are
    # not needed again (a developer's machine keeps them to rebuild faster).
    docker image prune -f >/dev/null
    rm -rf vendor
  fi
fi

# Both test runs go ahead whatever the first one says; CI fails if either failed.
failed=0
stamp "tests"
cargo nextest run --locked --no-fail-fast -E 'not binary(docker_cluster)' || failed=1

stamp "cluster tests (Docker)"
cargo nextest run --locked --no-fail-fast --test docker_cluster || failed=1

stamp "done"
exit "$failed"
