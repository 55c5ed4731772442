#!/usr/bin/env bash
# Installs what the build needs (Debian/Ubuntu), and with --test what the tests need too.
# Idempotent: does nothing when all of it is there.
#   libzmq3-dev, pkg-config: the bus (libzmq built with libsodium, so CURVE works)
#   --test: cargo-nextest, the test runner (built from crates.io when missing, a few minutes), and
#           python3 with the `openai` package: the gateway's test with the official OpenAI SDK
set -euo pipefail
tests=0
for a in "$@"; do
  case "$a" in
    --test) tests=1 ;;
    *) echo "usage: $0 [--test]" >&2; exit 2 ;;
  esac
done
pkgs=(libzmq3-dev pkg-config)
if [ "$tests" = 1 ]; then
  command -v python3 >/dev/null 2>&1 || pkgs+=(python3 python3-pip)
  if command -v python3 >/dev/null 2>&1 && ! python3 -m pip --version >/dev/null 2>&1; then
    pkgs+=(python3-pip)
  fi
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ "$tests" = 1 ] || exit 0
if ! python3 -c "import openai" >/dev/null 2>&1; then
  echo "installing: python package openai" >&2
  # A Debian python3 refuses pip installs outside a virtualenv unless told (PEP 668).
  python3 -m pip install --quiet --disable-pip-version-check openai 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages openai
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing: cargo-nextest" >&2
  cargo install --locked --quiet cargo-nextest
fi
