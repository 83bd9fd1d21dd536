#!/usr/bin/env bash
# Installs every Debian package MigrateFS needs to build, test, demo and benchmark.
# Idempotent: does nothing when all are present.
set -euo pipefail
PKGS=(
  cmake g++ make pkg-config git
  libfuse3-dev fuse3 libboost1.81-dev liburing-dev libgtest-dev libgmock-dev
  nlohmann-json3-dev libcli11-dev libspdlog-dev libssl-dev libxxhash-dev libtomlplusplus-dev
  fio qemu-utils bonnie++ iperf3 rsync iproute2 gnuplot-nox socat linux-perf
  clang libclang-rt-14-dev
  help2man
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
