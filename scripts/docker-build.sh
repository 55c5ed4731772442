#!/usr/bin/env bash
# Builds the node image ($LCP_IMAGE, default lcp-local/lcp:dev) on a machine without an image
# registry: the base images from scripts/docker-base.sh (made when missing), and the crates
# vendored on this host into ./vendor (the build's containers cannot reach crates.io), passed to
# the same Dockerfile a machine with a registry builds with `docker build -t lcp .`.
#   CARGO_BUILD_JOBS=N   limit the build's parallelism
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/docker-common.sh
start=$(date +%s)

bash scripts/docker-base.sh

# Vendor again only when Cargo.lock changed (the stamp is the lock file's hash).
lock_sha="$(sha256sum Cargo.lock | cut -d' ' -f1)"
if [ "$(cat vendor/.cargo-lock-sha256 2>/dev/null || true)" != "$lock_sha" ]; then
  echo "== cargo vendor" >&2
  rm -rf vendor
  cargo vendor --locked --quiet vendor >/dev/null
  echo "$lock_sha" > vendor/.cargo-lock-sha256
fi

echo "== docker build $LCP_IMAGE" >&2
docker build -t "$LCP_IMAGE" \
  --build-arg BUILDER_IMAGE="$BUILDER_BASE" \
  --build-arg RUNTIME_IMAGE="$RUNTIME_BASE" \
  --build-arg VENDORED=1 \
  --build-arg BUILD_JOBS="${CARGO_BUILD_JOBS:-}" \
  --label org.opencontainers.image.revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  .
size="$(docker image inspect -f '{{.Size}}' "$LCP_IMAGE")"
echo "== $LCP_IMAGE: $((size / 1000000)) MB, built in $(( $(date +%s) - start ))s" >&2
