#!/usr/bin/env bash
# A/B of migratefs mount options on the buffered rows of issue 13, item 1: each
# variant is a migratefs mount of the same source directory with its own -o options,
# measured interleaved with native ext4 and libfuse's passthrough_ll (built here from
# the Debian example). Caches are dropped before every run; medians; the table gives
# every variant's ratio to passthrough_ll and to native and is appended to
# bench/fuse/RESULTS.md (RESULTS=path to write elsewhere).
#
#   sudo bash bench/fuse/options_ab.sh
#   VARIANTS='default= nowb=nowriteback' ROWS='write1m read1m' REPS=3 bash bench/fuse/options_ab.sh
#
# VARIANTS: space-separated NAME=OPTS (OPTS may be empty; commas inside OPTS).
# ROWS: any of write1m read1m randwrite4k randread4k bonnie (default: all).
# BINS: space-separated NAME=PATH, another migratefs binary for variant NAME (an A/B
# of two builds: BINS='base=/tmp/old/migratefs' VARIANTS='base= new=').
# TITLE: heading of the appended section. LL_OPTS: extra -o for passthrough_ll.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${MIGRATEFS_BIN:-$ROOT/build/migratefs}
REPS=${REPS:-3} RUNTIME=${RUNTIME:-5} SIZE=${SIZE:-1g} BONNIE_SIZE=${BONNIE_SIZE:-1g}
VARIANTS=${VARIANTS:-"default= nowriteback=nowriteback"}
ROWS=${ROWS:-"write1m read1m randwrite4k randread4k bonnie"}
TITLE=${TITLE:-"migratefs mount options"}
LL_OPTS=${LL_OPTS:-}
BINS=${BINS:-}
declare -A VBIN=()
for b in $BINS; do VBIN[${b%%=*}]=${b#*=}; done
RESULTS=${RESULTS:-$HERE/RESULTS.md}
[ "$(id -u)" = 0 ] || { echo "run as root (mounts, drop_caches)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "no migratefs binary at $BIN (set MIGRATEFS_BIN)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/mfs-optab-XXXXXX)
SRC=$WORK/src OUT=$WORK/out
mkdir -p "$SRC" "$OUT" "$WORK/m-ll"
declare -A DIR=([native]=$SRC [ll]=$WORK/m-ll)
SYSTEMS=(native)
MOUNTS=("$WORK/m-ll")
for v in $VARIANTS; do
  name=${v%%=*} opts=${v#*=}
  mkdir -p "$WORK/m-$name"
  DIR[$name]=$WORK/m-$name
  SYSTEMS+=("$name")
  MOUNTS+=("$WORK/m-$name")
done
SYSTEMS+=(ll)
cleanup() {
  for m in "${MOUNTS[@]}"; do
    mountpoint -q "$m" && { fusermount3 -u "$m" 2>/dev/null || umount -l "$m"; }
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

gcc -O2 -o "$WORK/passthrough_ll" /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c $(pkg-config fuse3 --cflags --libs)
fio --name=prep --filename="$SRC/test.img" --size="$SIZE" --rw=write --bs=1m --direct=1 --refill_buffers --output=/dev/null
for v in $VARIANTS; do
  name=${v%%=*} opts=${v#*=}
  "${VBIN[$name]:-$BIN}" "$SRC" "$WORK/m-$name" ${opts:+-o "$opts"}
done
"$WORK/passthrough_ll" -o source="$SRC"${LL_OPTS:+,$LL_OPTS} "$WORK/m-ll"
sleep 1
for m in "${MOUNTS[@]}"; do mountpoint -q "$m" || { echo "mount $m failed" >&2; exit 1; }; done

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
fio_row() {  # row rw bs system rep
  local extra=(--time_based --ramp_time=1)
  case $2 in read | randread) extra=() ;; esac  # reads stop at EOF of a cold file
  fio --name=b --filename="${DIR[$4]}/test.img" --size="$SIZE" --rw="$2" --bs="$3" --direct=0 --ioengine=libaio \
    --iodepth=16 --runtime="$RUNTIME" "${extra[@]}" --output-format=json > "$OUT/$1.$4.$5.json"
}
before=$(uptime)
# The systems take turns going first: a run right after native ext4 shares the disk
# with the host's write-out of native's data (guest sync returns before the host has
# flushed), and a fixed order put that cost on the first variant every time.
n_sys=${#SYSTEMS[@]}
for rep in $(seq "$REPS"); do
  for row in $ROWS; do
    for k in $(seq 0 $((n_sys - 1))); do
      s=${SYSTEMS[$(((k + rep - 1) % n_sys))]}
      drop
      case $row in
        write1m) fio_row "$row" write 1m "$s" "$rep" ;;
        read1m) fio_row "$row" read 1m "$s" "$rep" ;;
        randwrite4k) fio_row "$row" randwrite 4k "$s" "$rep" ;;
        randread4k) fio_row "$row" randread 4k "$s" "$rep" ;;
        bonnie)
          mkdir -p "${DIR[$s]}/bonnie"
          bonnie++ -q -d "${DIR[$s]}/bonnie" -s "$BONNIE_SIZE" -r 512 -n 0 -f -u root > "$OUT/bonnie.$s.$rep.csv" 2>/dev/null || true
          rm -rf "${DIR[$s]}/bonnie" ;;
        *) echo "unknown row $row" >&2; exit 2 ;;
      esac
      echo "rep $rep $row $s done"
    done
  done
