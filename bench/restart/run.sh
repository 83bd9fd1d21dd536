#!/usr/bin/env bash
# The VM's longest write stall per kill -9 of the worker (issue 14): fio 4 KiB O_DIRECT
# random writes at queue depth 1 through one mount, once undisturbed (the baseline,
# same run) and once while the worker is killed KILLS times, GAP seconds apart. Each
# kill shows as one outlying completion latency; the KILLS largest latencies of the
# kill run, taken at least 1 s apart, are the stalls. Prints p50/max of them, the
# baseline's p99 and max, fio's errors, and appends the table to bench/RESULTS.md.
#
#   bash bench/restart/run.sh              # KILLS=10 GAP=2
#   KILLS=3 GAP=1 bash bench/restart/run.sh
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
KILLS=${KILLS:-10}
GAP=${GAP:-2}
OUT=${RESULTS:-$BENCH_ROOT/bench/RESULTS.md}
[[ $(id -u) == 0 ]] || { echo "run as root" >&2; exit 1; }
[[ -x $BIN/migratefs ]] || { echo "build first (scripts/build.sh)" >&2; exit 1; }

before=$(uptime)
bench_setup
trap bench_teardown EXIT
"$BIN/migratefs" $WORK/a/src $WORK/a/mnt -f -o pidfile=$WORK/worker.pid 2>>$WORK/a.log &
echo $! > $WORK/a.pid
for _ in $(seq 100); do [[ -s $WORK/worker.pid ]] && break; sleep 0.1; done
[[ -s $WORK/worker.pid ]] || { echo "daemon did not start" >&2; exit 1; }
head -c $((256 << 20)) /dev/urandom > $WORK/a/src/vm.img

# fio for $1 seconds, per-I/O completion latencies in $2_clat.1.log (ns); prints errors.
run_fio() {
  fio --name=stall --filename=$WORK/a/mnt/vm.img --size=256M --bs=4k --rw=randwrite --direct=1 \
      --ioengine=psync --iodepth=1 --time_based --runtime=$1 --write_lat_log=$2 --log_avg_msec=0 \
      --output-format=json --output=$2.json >/dev/null
  python3 -c "import json; print(json.load(open('$2.json'))['jobs'][0]['error'])"
}

runtime=$((KILLS * GAP + 4))
base_err=$(run_fio $runtime $WORK/base)
run_fio $runtime $WORK/kill > $WORK/kill.err &
fio_pid=$!
sleep 2
restarts=0
for i in $(seq $KILLS); do
  old=$(cat $WORK/worker.pid)
  kill -9 "$old"
  sleep $GAP
  [[ $(cat $WORK/worker.pid) != "$old" ]] && restarts=$((restarts + 1))
done
(( restarts == KILLS )) || { echo "only $restarts of $KILLS kills were followed by a new worker" >&2; exit 1; }
wait $fio_pid
kill_err=$(cat $WORK/kill.err)
after=$(uptime)

table=$(python3 - "$WORK" "$KILLS" "$base_err" "$kill_err" <<'PY'
import sys
work, kills, base_err, kill_err = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def load(name):
    out = []
    for line in open(f"{work}/{name}_clat.1.log"):
        f = [x.strip() for x in line.split(",")]
        out.append((int(f[0]), int(f[1]) / 1e6))  # ms since start, latency ms
    return out
base = sorted(l for _, l in load("base"))
p = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))]
stalls, taken = [], []
for t, l in sorted(load("kill"), key=lambda x: -x[1]):
    if all(abs(t - u) >= 1000 for u in taken):
        taken.append(t); stalls.append(l)
    if len(stalls) == kills: break
s = sorted(stalls)
print("| kills (new worker each) | stall p50 ms | stall max ms | baseline p99 ms | baseline max ms | stall p50 / baseline p99 | fio errors (baseline / kills) |")
print("|---|---|---|---|---|---|---|")
print(f"| {kills} | {p(s, 0.5):.1f} | {s[-1]:.1f} | {p(base, 0.99):.3f} | {base[-1]:.1f} | {p(s, 0.5) / p(base, 0.99):.0f}x | {base_err} / {kill_err} |")
PY
)
echo "$table"
{
  echo
  echo "## Worker kill -9 under a writer: longest write stall per kill ($(date -u +%Y-%m-%d), bench/restart/run.sh)"
  echo
  echo "fio 4 KiB O_DIRECT randwrite, qd1, one mount, no migration; KILLS=$KILLS, GAP=${GAP}s."
  echo "Load before: \`$before\`; after: \`$after\`."
  echo
  echo "$table"
} >> "$OUT"
