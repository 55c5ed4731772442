# One image with every binary of the LCP node suite, run as a non-root user.
#
# The base images are build arguments, so the same file builds from registry images (the
# defaults: `docker build -t lcp .`) or from images made on a machine without a registry
# (scripts/docker-base.sh makes them, scripts/docker-build.sh passes them in):
#   docker build --build-arg BUILDER_IMAGE=lcp-local/rust:1.95.0-bookworm \
#                --build-arg RUNTIME_IMAGE=lcp-local/debian:bookworm --build-arg VENDORED=1 .
# VENDORED=1 builds from the crates in ./vendor (`cargo vendor`, made by docker-build.sh) instead
# of crates.io, for builders that cannot reach the registry.
ARG BUILDER_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${BUILDER_IMAGE} AS build
ARG VENDORED=0
ARG BUILD_JOBS=
# Locally made bases have the packages already; registry images get them here.
RUN dpkg -s libzmq3-dev pkg-config gcc >/dev/null 2>&1 || { apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libzmq3-dev pkg-config gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*; }
WORKDIR /src
# vendor/ exists only for VENDORED=1 builds; .dockerignore always does, so the COPY never has
# nothing to copy (cargo ignores a vendor directory's plain files).
COPY .dockerignore vendo[r] ./vendor/
COPY Cargo.toml Cargo.lock ./
ENV CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols CARGO_TERM_COLOR=never
# Dependencies first, in their own layer: every target of the manifest (library, binaries,
# benchmarks) as an empty stub, built once, then the stubs' own artifacts removed. A change in
# src/ or benches/ rebuilds only this crate.
RUN if [ "$VENDORED" = 1 ]; then mkdir -p .cargo && printf '%s\n' '[source.crates-io]' \
      'replace-with = "vendored-sources"' '[source.vendored-sources]' 'directory = "vendor"' > .cargo/config.toml; fi \
 && for f in $(sed -n 's/^path = "\(.*\.rs\)"$/\1/p' Cargo.toml) \
      $(awk '/^\[\[bench\]\]/ { b = 1; next } b && /^name = / { gsub(/"/, "", $3); print "benches/" $3 ".rs"; b = 0 }' Cargo.toml); \
    do mkdir -p "$(dirname "$f")"; echo 'fn main() {}' > "$f"; done \
 && cargo build --release --locked --bins ${BUILD_JOBS:+-j "$BUILD_JOBS"} \
 && cargo clean --release -p lcp-node \
 && rm -rf src benches
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bins ${BUILD_JOBS:+-j "$BUILD_JOBS"} \
 && mkdir /out \
 && for b in lcpnode peerd lcpd jobd payd lcp-cli lcp-gateway; do cp "target/release/$b" /out/; done

FROM ${RUNTIME_IMAGE}
RUN { dpkg -s libzmq5 ca-certificates >/dev/null 2>&1 || { apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libzmq5 ca-certificates \
      && rm -rf /var/lib/apt/lists/*; }; } \
 && groupadd --system --gid 10001 lcp \
 && useradd --system --uid 10001 --gid lcp --create-home --home-dir /home/lcp lcp \
 && mkdir -p /data /identity && chown lcp:lcp /data /identity && chmod 700 /data /identity
COPY --from=build /out/ /usr/local/bin/
USER lcp
# /data: the service's data directory. /identity: where services in separate containers share
# the node key (LCP_NODE_KEY=/identity/node.key, see docker/cluster/compose.yml).
ENV LCP_DATADIR=/data
VOLUME ["/data"]
# Lightning peers, the bus (when lcpd hosts it over tcp://), the gateway.
EXPOSE 9735 9736 8080
# Healthy while the services named by LCP_HEALTH_SERVICES (default: the whole node lcpnode runs)
# are registered on the bus and answer.
HEALTHCHECK --interval=5s --timeout=5s --start-period=20s --retries=3 CMD ["lcp-cli", "--timeout", "3", "health"]
CMD ["lcpnode"]
