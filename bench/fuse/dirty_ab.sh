#!/usr/bin/env bash
# A/B of the FUSE mount's dirty-page cap (issue 13, item 1): migratefs with the kernel's
# default cap (dirty_max_mb=0: 1 % of dirtyable memory, strict) against migratefs with
# dirty_max_mb=1024 (the default since), next to native and passthrough_ll, on the
# buffered write rows and bonnie++. A preset of options_ab.sh (same environment knobs:
# REPS, RUNTIME, SIZE, BONNIE_SIZE, RESULTS).
#
#   sudo bash bench/fuse/dirty_ab.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TITLE=${TITLE:-"the mount's dirty-page cap"} \
VARIANTS="cap1pct=dirty_max_mb=0 dirty1g=dirty_max_mb=1024" \
ROWS=${ROWS:-"write1m randwrite4k bonnie"} \
  exec bash "$HERE/options_ab.sh"
