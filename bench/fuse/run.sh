#!/usr/bin/env bash
# FUSE data-path benchmark: native ext4 directory vs migratefs vs libfuse's
# passthrough_ll (built here from the Debian examples; not committed).
#
#   sudo bench/fuse/run.sh            # full run (~20 min): 2 GiB file, 10 s runs, 3 reps
#   REPS=1 RUNTIME=3 SIZE=512m BONNIE=0 bench/fuse/run.sh   # smoke run
#
# Systems are interleaved (native, migratefs, ll for each workload, first one rotated
# each rep, workloads inside
# each repetition); caches are dropped before every run. Prints a table of medians
# with ratios to native and writes it, with the exact commands, to RESULTS.md
# (RESULTS=path to write elsewhere). Not a test: numbers vary a lot on shared VMs.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${MIGRATEFS_BIN:-$ROOT/build/migratefs}
SIZE=${SIZE:-2g}
RUNTIME=${RUNTIME:-10}
RAMP=${RAMP:-1}
REPS=${REPS:-3}
BONNIE=${BONNIE:-1}
BONNIE_SIZE=${BONNIE_SIZE:-2g}
RESULTS=${RESULTS:-$HERE/RESULTS.md}
EXAMPLES=/usr/share/doc/libfuse3-dev/examples

[ "$(id -u)" = 0 ] || { echo "run as root (mounts, drop_caches)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "no migratefs binary at $BIN (set MIGRATEFS_BIN)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/mfs-bench-XXXXXX)
SRC=$WORK/src MNT_MFS=$WORK/mnt-migratefs MNT_LL=$WORK/mnt-ll OUT=$WORK/out
mkdir -p "$SRC" "$MNT_MFS" "$MNT_LL" "$OUT"

