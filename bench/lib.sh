# Shared by the bench scripts: two local migratefs daemons, their control sockets, and
# small helpers. Source it; call bench_setup first. Needs root.
set -euo pipefail
BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$BENCH_ROOT/${BUILD_DIR:-build}
WORK=${WORK:-/var/tmp/migratefs-bench}

bench_setup() {
  bench_teardown
  mkdir -p $WORK/a/src $WORK/a/mnt $WORK/b/src $WORK/b/mnt
  head -c 32 /dev/urandom > $WORK/key; chmod 600 $WORK/key
  PORT=$(( 20000 + RANDOM % 20000 ))
  TARGET=127.0.0.1:$PORT
}

daemons_start() {
  "$BIN/migratefs" $WORK/b/src $WORK/b/mnt -f -o control=$WORK/b/ctl.sock,listen=$TARGET,keyfile=$WORK/key${1:+,$1} 2>>$WORK/b.log &
  echo $! > $WORK/b.pid
  "$BIN/migratefs" $WORK/a/src $WORK/a/mnt -f -o control=$WORK/a/ctl.sock,keyfile=$WORK/key${1:+,$1} 2>>$WORK/a.log &
  echo $! > $WORK/a.pid
  for _ in $(seq 100); do [[ -S $WORK/a/ctl.sock && -S $WORK/b/ctl.sock ]] && return; sleep 0.1; done
  echo "daemons did not start" >&2; exit 1
}

# Starts one more receiving daemon NAME serving $WORK/NAME/src, listening on LISTEN.
extra_target_start() {
  local name=$1 listen=$2
  mkdir -p $WORK/$name/src $WORK/$name/mnt
  "$BIN/migratefs" $WORK/$name/src $WORK/$name/mnt -f -o control=$WORK/$name/ctl.sock,listen=$listen,keyfile=$WORK/key 2>>$WORK/$name.log &
  echo $! > $WORK/$name.pid
  for _ in $(seq 100); do [[ -S $WORK/$name/ctl.sock ]] && return; sleep 0.1; done
  echo "daemon $name did not start" >&2; exit 1
}

daemons_stop() {
  local pidf d
  for pidf in $WORK/*.pid; do
    [[ -f $pidf ]] || continue
    kill "$(cat $pidf)" 2>/dev/null || true
    rm -f $pidf
  done
  sleep 1
  for d in $WORK/*/mnt; do [[ -d $d ]] && { fusermount3 -u -z $d 2>/dev/null || true; }; done
}

bench_teardown() {
  daemons_stop 2>/dev/null || true
  local m
  for m in $(awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/mounts 2>/dev/null); do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$WORK"
}

# Mounts a RAM file system of SIZE at DIR (a stand-in for a second machine's disk).
mount_ram() { mkdir -p "$2"; mount -t tmpfs -o size=$1 tmpfs "$2"; }

ctl() { "$BIN/migratectl" --socket $WORK/a/ctl.sock --json "$@"; }
field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" | tr -d '"' | head -1; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
now() { date +%s.%N; }
elapsed() { awk "BEGIN{printf \"%.2f\", $(now) - $1}"; }
ratio() { awk "BEGIN{ if ($2 > 0) printf \"%.2f\", $1 / $2; else print \"-\" }"; }
median() { sort -g | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2 }'; }

# Starts a migration of the given images; prints its id.
migrate_start() {
  local extra=() imgs=()
  while (($#)); do case $1 in --*) extra+=("$1" "$2"); shift 2;; *) imgs+=("$1"); shift;; esac; done
  ctl start "${imgs[@]}" --target $TARGET "${extra[@]}" | field id
}

# Waits until migration $1 reports phase $2 (or completed when $2 = completed); prints seconds since $3.
wait_for() {
  local id=$1 what=$2 t0=$3
  while :; do
    if [[ $what == completed ]]; then
      ctl completion $id | grep -q '"completed":true' && break
    else
      [[ $(ctl progress $id | field phase) == "$what" ]] && break
    fi
    sleep 0.05
  done
  elapsed $t0
}
