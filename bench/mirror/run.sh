#!/usr/bin/env bash
# Phase 3, synchronous vs asynchronous mirror (issue 12), against an image that does
# not migrate, all in one run: the VM's 4 KiB O_DIRECT random-write latency (p50/p99)
# and IOPS at queue depth 1 and 16; then a heavy writer during a whole migration (bytes
# sent and mirrored, time to completion and of finish). Ratios are to the unmirrored
# image measured in the same repetition; modes interleave inside each repetition.
#
#   bash bench/mirror/run.sh                  # REPS=3 RUNTIME=5 IMAGE_MB=256
#   REPS=1 RUNTIME=2 bash bench/mirror/run.sh # smoke run
#   TARGET_RAM=1 bash bench/mirror/run.sh     # the target's files on tmpfs: a stand-in for
#                                             # the other machine's disk (this one has one)
#   DAEMON_OPTS=mirror_coalesce_us=0 bash bench/mirror/run.sh  # A/B of a daemon option
#   PIN=1 bash bench/mirror/run.sh            # two one-core hosts: the source daemon and fio
#                                             # on CPU 0, the target daemon on CPU 1 (every
#                                             # mode, the unmirrored image included)
#   PIN=1 RFS=1 bash bench/mirror/run.sh      # and receive flow steering on lo: each packet
#                                             # is received (TCP input, softirq) on the CPU
#                                             # its reader last ran on, as on two hosts where
#                                             # each receives its own packets; without it the
#                                             # sender's CPU also runs the receiver's TCP input
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
REPS=${REPS:-3}
RUNTIME=${RUNTIME:-5}
IMAGE_MB=${IMAGE_MB:-256}
TARGET_RAM=${TARGET_RAM:-0}
PIN=${PIN:-0}
RFS=${RFS:-0}
DAEMON_OPTS=${DAEMON_OPTS:-}  # extra -o options of both daemons, e.g. mirror_coalesce_us=0
OUT=${RESULTS:-$BENCH_ROOT/bench/mirror/RESULTS.md}
[[ $(id -u) == 0 ]] || { echo "run as root" >&2; exit 1; }
[[ -x $BIN/migratefs ]] || { echo "build first (scripts/build.sh)" >&2; exit 1; }

before=$(uptime)
bench_setup
trap bench_teardown EXIT
if [[ $TARGET_RAM == 1 ]]; then mount_ram $((IMAGE_MB * 4 + 256))M $WORK/b/src; fi
daemons_start "$DAEMON_OPTS"
FIO_PIN=()
if [[ $PIN == 1 ]]; then
  # Every thread of the supervisor and its worker; threads started later inherit it.
  pin_daemon() { local p; for p in $(cat $WORK/$1.pid) $(pgrep -P "$(cat $WORK/$1.pid)"); do taskset -a -p -c $2 $p >/dev/null; done; }
  pin_daemon a 0; pin_daemon b 1
  FIO_PIN=(taskset -c 0)
fi
if [[ $RFS == 1 ]]; then
  [[ $PIN == 1 ]] || { echo "RFS=1 needs PIN=1" >&2; exit 1; }
  RFS_Q=/sys/class/net/lo/queues/rx-0
  RFS_SAVED="$(cat /proc/sys/net/core/rps_sock_flow_entries) $(cat $RFS_Q/rps_cpus) $(cat $RFS_Q/rps_flow_cnt)"
  rfs_restore() {
    read -r entries cpus cnt <<< "$RFS_SAVED"
    echo $cnt > $RFS_Q/rps_flow_cnt; echo $cpus > $RFS_Q/rps_cpus; echo $entries > /proc/sys/net/core/rps_sock_flow_entries
  }
  trap 'rfs_restore; bench_teardown' EXIT
  echo 32768 > /proc/sys/net/core/rps_sock_flow_entries
  echo 3 > $RFS_Q/rps_cpus
  echo 32768 > $RFS_Q/rps_flow_cnt
