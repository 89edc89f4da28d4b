#!/usr/bin/env bash
# Installs the system packages ssmq builds against (Debian/Ubuntu).
set -euo pipefail
pkgs=(build-essential cmake pkg-config libzstd-dev libxxhash-dev nlohmann-json3-dev libcli11-dev
      libgtest-dev libbenchmark-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
