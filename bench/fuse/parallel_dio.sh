#!/usr/bin/env bash
# A/B of FOPEN_PARALLEL_DIRECT_WRITES (e15a563): 4 KiB O_DIRECT random writes from 8
# psync threads (QEMU aio=threads' shape) into one 256 MiB image, no migration, on
# native ext4 and through two migratefs binaries, interleaved per repetition.
#
#   sudo BASE_BIN=/path/to/old/migratefs bash bench/fuse/parallel_dio.sh
#
# BASE_BIN: a build without the flag (e.g. a worktree of 02db53f); BIN: this tree's.
# Prints a table of medians (ratios to the base binary) and appends it to RESULTS.md.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../../build/migratefs}
BASE_BIN=${BASE_BIN:?set BASE_BIN to a migratefs without parallel direct writes}
REPS=${REPS:-3}
RUNTIME=${RUNTIME:-8}
RESULTS=${RESULTS:-$HERE/RESULTS.md}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }

# One run: prints "iops p50_us p99_us". $1 = binary, or "native".
one() {
  local w; w=$(mktemp -d /var/tmp/pdio-XXXXXX); mkdir -p "$w/src" "$w/mnt"
  fallocate -l 256M "$w/src/vm.img"
  local file=$w/src/vm.img pid=""
  if [ "$1" != native ]; then
    "$1" "$w/src" "$w/mnt" -f 2>"$w/log" & pid=$!
    for _ in $(seq 100); do mountpoint -q "$w/mnt" && break; sleep 0.05; done
    file=$w/mnt/vm.img
  fi
  fio --name=p --filename="$file" --rw=randwrite --bs=4k --direct=1 --ioengine=psync --numjobs=8 \
      --runtime="$RUNTIME" --time_based --group_reporting --output-format=json >"$w/out.json" 2>/dev/null
  python3 - "$w/out.json" <<'PY'
import json, sys
w = json.load(open(sys.argv[1]))["jobs"][0]["write"]
p = w["clat_ns"]["percentile"]
print("%.0f %.1f %.1f" % (w["iops"], p["50.000000"] / 1000, p["99.000000"] / 1000))
PY
  if [ -n "$pid" ]; then fusermount3 -u "$w/mnt"; wait "$pid" || true; fi
  rm -rf "$w"
}

before=$(uptime)
declare -A R
for rep in $(seq "$REPS"); do
  for sys in native base new; do
    case $sys in native) b=native ;; base) b=$BASE_BIN ;; new) b=$BIN ;; esac
    r=$(one "$b"); echo "rep $rep $sys: iops p50 p99 = $r"
    R[$sys]+="$r;"
  done
done
after=$(uptime)
med() { tr ';' '\n' <<<"${R[$1]}" | grep -v '^$' | awk -v k="$2" '{print $k}' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
table=$(
  echo "| system | IOPS | p50 µs | p99 µs | IOPS vs base |"
  echo "|---|---|---|---|---|"
  for sys in native base new; do
    echo "| $sys | $(med $sys 1) | $(med $sys 2) | $(med $sys 3) | ×$(awk -v a="$(med $sys 1)" -v b="$(med base 1)" 'BEGIN{printf "%.2f", a / b}') |"
  done
)
echo "$table"
{
  echo
  echo "## A/B: parallel direct writes (\`bench/fuse/parallel_dio.sh\`, $(date -u +'%Y-%m-%d %H:%M') UTC)"
  echo
  echo "8 psync threads, 4 KiB O_DIRECT random writes, one 256 MiB image on ext4, ${RUNTIME} s, $REPS reps, medians."
  echo "base = \`$BASE_BIN\` (O_DIRECT opens without FOPEN_PARALLEL_DIRECT_WRITES), new = \`$BIN\`."
  echo
  echo "- before: $before"
  echo "- after:  $after"
  echo
  echo "$table"
} >>"$RESULTS"
echo "appended to $RESULTS"