fi

# One JSON request on the source's control socket (migratectl has no mirror flags).
req() {
  python3 - "$WORK/a/ctl.sock" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.argv[2].encode() + b"\n")
buf = b""
while not buf.endswith(b"\n"):
    c = s.recv(65536)
    if not c: break
    buf += c
print(buf.decode().strip())
PY
}
jfield() { python3 -c "import json,sys; d=json.load(sys.stdin); print(d$1)"; }

# fio 4 KiB O_DIRECT random writes; prints "p50_us p99_us iops".
fio_lat() {
  "${FIO_PIN[@]}" fio --name=vm --filename="$1" --size=${IMAGE_MB}M --rw=randwrite --bs=4k --direct=1 --ioengine=libaio \
    --iodepth=$2 --time_based --runtime=$RUNTIME --output-format=json 2>/dev/null |
    python3 -c "import json,sys; w=json.load(sys.stdin)['jobs'][0]['write']; p=w['clat_ns']['percentile'];
print('%.1f %.1f %.0f' % (p['50.000000']/1e3, p['99.000000']/1e3, w['iops']))"
}

# CPU ticks (USER_HZ) used so far by a daemon: its supervisor and its worker.
daemon_ticks() {
  local sup t=0 q
  sup=$(cat "$WORK/$1.pid")
  for q in $sup $(pgrep -P "$sup"); do t=$((t + $(awk '{print $14 + $15}' /proc/$q/stat))); done
  echo $t
}
# Busy and total ticks of the whole host (/proc/stat, all cores).
host_ticks() { awk '/^cpu /{busy=$2+$3+$4+$7+$8; print busy, busy+$5+$6}' /proc/stat; }
HZ=$(getconf CLK_TCK)

for f in plain sync async; do
  dd if=/dev/urandom of=$WORK/a/src/$f.img bs=1M count=$IMAGE_MB status=none
done
mirror_start() {  # image mode -> id, waits for phase 3
  local id
  id=$(req "{\"op\":\"start\",\"images\":[\"$1\"],\"target\":\"$TARGET\",\"mirror\":\"$2\"}" | jfield "['id']")
  while [[ $(req "{\"op\":\"query_progress\",\"id\":\"$id\"}" | jfield "['phase']") != mirror ]]; do sleep 0.1; done
  echo "$id"
}
ID_SYNC=$(mirror_start sync.img sync)
ID_ASYNC=$(mirror_start async.img async)

declare -A R
for rep in $(seq $REPS); do
  for qd in 1 16; do
    for mode in plain sync async; do
      a0=$(daemon_ticks a); b0=$(daemon_ticks b); read -r h0 n0 < <(host_ticks)
      read -r p50 p99 iops < <(fio_lat $WORK/a/mnt/$mode.img $qd)
      a1=$(daemon_ticks a); b1=$(daemon_ticks b); read -r h1 n1 < <(host_ticks)
      R[$mode,$qd,p50]+="$p50 "; R[$mode,$qd,p99]+="$p99 "; R[$mode,$qd,iops]+="$iops "
      # CPU per write (µs) of each daemon, and how busy the host's cores were.
      read -r ca cb hb < <(awk -v a=$((a1 - a0)) -v b=$((b1 - b0)) -v h=$((h1 - h0)) -v n=$((n1 - n0)) \
        -v hz=$HZ -v w="$iops" -v t=$RUNTIME 'BEGIN{printf "%.1f %.1f %.0f\n", a*1e6/hz/(w*t), b*1e6/hz/(w*t), 100*h/n}')
      R[$mode,$qd,cpua]+="$ca "; R[$mode,$qd,cpub]+="$cb "; R[$mode,$qd,busy]+="$hb "
      echo "rep $rep qd$qd $mode: p50 ${p50} us p99 ${p99} us ${iops} IOPS; CPU/write source $ca us target $cb us; host ${hb} % busy"
    done
  done
