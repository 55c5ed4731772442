# One image with every binary of the LCP node suite.
#
# Base images are build arguments so the same file builds from registry images
# (the defaults) or from locally imported ones on a machine without a registry:
#   docker build --build-arg BUILDER_IMAGE=local/rust-builder --build-arg RUNTIME_IMAGE=local/debian .
ARG BUILDER_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${BUILDER_IMAGE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libzmq3-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
 && mkdir /out \
 && cp target/release/lcpnode target/release/peerd target/release/lcpd target/release/jobd \
       target/release/payd target/release/lcp-cli /out/

FROM ${RUNTIME_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libzmq5 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --create-home --home-dir /home/lcp lcp \
 && mkdir /data && chown lcp /data && chmod 700 /data
COPY --from=build /out/ /usr/local/bin/
USER lcp
ENV LCP_DATADIR=/data
VOLUME ["/data"]
EXPOSE 9735
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 CMD ["lcp-cli", "--timeout", "3", "status"]
ENTRYPOINT ["lcpnode"]
