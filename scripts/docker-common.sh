# Sourced by the docker-*.sh scripts: the names of the locally made images, in one place.
# Base images are made on this machine (no registry needed), so their tags say where they came from.
DOCKER_SUITE="${DOCKER_SUITE:-bookworm}"
RUST_VERSION="$(rustc --version 2>/dev/null | awk '{print $2}')"
RUNTIME_BASE="${RUNTIME_BASE:-lcp-local/debian:${DOCKER_SUITE}}"
BUILDER_BASE="${BUILDER_BASE:-lcp-local/rust:${RUST_VERSION:-none}-${DOCKER_SUITE}}"
LCP_IMAGE="${LCP_IMAGE:-lcp-local/lcp:dev}"
# The Debian packages each base needs: the build's (libzmq with libsodium for CURVE, pkg-config, a C
# toolchain for rusqlite's bundled SQLite and ring) and the runtime's (libzmq, CA roots for HTTPS upstreams).
BUILDER_PACKAGES="ca-certificates,gcc,libc6-dev,pkg-config,libzmq3-dev"
RUNTIME_PACKAGES="ca-certificates,libzmq5"
