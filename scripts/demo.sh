#!/usr/bin/env bash
# The main job: installs what is missing, builds, then migrates a live VM image
# between two local migratefs daemons while fio keeps writing into it, through all
# three phases, and ends with a byte-for-byte check of both copies.
#
#   IMAGE_MB=1024 WRITE_RATE=30m NET_KBPS=100000 bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
[[ $(id -u) == 0 ]] || { echo "demo: run as root (FUSE mounts)" >&2; exit 1; }
scripts/install-deps.sh
scripts/build.sh
BIN=$ROOT/${BUILD_DIR:-build}
IMAGE_MB=${IMAGE_MB:-1024}
WRITE_RATE=${WRITE_RATE:-30m}     # the paper's VM writes 30 MB/s
WRITE_SECONDS=${WRITE_SECONDS:-40}
NET_KBPS=${NET_KBPS:-100000}      # a 100 MB/s network limit, so the phases are visible

WORK=$(mktemp -d /tmp/migratefs-demo.XXXXXX)
PORT=$(( 20000 + RANDOM % 20000 ))
A=$WORK/source B=$WORK/target
mkdir -p $A/src $A/mnt $B/src $B/mnt
head -c 32 /dev/urandom > $WORK/peer.key; chmod 600 $WORK/peer.key
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 1
  for m in $A/mnt $B/mnt; do fusermount3 -u -z "$m" 2>/dev/null || true; done
  [[ ${KEEP:-0} == 1 ]] || rm -rf "$WORK"
}
trap cleanup EXIT
ctl() { "$BIN/migratectl" --socket "$1" "${@:2}"; }
field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" | tr -d '"'; }
progress_line() {
  local j; j=$(ctl $A/control.sock --json progress $1)
  printf '%5ds  phase %-9s sent %6d MiB  mirrored %5d MiB  dirty %5s blocks  net %7.1f MB/s  ETA %.0f s\n' \
    $SECONDS "$(field phase <<<"$j")" $(( $(field bytes_sent <<<"$j") >> 20 )) \
    $(( $(field bytes_mirrored <<<"$j") >> 20 )) "$(field dirty_blocks <<<"$j")" \
    "$(awk "BEGIN{print $(field network_kbps <<<"$j")/1000}")" "$(field eta_s <<<"$j")"
}

echo "== two daemons: source $A, target $B (peer port $PORT)"
"$BIN/migratefs" $B/src $B/mnt -f -o control=$B/control.sock,listen=127.0.0.1:$PORT,keyfile=$WORK/peer.key 2>$B/log &
pids+=($!)
"$BIN/migratefs" $A/src $A/mnt -f -o control=$A/control.sock,keyfile=$WORK/peer.key 2>$A/log &
pids+=($!)
for i in $(seq 100); do [[ -S $A/control.sock && -S $B/control.sock ]] && break; sleep 0.1; done

echo "== a ${IMAGE_MB} MiB VM image with data, and a VM writing ${WRITE_RATE}B/s into it through the mount"
head -c $((IMAGE_MB << 20)) /dev/urandom > $A/src/vm.img
fio --name=vm --filename=$A/mnt/vm.img --size=${IMAGE_MB}M --rw=randwrite --bsrange=4k-256k \
    --direct=1 --ioengine=libaio --iodepth=8 --rate=$WRITE_RATE --time_based=1 --runtime=$WRITE_SECONDS \
    --verify=crc32c --verify_backlog=256 --verify_fatal=1 --output=$WORK/fio.out &
FIO=$!
sleep 1

echo "== start the migration"
ID=$(ctl $A/control.sock --json start vm.img --target 127.0.0.1:$PORT --network-kbps $NET_KBPS | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
[[ -n $ID ]] || { echo "demo: start failed" >&2; exit 1; }
echo "migration $ID"
completed_at=""
while :; do
  progress_line $ID || true
  if ctl $A/control.sock --json completion $ID | grep -q '"completed":true'; then
    [[ -n $completed_at ]] || { completed_at=$SECONDS; echo "== phase 3: every block is on the target; writes are mirrored"; }
    kill -0 $FIO 2>/dev/null || break
  fi
  sleep 1
done

echo "== the VM stops (fio ends, verifying what it wrote); the hypervisor's last sync"
wait $FIO || { echo "demo: fio reported an error" >&2; cat $WORK/fio.out; exit 1; }
sync
ctl $A/control.sock finish $ID
echo "== source copy fenced: a write now fails (expected):"
( echo x >> $A/mnt/vm.img ) 2>&1 | sed 's/^/   /' || true

echo "== byte-for-byte check"
if cmp $A/src/vm.img $B/src/vm.img; then
  echo "IDENTICAL: $(stat -c %s $A/src/vm.img) bytes"
else
  echo "DIFFERENT" >&2; exit 1
fi
