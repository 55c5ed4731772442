#!/usr/bin/env bash
# Installs what the build and the tests need (Debian/Ubuntu). Idempotent: does nothing when all
# of it is there.
#   libzmq3-dev, pkg-config: the bus (libzmq built with libsodium, so CURVE works)
#   python3 with the `openai` package: the gateway's test with the official OpenAI SDK
set -euo pipefail
pkgs=(libzmq3-dev pkg-config)
command -v python3 >/dev/null 2>&1 || pkgs+=(python3 python3-pip)
if command -v python3 >/dev/null 2>&1 && ! python3 -m pip --version >/dev/null 2>&1; then
  pkgs+=(python3-pip)
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
if ! python3 -c "import openai" >/dev/null 2>&1; then
  echo "installing: python package openai" >&2
  # A Debian python3 refuses pip installs outside a virtualenv unless told (PEP 668).
  python3 -m pip install --quiet --disable-pip-version-check openai 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages openai
fi