done
sync_bl=$(req "{\"op\":\"query_progress\",\"id\":\"$ID_ASYNC\"}" | jfield "['mirror_sync_s']")
for id in $ID_SYNC $ID_ASYNC; do req "{\"op\":\"finish\",\"id\":\"$id\"}" >/dev/null; done
cmp $WORK/a/src/sync.img $WORK/b/src/sync.img && cmp $WORK/a/src/async.img $WORK/b/src/async.img
echo "both mirrored images identical after finish"

# A heavy writer for a whole migration (network limit 100 MB/s, so phases 1-2 take a while).
declare -A H
heavy() {  # mode rep
  local img=heavy-$1-$2.img id t0 tc tf
  dd if=/dev/urandom of=$WORK/a/src/$img bs=1M count=$IMAGE_MB status=none
  "${FIO_PIN[@]}" fio --name=heavy --filename=$WORK/a/mnt/$img --size=${IMAGE_MB}M --rw=randwrite --bs=16k --direct=1 \
    --ioengine=libaio --iodepth=16 --time_based --runtime=$((RUNTIME * 3)) --output-format=json \
    > $WORK/heavy.json 2>/dev/null &
  local fio_pid=$!
  sleep 1
  t0=$(now)
  id=$(req "{\"op\":\"start\",\"images\":[\"$img\"],\"target\":\"$TARGET\",\"mirror\":\"$1\",\"network_kbps\":100000}" | jfield "['id']")
  until req "{\"op\":\"query_completion\",\"id\":\"$id\"}" | grep -q '"completed":true'; do sleep 0.1; done
  tc=$(elapsed $t0)
  wait $fio_pid
  local t1; t1=$(now)
  req "{\"op\":\"finish\",\"id\":\"$id\"}" >/dev/null
  tf=$(elapsed $t1)
  local p; p=$(req "{\"op\":\"query_progress\",\"id\":\"$id\"}")
  local sent mirrored iops
  sent=$(echo "$p" | jfield "['bytes_sent']"); mirrored=$(echo "$p" | jfield "['bytes_mirrored']")
  iops=$(python3 -c "import json; print('%.0f' % json.load(open('$WORK/heavy.json'))['jobs'][0]['write']['iops'])")
  cmp $WORK/a/src/$img $WORK/b/src/$img
  H[$1,sent]+="$sent "; H[$1,mirrored]+="$mirrored "; H[$1,tc]+="$tc "; H[$1,tf]+="$tf "; H[$1,iops]+="$iops "
  req "{\"op\":\"release\",\"id\":\"$id\"}" >/dev/null
  rm -f $WORK/a/src/$img $WORK/b/src/$img
  echo "heavy $1 rep $2: completed after ${tc} s, finish ${tf} s, sent $sent, mirrored $mirrored, VM $iops IOPS (identical)"
}
# Issue 13's bound for a mirrored write: unmirrored p50 + one loopback RTT + 25 µs.
cc -O2 -o "$WORK/tcp_rtt" "$BENCH_ROOT/bench/mirror/tcp_rtt.c"
RTT=""
for rep in $(seq $REPS); do RTT+=" $("$WORK/tcp_rtt" | cut -d' ' -f1)"; done
for rep in $(seq $REPS); do for mode in sync async; do heavy $mode $rep; done; done
after=$(uptime)

