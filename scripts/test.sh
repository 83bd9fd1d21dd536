#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (unit and integration; needs root
# for FUSE mounts and network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
cd "${BUILD_DIR:-build}"
ctest --output-on-failure --timeout 900 "$@"
