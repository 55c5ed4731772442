#!/usr/bin/env bash
# Installs the system packages the build and the tests need (Debian/Ubuntu). Idempotent.
#   libzmq3-dev, pkg-config: the bus (libzmq built with libsodium, so CURVE works)
set -euo pipefail
pkgs=(libzmq3-dev pkg-config)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing: ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