med() { echo "$1" | tr ' ' '\n' | grep -v '^$' | median; }
table=$(
  echo "| mode | qd1 p50 µs | qd1 p99 µs | qd1 IOPS | qd16 p50 µs | qd16 p99 µs | qd16 IOPS |"
  echo "|---|---|---|---|---|---|---|"
  for mode in plain sync async; do
    row="| $mode"
    for qd in 1 16; do
      for k in p50 p99 iops; do
        v=$(med "${R[$mode,$qd,$k]}"); b=$(med "${R[plain,$qd,$k]}")
        if [[ $mode == plain ]]; then row+=" | $v"; else row+=" | $v **×$(ratio $v $b)**"; fi
      done
    done
    echo "$row |"
  done
  echo
  echo "CPU time per write (both daemons' user + system, from /proc; medians), and how busy the host was (% of all its cores):"
  echo
  echo "| mode | qd1 source µs | qd1 target µs | qd1 host busy % | qd16 source µs | qd16 target µs | qd16 host busy % |"
  echo "|---|---|---|---|---|---|---|"
  for mode in plain sync async; do
    row="| $mode"
    for qd in 1 16; do
      for k in cpua cpub busy; do row+=" | $(med "${R[$mode,$qd,$k]}")"; done
    done
    echo "$row |"
  done
  rtt=$(med "$RTT"); plain50=$(med "${R[plain,1,p50]}"); sync50=$(med "${R[sync,1,p50]}")
  bound=$(awk -v p="$plain50" -v r="$rtt" 'BEGIN{printf "%.1f", p + r + 25}')
  verdict=$(awk -v s="$sync50" -v b="$bound" 'BEGIN{print (s <= b) ? "met" : "not met"}')
  echo
  echo "Loopback TCP round trip (bench/mirror/tcp_rtt.c, 48-byte echo between two processes) p50: $rtt µs."
  echo "Issue 13's bound for sync qd1 p50 (unmirrored p50 + RTT + 25 µs): $bound µs; sync: $sync50 µs ($verdict)."
  echo
  echo "Heavy writer (fio 16 KiB O_DIRECT random writes, qd16, unthrottled) during a whole migration of a ${IMAGE_MB} MiB image, network limit 100 MB/s:"
  echo
  echo "| mode | bytes sent (phases 1-2) | bytes mirrored | time to completion s | finish s | VM IOPS |"
  echo "|---|---|---|---|---|---|"
  for mode in sync async; do
    echo "| $mode | $(med "${H[$mode,sent]}") | $(med "${H[$mode,mirrored]}") | $(med "${H[$mode,tc]}") | $(med "${H[$mode,tf]}") | $(med "${H[$mode,iops]}") |"
  done
  echo
  echo "async / sync: bytes sent ×$(ratio $(med "${H[async,sent]}") $(med "${H[sync,sent]}")), time to completion ×$(ratio $(med "${H[async,tc]}") $(med "${H[sync,tc]}")), VM IOPS ×$(ratio $(med "${H[async,iops]}") $(med "${H[sync,iops]}"))"
)
echo
echo "$table"
{
  echo "# Phase-3 mirror: sync vs async (issue 12)"
  echo
  echo "\`bash bench/mirror/run.sh\` (REPS=$REPS, RUNTIME=${RUNTIME}s, ${IMAGE_MB} MiB images, two daemons on loopback,"
  echo "source files on $(df --output=fstype $WORK/a/src | tail -1), the target's on $(df --output=fstype $WORK/b/src | tail -1); medians; ratios to the unmirrored image of the same run)."
  echo "fio: \`--rw=randwrite --bs=4k --direct=1 --ioengine=libaio --iodepth=QD --runtime=$RUNTIME\`."
  echo "Async mirror: default backlog (64 MiB, 5 % / 70 %); time spent throttled over the latency runs: ${sync_bl} s."
  echo "Daemon options beyond the defaults: ${DAEMON_OPTS:-none}."
  if [[ $PIN == 1 ]]; then echo "Pinned (PIN=1): source daemon and fio on CPU 0, target daemon on CPU 1."; fi
  if [[ $RFS == 1 ]]; then echo "Receive flow steering on lo (RFS=1): each packet's TCP input runs on its reader's CPU."; fi
  echo
  echo "- before: $before"
  echo "- after:  $after"
  echo
  echo "$table"
} > "$OUT"
echo "written to $OUT"
