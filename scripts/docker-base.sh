#!/usr/bin/env bash
# Makes the two base images the Dockerfile takes as build arguments, on a machine that cannot pull
# images: a minimal Debian made with debootstrap and `docker import`ed.
#   RUNTIME_BASE  Debian minbase + libzmq5 + CA roots                      (lcp-local/debian:bookworm)
#   BUILDER_BASE  Debian minbase + gcc, pkg-config, libzmq3-dev + this machine's Rust toolchain
#                 (rustc and cargo copied from `rustc --print sysroot`)   (lcp-local/rust:VERSION-bookworm)
# Idempotent: an image that exists is kept (remove it with `docker rmi` to make it again).
# Needs root (debootstrap), debootstrap, docker, and Debian's package mirror (DEBIAN_MIRROR to pick one).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/docker-common.sh

[ -n "$RUST_VERSION" ] || { echo "docker-base: rustc not found" >&2; exit 1; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v debootstrap >/dev/null 2>&1; then
  echo "installing: debootstrap" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi
work="${DOCKER_BASE_WORKDIR:-target/docker-base}"
mkdir -p "$work/cache"
work="$(cd "$work" && pwd)"

have() { docker image inspect "$1" >/dev/null 2>&1; }

# debootstrap DIR PACKAGES: a minbase Debian with PACKAGES, made in a fresh DIR.
bootstrap() {
  local dir="$1" packages="$2"
  $SUDO rm -rf "$dir"
  echo "== debootstrap $DOCKER_SUITE into $dir (+ $packages)" >&2
  # shellcheck disable=SC2086
  $SUDO debootstrap --variant=minbase --include="$packages" --cache-dir="$work/cache" \
    "$DOCKER_SUITE" "$dir" ${DEBIAN_MIRROR:-} >"$dir.log" 2>&1 \
    || { tail -n 30 "$dir.log" >&2; exit 1; }
  # What a slim image leaves out: package lists and caches, docs, man pages, locales but C.UTF-8.
  $SUDO rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb \
    "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/info/* "$dir"/var/log/*
  $SUDO find "$dir/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'C.*' -exec rm -rf {} +
}

# import DIR TAG CHANGES...: the folder as an image.
import() {
  local dir="$1" tag="$2"
  shift 2
  local changes=()
  for c in "$@"; do changes+=(--change "$c"); done
  echo "== docker import $tag" >&2
  $SUDO tar -C "$dir" --numeric-owner -c . | docker import "${changes[@]}" - "$tag" >/dev/null
  $SUDO rm -rf "$dir"
}

path_env='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

if have "$RUNTIME_BASE"; then
  echo "== $RUNTIME_BASE is there" >&2
else
  bootstrap "$work/runtime" "$RUNTIME_PACKAGES"
  import "$work/runtime" "$RUNTIME_BASE" "$path_env" 'CMD ["/bin/bash"]'
fi

if have "$BUILDER_BASE"; then
  echo "== $BUILDER_BASE is there" >&2
else
  bootstrap "$work/builder" "$BUILDER_PACKAGES"
  sysroot="$(rustc --print sysroot)"
  echo "== copying the Rust toolchain $RUST_VERSION from $sysroot" >&2
  $SUDO mkdir -p "$work/builder/usr/local/rust" "$work/builder/usr/local/cargo"
  # rustc, cargo and the standard library for this target; no docs, no other components' sources.
  for part in bin lib libexec; do
    [ -d "$sysroot/$part" ] && $SUDO cp -a "$sysroot/$part" "$work/builder/usr/local/rust/"
  done
  import "$work/builder" "$BUILDER_BASE" \
    'ENV PATH=/usr/local/rust/bin:/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'ENV CARGO_HOME=/usr/local/cargo' "ENV RUST_VERSION=$RUST_VERSION" 'CMD ["/bin/bash"]'
fi
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E "^(${RUNTIME_BASE}|${BUILDER_BASE})  " >&2 || true