RAW=$ROOT/bench/out/fuse-$(date -u +%Y%m%d-%H%M%S)  # raw fio JSON / bonnie CSV (gitignored)
cleanup() {
  for m in "$MNT_MFS" "$MNT_LL"; do
    mountpoint -q "$m" && { fusermount3 -u "$m" 2>/dev/null || umount -l "$m"; }
  done
  mkdir -p "$RAW" && cp -r "$OUT"/. "$RAW"/ 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# passthrough_ll, compiled from the packaged example.
PLL_CC="gcc -O2 -o $WORK/passthrough_ll $EXAMPLES/passthrough_ll.c $(pkg-config fuse3 --cflags --libs)"
$PLL_CC

echo "== preparing $SIZE test file"
fio --name=prep --filename="$SRC/test.img" --size="$SIZE" --rw=write --bs=1m --direct=1 --ioengine=libaio \
  --iodepth=8 --refill_buffers --output=/dev/null

MFS_CMD="$BIN $SRC $MNT_MFS"
LL_CMD="$WORK/passthrough_ll -o source=$SRC $MNT_LL"
$MFS_CMD
$LL_CMD
for m in "$MNT_MFS" "$MNT_LL"; do mountpoint -q "$m" || { echo "mount $m failed" >&2; exit 1; }; done

declare -A DIR=([native]=$SRC [migratefs]=$MNT_MFS [ll]=$MNT_LL)
SYSTEMS=(native migratefs ll)
# name rw bs direct
WORKLOADS=(
  "seqwrite-1m-direct write 1m 1"
  "seqread-1m-direct read 1m 1"
  "randwrite-4k-direct randwrite 4k 1"
  "randread-4k-direct randread 4k 1"
  "seqwrite-1m-buf write 1m 0"
  "seqread-1m-buf read 1m 0"
  "randwrite-4k-buf randwrite 4k 0"
  "randread-4k-buf randread 4k 0"
)

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# fio options per workload. Buffered reads make one pass over the file (capped at
# RUNTIME), so the page cache never serves a re-read; everything else is time_based.
fio_args() {  # rw bs direct dir
  local rw=$1 bs=$2 direct=$3 dir=$4 timing
  if [ "$direct" = 0 ] && [[ $rw == *read ]]; then
    timing="--runtime=$RUNTIME"
  else
    timing="--time_based --runtime=$RUNTIME --ramp_time=$RAMP"
  fi
  echo "--name=bench --filename=$dir/test.img --size=$SIZE --rw=$rw --bs=$bs --direct=$direct" \
       "--ioengine=libaio --iodepth=16 $timing --output-format=json"
}

START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
# The systems take turns going first (rotated each rep): a run right after native
# shares the disk with the host's write-out of native's data (the guest's sync
# returns before the host has flushed), and a fixed order charged that to migratefs.
rotated() { local rep=$1 k; for k in 0 1 2; do echo "${SYSTEMS[$(((k + rep - 1) % 3))]}"; done; }
for rep in $(seq 1 "$REPS"); do
  for wl in "${WORKLOADS[@]}"; do
    read -r name rw bs direct <<<"$wl"
    for sys in $(rotated "$rep"); do
      drop_caches
      out=$OUT/fio.$name.$sys.$rep.json
      # shellcheck disable=SC2046
      if ! fio $(fio_args "$rw" "$bs" "$direct" "${DIR[$sys]}") --output="$out" >/dev/null 2>"$out.err"; then
        mv "$out" "$out.failed" 2>/dev/null || touch "$out.failed"
      fi
      printf '[%4ds] rep %d %-22s %-10s %s\n' $(( $(date +%s) - START )) "$rep" "$name" "$sys" \
        "$([ -f "$out" ] && echo ok || echo FAILED)"
    done
  done
  if [ "$BONNIE" = 1 ]; then
    for sys in $(rotated "$rep"); do
      drop_caches
      d=${DIR[$sys]}/bonnie
      mkdir -p "$d"
      bonnie++ -q -d "$d" -s "$BONNIE_SIZE" -r 1024 -n 0 -f -u root > "$OUT/bonnie.$sys.$rep.csv" 2>/dev/null ||
        echo "bonnie failed on $sys" >&2
      rm -rf "$d"
      printf '[%4ds] rep %d %-22s %-10s done\n' $(( $(date +%s) - START )) "$rep" bonnie++ "$sys"
    done
  fi
done
ELAPSED=$(( $(date +%s) - START ))
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$OUT" "$RESULTS" "$REPS" <<PY
import json, os, statistics, sys, glob
out, results, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
systems = ["native", "migratefs", "ll"]
workloads = [w.split()[0] for w in """$(printf '%s\n' "${WORKLOADS[@]}")""".splitlines() if w.strip()]

def fio_value(path):
    j = json.load(open(path))["jobs"][0]
    side = j["write"] if j["write"]["io_bytes"] > 0 else j["read"]
    return side["bw"] * 1024 / 1e6, side["iops"]   # MB/s, IOPS

def fmt(name, vals):
    if not vals: return "fails"
    mbs = statistics.median(v[0] for v in vals); iops = statistics.median(v[1] for v in vals)
    if "-1m-" in name:
        return f"{mbs:.0f} MB/s", mbs, "[" + "/".join(f"{v[0]:.0f}" for v in vals) + "]"
    return f"{iops/1000:.1f}k IOPS", iops, "[" + "/".join(f"{v[1]/1000:.1f}k" for v in vals) + "]"

rows = []
for w in workloads:
    cells = {}
    for s in systems:
        vals = [fio_value(p) for p in sorted(glob.glob(f"{out}/fio.{w}.{s}.*.json"))]
        cells[s] = fmt(w, vals)
    rows.append((w, cells))

# bonnie++ 2.00a CSV (format 1.98): after version, name, concurrency, seed, size,
# (empty), chunk size, seek procs: putc(9), putc_cpu, put_block(11), cpu, rewrite(13),
# cpu, getc(15), cpu, get_block(17), cpu, seeks(19), cpu. "+++++" = too fast to measure.
bonnie = {}
for s in systems:
    vals = []
    for p in sorted(glob.glob(f"{out}/bonnie.{s}.*.csv")):
        lines = [l for l in open(p).read().splitlines() if l.count(",") > 10]
        if not lines: continue
        f = lines[-1].split(",")
        def num(x):
            try: return float(x)
            except ValueError: return None
        vals.append({"block write": num(f[11]), "rewrite": num(f[13]), "block read": num(f[17]), "seeks": num(f[19])})
    bonnie[s] = vals
for metric in ["block write", "rewrite", "block read", "seeks"]:
    cells = {}
    for s in systems:
        v = [x[metric] for x in bonnie.get(s, []) if x.get(metric) is not None]
        if not v: cells[s] = "n/a"; continue
        med = statistics.median(v)
        unit = "/s" if metric == "seeks" else " MB/s"
        scale = 1 if metric == "seeks" else 1/1024   # bonnie reports K/s
        cells[s] = (f"{med*scale:.0f}{unit}", med, "[" + "/".join(f"{x*scale:.0f}" for x in v) + "]")
    rows.append(("bonnie++ " + metric, cells))

def cell(c, base):
    if isinstance(c, str): return c
    text, val, runs = c
    r = "" if not isinstance(base, tuple) or base[1] == 0 else f" **×{val/base[1]:.2f}**"
    return f"{text}{r} <sub>{runs}</sub>"

head = "| workload | native | migratefs | passthrough_ll | migratefs / ll |\n|---|---|---|---|---|\n"
body = ""
for name, cells in rows:
    base = cells["native"]
    vs = ""
    if isinstance(cells["migratefs"], tuple) and isinstance(cells["ll"], tuple) and cells["ll"][1] > 0:
        vs = f"×{cells['migratefs'][1]/cells['ll'][1]:.2f}"
    elif isinstance(cells["migratefs"], tuple) and cells["ll"] == "fails":
        vs = "ll fails (EINVAL)"
    body += f"| {name} | {cell(base, None)} | {cell(cells['migratefs'], base)} | {cell(cells['ll'], base)} | {vs} |\n"
print(head + body)
open(os.path.join(out, "table.md"), "w").write(head + body)
PY

{
  cat <<MD
# FUSE data-path benchmark

Produced by \`bench/fuse/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) vCPU,
libfuse $(pkg-config --modversion fuse3), fio $(fio --version), file system of /tmp: $(stat -f -c %T /tmp).
$REPS repetitions, systems interleaved; medians, **ratio to native**, individual runs in brackets
(MB/s for 1 MiB rows and bonnie++, IOPS for 4 KiB rows). Total run time ${ELAPSED} s;
load average (1/5/15 min) $LOAD_START at the start, $LOAD_END at the end.

$(cat "$OUT/table.md")

## Commands

- migratefs (default options: writeback cache, max_threads 32, max_background 64, clone_fd):
  \`$MFS_CMD\`
- passthrough_ll (libfuse example, default options): \`$PLL_CC\` then \`$LL_CMD\`
- every run is preceded by \`sync; echo 3 > /proc/sys/vm/drop_caches\`
- fio, per workload (DIR = the system's directory; the same 2 GiB file \`test.img\` in SRC for all):
$(for wl in "${WORKLOADS[@]}"; do read -r name rw bs direct <<<"$wl"; echo "  - $name: \`fio $(fio_args "$rw" "$bs" "$direct" DIR)\`"; done)
- bonnie++: \`bonnie++ -q -d DIR/bonnie -s $BONNIE_SIZE -r 1024 -n 0 -f -u root\` (-f: no per-character tests)
MD
} > "$RESULTS.tmp"
mv "$RESULTS.tmp" "$RESULTS"
echo "wrote $RESULTS (raw data: $RAW)"
