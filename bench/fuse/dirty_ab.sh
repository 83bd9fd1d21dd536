#!/usr/bin/env bash
# A/B of the FUSE mount's dirty-page cap (issue 13, item 1): migratefs with the kernel's
# default cap (dirty_max_mb=0: 1 % of dirtyable memory, strict) against migratefs with
# dirty_max_mb=1024 (the default since), next to native and passthrough_ll, on the
# buffered write rows and bonnie++ block write/rewrite. Interleaved, caches dropped
# before every run; medians. Appends its table to bench/fuse/RESULTS.md.
#
#   bash bench/fuse/dirty_ab.sh      # REPS=3 RUNTIME=5 SIZE=1g BONNIE_SIZE=1g
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${MIGRATEFS_BIN:-$ROOT/build/migratefs}
REPS=${REPS:-3} RUNTIME=${RUNTIME:-5} SIZE=${SIZE:-1g} BONNIE_SIZE=${BONNIE_SIZE:-1g}
RESULTS=${RESULTS:-$HERE/RESULTS.md}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
WORK=$(mktemp -d /tmp/mfs-dirty-XXXXXX)
SRC=$WORK/src OUT=$WORK/out
mkdir -p "$SRC" "$OUT" "$WORK/m-cap" "$WORK/m-big" "$WORK/m-ll"
cleanup() {
  for m in "$WORK/m-cap" "$WORK/m-big" "$WORK/m-ll"; do
    mountpoint -q "$m" && { fusermount3 -u "$m" 2>/dev/null || umount -l "$m"; }
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
gcc -O2 -o "$WORK/passthrough_ll" /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c $(pkg-config fuse3 --cflags --libs)
fio --name=prep --filename="$SRC/test.img" --size="$SIZE" --rw=write --bs=1m --direct=1 --output=/dev/null
"$BIN" "$SRC" "$WORK/m-cap" -o dirty_max_mb=0
"$BIN" "$SRC" "$WORK/m-big" -o dirty_max_mb=1024
"$WORK/passthrough_ll" -o source="$SRC" "$WORK/m-ll"
sleep 1
declare -A DIR=([native]=$SRC [cap1pct]=$WORK/m-cap [dirty1g]=$WORK/m-big [ll]=$WORK/m-ll)
SYSTEMS=(native cap1pct dirty1g ll)
before=$(uptime)
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
for rep in $(seq "$REPS"); do
  for wl in "write 1m" "randwrite 4k"; do
    read -r rw bs <<<"$wl"
    for s in "${SYSTEMS[@]}"; do
      drop
      fio --name=b --filename="${DIR[$s]}/test.img" --size="$SIZE" --rw=$rw --bs=$bs --direct=0 --ioengine=libaio \
        --iodepth=16 --time_based --runtime="$RUNTIME" --ramp_time=1 --output-format=json > "$OUT/$rw.$s.$rep.json"
      echo "rep $rep $rw $s done"
    done
  done
  for s in "${SYSTEMS[@]}"; do
    drop
    mkdir -p "${DIR[$s]}/bonnie"
    bonnie++ -q -d "${DIR[$s]}/bonnie" -s "$BONNIE_SIZE" -r 512 -n 0 -f -u root > "$OUT/bonnie.$s.$rep.csv" 2>/dev/null || true
    rm -rf "${DIR[$s]}/bonnie"
    echo "rep $rep bonnie $s done"
  done
done
after=$(uptime)
table=$(python3 - "$OUT" <<'PY'
import json, glob, statistics, sys
out = sys.argv[1]
systems = ["native", "cap1pct", "dirty1g", "ll"]
def fio(rw, s):
    v = []
    for p in glob.glob(f"{out}/{rw}.{s}.*.json"):
        w = json.load(open(p))["jobs"][0]["write"]
        v.append(w["bw"] * 1024 / 1e6 if rw == "write" else w["iops"])
    return v
def bonnie(s, col):
    v = []
    for p in glob.glob(f"{out}/bonnie.{s}.*.csv"):
        lines = [l for l in open(p).read().splitlines() if l.count(",") > 10]
        if lines:
            try: v.append(float(lines[-1].split(",")[col]) / 1024)
            except ValueError: pass
    return v
rows = [("seqwrite-1m-buf (MB/s)", {s: fio("write", s) for s in systems}),
        ("randwrite-4k-buf (IOPS)", {s: fio("randwrite", s) for s in systems}),
        ("bonnie++ block write (MB/s)", {s: bonnie(s, 11) for s in systems}),
        ("bonnie++ rewrite (MB/s)", {s: bonnie(s, 13) for s in systems})]
print("| workload | native | migratefs, kernel cap (1 %) | migratefs, dirty_max_mb=1024 | passthrough_ll | 1024 / cap | 1024 / ll | 1024 / native |")
print("|---|---|---|---|---|---|---|---|")
for name, cells in rows:
    med = {s: statistics.median(v) if v else 0 for s, v in cells.items()}
    fmt = lambda s: f"{med[s]:.0f} <sub>[{'/'.join(f'{x:.0f}' for x in sorted(cells[s]))}]</sub>" if cells[s] else "n/a"
    r = lambda a, b: f"×{med[a]/med[b]:.2f}" if med[b] else "-"
    print(f"| {name} | {fmt('native')} | {fmt('cap1pct')} | {fmt('dirty1g')} | {fmt('ll')} | {r('dirty1g','cap1pct')} | {r('dirty1g','ll')} | {r('dirty1g','native')} |")
PY
)
echo "$table"
{
  echo
  echo "## A/B: the mount's dirty-page cap (\`bash bench/fuse/dirty_ab.sh\`, $(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "REPS=$REPS, RUNTIME=${RUNTIME}s, ${SIZE} file, bonnie++ -s $BONNIE_SIZE -r 512; fio iodepth 16, buffered; medians, runs in brackets."
  echo "- before: $before"
  echo "- after:  $after"
  echo
  echo "$table"
} >> "$RESULTS"
echo "appended to $RESULTS"
