#!/usr/bin/env bash
# VM operations under a migration's network limit (issue 16): truncate grow/shrink,
# fallocate (zero range, punch hole, keep size, grow) and fsync on an image that
# migrates at 100 and 1000 KB/s and in phase 3 under a 100 KB/s limit, each against the
# same call on an image of the same size that does not migrate, measured in the same
# run (p50 / p99 / max in ms over CALLS calls of each). Goal: p99 within 2x of the
# unmigrated call. Runs the end-to-end test with more calls and records its table.
#
#   bash bench/vm_ops/run.sh        # needs root and a built tree; CALLS=100 by default
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/${BUILD_DIR:-build}
OUT=$ROOT/bench/vm_ops/RESULTS.md
CALLS=${CALLS:-100}
before=$(uptime)
table=$(MIGRATEFS_VMOPS_CALLS=$CALLS "$BIN/tests/migration_vm_ops_test" 2>/dev/null | grep -E '^\[|^ {20}' | grep -v '^\[[=-]' | grep -vE '^\[ +(RUN|OK|PASSED|FAILED) ' || true)
after=$(uptime)
echo "$table"
{
  echo "# VM operations during a migration (issue 16)"
  echo
  echo "\`bash bench/vm_ops/run.sh\` ($CALLS calls of each operation per case; ms; idle = the same"
  echo "call on an 8 MiB image that does not migrate, in the same run)."
  echo
  echo "- before: $before"
  echo "- after:  $after"
  echo
  echo '```'
  echo "$table"
  echo '```'
} > "$OUT"
echo "written to $OUT"