done
after=$(uptime)

table=$(python3 - "$OUT" "${SYSTEMS[*]}" "$ROWS" <<'PY'
import json, glob, statistics, sys
out, systems, rows = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
variants = [s for s in systems if s not in ("native", "ll")]
def fio(row, s, mb):
    v = []
    for p in glob.glob(f"{out}/{row}.{s}.*.json"):
        j = json.load(open(p))["jobs"][0]
        d = j["write"] if j["write"]["io_bytes"] else j["read"]
        v.append(d["bw"] * 1024 / 1e6 if mb else d["iops"])
    return v
def bonnie(s, col):
    v = []
    for p in glob.glob(f"{out}/bonnie.{s}.*.csv"):
        lines = [l for l in open(p).read().splitlines() if l.count(",") > 10]
        if lines:
            try: v.append(float(lines[-1].split(",")[col]) / 1024)
            except ValueError: pass
    return v
table = []
names = {"write1m": "seqwrite-1m-buf (MB/s)", "read1m": "seqread-1m-buf (MB/s)",
         "randwrite4k": "randwrite-4k-buf (IOPS)", "randread4k": "randread-4k-buf (IOPS)"}
for row in rows:
    if row == "bonnie":
        for col, n in ((11, "bonnie++ block write (MB/s)"), (13, "bonnie++ rewrite (MB/s)"), (17, "bonnie++ block read (MB/s)")):
            table.append((n, {s: bonnie(s, col) for s in systems}))
    else:
        table.append((names[row], {s: fio(row, s, row.endswith("1m")) for s in systems}))
head = ["workload"] + systems + [f"{v} / ll" for v in variants] + [f"{v} / native" for v in variants]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for name, cells in table:
    med = {s: statistics.median(v) if v else 0 for s, v in cells.items()}
    fmt = lambda s: f"{med[s]:.0f} <sub>[{'/'.join(f'{x:.0f}' for x in sorted(cells[s]))}]</sub>" if cells[s] else "n/a"
    r = lambda a, b: f"×{med[a]/med[b]:.2f}" if med[a] and med[b] else "-"
    print("| " + " | ".join([name] + [fmt(s) for s in systems] + [r(v, "ll") for v in variants] +
                          [r(v, "native") for v in variants]) + " |")
PY
)
echo "$table"
{
  echo
  echo "## A/B: $TITLE (\`bench/fuse/options_ab.sh\`, $(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "Variants (migratefs -o): $(for v in $VARIANTS; do printf '`%s` = `%s` (%s); ' "${v%%=*}" "${v#*=}" "${VBIN[${v%%=*}]:-$BIN}"; done)"
  echo "passthrough_ll -o source=SRC${LL_OPTS:+,$LL_OPTS}. REPS=$REPS, RUNTIME=${RUNTIME}s, $SIZE file, bonnie++ -s $BONNIE_SIZE -r 512 -f; fio libaio iodepth 16, buffered; medians, runs in brackets."
  echo "- before: $before"
  echo "- after:  $after"
  echo
  echo "$table"
} >> "$RESULTS"
echo "appended to $RESULTS"
