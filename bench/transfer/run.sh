#!/usr/bin/env bash
# Transfer benchmark (issue 3): daemon-to-daemon bulk copy on loopback against the
# limits measured in the same run (dd iflag=direct read of the image; iperf3 on
# loopback; the minimal copy pipeline dd iflag=direct | socat → socat | dd into the
# target's file system, no checksums: issue 13) and against rsync --whole-file --inplace to an rsync daemon on loopback;
# a sparse image against a dense one; convergence under a 30 MB/s random writer
# (bytes sent against the image plus the unique bytes the writer dirtied); phase-3
# write latency. Prints a table and writes bench/transfer/RESULTS.md.
#
# One machine stands in for two. With both copies on its one virtual disk, the
# target's writes eat the bandwidth the source reads with (vmstat shows bi + bo
# pinned near the plain read rate), which no migration between two hosts has. So the
# target's SRC and rsync's destination live on tmpfs (a second machine's disk that is
# not the bottleneck), and the bulk copy is measured again with the target on the
# shared disk, against a dd copy on that disk.
#
#   bash bench/transfer/run.sh            # SIZE_GB=8 REPS=2
#   PROFILE=1 ...                         # also perf-profile one bulk copy (PROFILE.md)
#   QUICK=1 ...                           # only the bulk-copy rows (no same-disk, sparse,
#                                         # convergence or latency sections)
# Needs root, ~SIZE_GB GiB free under /var/tmp plus 2*SIZE_GB GiB of RAM, and a
# built tree (scripts/build.sh).
source "$(dirname "$0")/../lib.sh"
SIZE_GB=${SIZE_GB:-8}
REPS=${REPS:-2}
OUT=$BENCH_ROOT/bench/transfer/RESULTS.md
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
bench_setup
trap bench_teardown EXIT
mount_ram $((SIZE_GB + 1))G $WORK/b/src
mount_ram $((SIZE_GB + 1))G $WORK/rsync
RES=$WORK/results.txt; : > $RES
record() { echo "$1 $2" >> $RES; }   # name value

echo "== preparing a ${SIZE_GB} GiB dense image (random data)"
head -c $((SIZE_GB << 30)) /dev/urandom > $WORK/a/src/dense.img
IMG_BYTES=$(stat -c %s $WORK/a/src/dense.img)

# rsync daemon on loopback
cat > $WORK/rsyncd.conf <<CONF
use chroot = no
[dst]
  path = $WORK/rsync
  read only = no
  uid = root
  gid = root
CONF
RSYNC_PORT=$(( PORT + 1 ))
rsync --daemon --no-detach --port=$RSYNC_PORT --config=$WORK/rsyncd.conf &
RSYNC_PID=$!
trap 'kill $RSYNC_PID 2>/dev/null; bench_teardown' EXIT
sleep 0.5

daemons_start ${DAEMON_OPTS:-}   # e.g. DAEMON_OPTS=senders=4 for an A/B
DISK_TARGET=127.0.0.1:$((PORT + 3))
extra_target_start c $DISK_TARGET   # its SRC is on the same disk as the source's
for rep in $(seq $REPS); do
  echo "== repetition $rep"
  drop_caches
  t=$(now); dd if=$WORK/a/src/dense.img of=/dev/null bs=1M iflag=direct status=none; s=$(elapsed $t)
  record dd_MBps $(awk "BEGIN{print $IMG_BYTES/$s/1e6}")
  iperf3 -s -1 -p $((PORT + 2)) >/dev/null 2>&1 & IPERF=$!; sleep 0.3
  bps=$(iperf3 -c 127.0.0.1 -p $((PORT + 2)) -t 5 -J | sed -n 's/.*"bits_per_second":[[:space:]]*\([0-9.e+]*\).*/\1/p' | tail -1)
  record tcp_MBps $(awk "BEGIN{print $bps/8/1e6}")
  wait $IPERF || true

  drop_caches; rm -f $WORK/rsync/dense.img
  t=$(now); rsync --whole-file --inplace $WORK/a/src/dense.img rsync://127.0.0.1:$RSYNC_PORT/dst/; s=$(elapsed $t)
  record rsync_s $s

  drop_caches; rm -f $WORK/b/src/dense.img
  t=$(now); id=$(migrate_start dense.img); s=$(wait_for $id completed $t)
  record migratefs_s $s
  ctl finish $id >/dev/null; ctl release $id >/dev/null
  cmp $WORK/a/src/dense.img $WORK/b/src/dense.img || { echo "copies differ!" >&2; exit 1; }
  rm -f $WORK/b/src/dense.img

  # The minimal copy pipeline: O_DIRECT read, one TCP stream on loopback, buffered
  # write into the same tmpfs the target daemon writes to; no framing, no checksums.
  # socat moves 4 MiB per read/write (-b): with its default 8 KiB it is the bottleneck
  # (258 MB/s here), which would flatter us.
  drop_caches; rm -f $WORK/b/src/pipe.img
  PIPE_PORT=$((PORT + 4))
  socat -u -b 4194304 TCP-LISTEN:$PIPE_PORT,reuseaddr STDOUT | dd of=$WORK/b/src/pipe.img bs=4M iflag=fullblock status=none &
  SINK=$!
  for _ in $(seq 50); do ss -ltn | grep -q ":$PIPE_PORT " && break; sleep 0.05; done
  t=$(now)
  dd if=$WORK/a/src/dense.img bs=4M iflag=direct status=none | socat -u -b 4194304 STDIN TCP:127.0.0.1:$PIPE_PORT
  wait $SINK; s=$(elapsed $t)
  record pipeline_s $s
  cmp $WORK/a/src/dense.img $WORK/b/src/pipe.img || { echo "pipeline copy differs!" >&2; exit 1; }
  rm -f $WORK/b/src/pipe.img
  # The same without pipes (4 processes on 2 cores spend their time switching): socat
  # reads the file with O_DIRECT and writes the socket; the other socat writes the file.
  drop_caches
  socat -u -b 4194304 TCP-LISTEN:$PIPE_PORT,reuseaddr CREATE:$WORK/b/src/pipe.img &
  SINK=$!
  for _ in $(seq 50); do ss -ltn | grep -q ":$PIPE_PORT " && break; sleep 0.05; done
  t=$(now)
  socat -u -b 4194304 OPEN:$WORK/a/src/dense.img,o-direct TCP:127.0.0.1:$PIPE_PORT
  wait $SINK; s=$(elapsed $t)
  record socatfile_s $s
  cmp $WORK/a/src/dense.img $WORK/b/src/pipe.img || { echo "socat copy differs!" >&2; exit 1; }
  rm -f $WORK/b/src/pipe.img
  [[ ${QUICK:-0} == 1 ]] && continue

  # Both copies on the one disk: the baseline is a dd copy on it.
  drop_caches
  t=$(now); dd if=$WORK/a/src/dense.img of=$WORK/disk-copy.img bs=1M iflag=direct oflag=direct status=none; s=$(elapsed $t)
  record ddcopy_s $s
  rm -f $WORK/disk-copy.img
  drop_caches
  t=$(now); id=$(TARGET=$DISK_TARGET migrate_start dense.img); s=$(wait_for $id completed $t)
  record migratefs_samedisk_s $s
  ctl finish $id >/dev/null; ctl release $id >/dev/null
  cmp $WORK/a/src/dense.img $WORK/c/src/dense.img || { echo "copies differ!" >&2; exit 1; }
  rm -f $WORK/c/src/dense.img
done
rm -f $WORK/rsync/dense.img

if [[ ${PROFILE:-0} == 1 ]]; then
  echo "== perf profile of one bulk copy (whole machine, both daemons, kernel included)"
  drop_caches; rm -f $WORK/b/src/dense.img
  perf record -a -g -F 499 -o $WORK/perf.data 2>$WORK/perf.log &
  PERF=$!; sleep 0.5
  t=$(now); id=$(migrate_start dense.img); s=$(wait_for $id completed $t)
  kill -INT $PERF; wait $PERF || true
  ctl finish $id >/dev/null; ctl release $id >/dev/null
  cmp $WORK/a/src/dense.img $WORK/b/src/dense.img || { echo "copies differ!" >&2; exit 1; }
  rm -f $WORK/b/src/dense.img
  {
    echo "# Where the CPU goes during a bulk copy"
    echo
    echo "Run $(date -u +%Y-%m-%dT%H:%MZ), \`PROFILE=1 SIZE_GB=$SIZE_GB bash bench/transfer/run.sh\`: \`perf record -a -g -F 499\`"
    echo "over one ${SIZE_GB} GiB daemon-to-daemon copy on loopback ($s s), target on tmpfs. Load before: $LOAD_START."
    echo
    echo "## By process and DSO (self time, % of all samples)"
    echo
    echo '```'
    perf report -i $WORK/perf.data --no-children --sort comm,dso --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -25 || true
    echo '```'
    echo
    echo "## Top symbols (self time)"
    echo
    echo '```'
    perf report -i $WORK/perf.data --no-children --sort comm,sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -40 || true
    echo '```'
  } > $BENCH_ROOT/bench/transfer/PROFILE.md
  rm -f $WORK/perf.data
fi

if [[ ${QUICK:-0} == 1 ]]; then
  daemons_stop
  med() { awk -v k="$1" '$1==k{print $2}' $RES | median; }
  DD=$(med dd_MBps); TCP=$(med tcp_MBps); MFS_S=$(med migratefs_s); PIPE_S=$(med pipeline_s); SF_S=$(med socatfile_s)
  echo "quick: dd $DD MB/s, tcp $TCP MB/s, dd|socat pipeline ${PIPE_S} s, socat file-to-file ${SF_S} s," \
       "migratefs ${MFS_S} s: $(ratio $PIPE_S $MFS_S)x dd|socat, $(ratio $SF_S $MFS_S)x socat file-to-file"
  echo "load at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  cat $RES
  exit 0
fi

echo "== sparse: 64 GiB holding 1 GiB of data vs a 1 GiB dense image"
truncate -s 64G $WORK/a/src/sparse.img
for i in $(seq 0 63); do
  dd if=$WORK/a/src/dense.img of=$WORK/a/src/sparse.img bs=16M count=1 skip=$i seek=$((i * 64)) conv=notrunc status=none
done
head -c 1G $WORK/a/src/dense.img > $WORK/a/src/dense1.img
for rep in $(seq $REPS); do
  for img in dense1.img sparse.img; do
    drop_caches; rm -f $WORK/b/src/$img
    t=$(now); id=$(migrate_start $img); s=$(wait_for $id completed $t)
    record ${img%.img}_s $s
    ctl finish $id >/dev/null; ctl release $id >/dev/null
    cmp $WORK/a/src/$img $WORK/b/src/$img || { echo "copies differ!" >&2; exit 1; }
  done
done
rm -f $WORK/a/src/sparse.img $WORK/b/src/sparse.img $WORK/b/src/dense1.img

echo "== convergence: 4 GiB image, 110 MB/s network limit (~1 GbE), with and without a 30 MB/s random writer"
head -c 4G $WORK/a/src/dense.img > $WORK/a/src/vm4.img
rm -f $WORK/a/src/dense.img
for rep in $(seq $REPS); do
  drop_caches; rm -f $WORK/b/src/vm4.img
  t=$(now); id=$(migrate_start vm4.img --network-kbps 110000); s=$(wait_for $id mirror $t)
  record bulk4_s $s
  wait_for $id completed $t >/dev/null
  ctl finish $id >/dev/null; ctl release $id >/dev/null

  drop_caches; rm -f $WORK/b/src/vm4.img
  # The writer logs every write (completion ms since its start, size, offset), so the
  # unique bytes it dirtied between the start and phase 3 can be counted afterwards.
  t_fio=$(now)
  fio --name=vm --filename=$WORK/a/mnt/vm4.img --size=4G --rw=randwrite --bsrange=4k-256k --direct=1 \
      --ioengine=libaio --iodepth=8 --rate=30m --time_based=1 --runtime=600 --output=/dev/null \
      --write_lat_log=$WORK/wlog --log_offset=1 &
  FIO=$!
  sleep 2
  t=$(now); id=$(migrate_start vm4.img --network-kbps 110000); s=$(wait_for $id mirror $t)
  record writer4_to_mirror_s $s
  wait_for $id completed $t >/dev/null
  sent=$(ctl progress $id | field bytes_sent)
  img=$(stat -c %s $WORK/a/src/vm4.img)
  record writer4_sent_ratio $(awk "BEGIN{print $sent/$img}")

  # Phase-3 latency: 4 KiB O_DIRECT writes, queue depth 1, while mirroring (the
  # random writer stopped first so it does not queue in front).
  kill $FIO; wait $FIO 2>/dev/null || true   # fio writes its log as it exits
  from_ms=$(awk "BEGIN{printf \"%d\", ($t - $t_fio) * 1000}"); to_ms=$(awk "BEGIN{printf \"%d\", ($t + $s - $t_fio) * 1000}")
  unique=$(python3 "$BENCH_ROOT/bench/transfer/unique_bytes.py" $WORK/wlog_clat.1.log $from_ms $to_ms)
  rm -f $WORK/wlog_*.log
  record writer4_unique_dirty_bytes $unique
  record writer4_sent_over_needed $(awk "BEGIN{print $sent/($img + $unique)}")
  lat_json=$WORK/lat-mirror.json
  fio --name=lat --filename=$WORK/a/mnt/vm4.img --size=4G --rw=randwrite --bs=4k --direct=1 --ioengine=psync \
      --time_based=1 --runtime=8 --output-format=json --output=$lat_json
  ctl finish $id >/dev/null; ctl release $id >/dev/null
  fio --name=lat --filename=$WORK/a/mnt/vm4.img --size=4G --rw=randwrite --bs=4k --direct=1 --ioengine=psync \
      --time_based=1 --runtime=8 --output-format=json --output=$WORK/lat-plain.json
  for kind in mirror plain; do
    for pct in 50.000000 99.000000; do
      v=$(tr -d ' \n' < $WORK/lat-$kind.json | sed -n "s/.*\"write\":{.*\"clat_ns\":{[^}]*\"percentile\":{[^}]*\"$pct\":\([0-9]*\).*/\1/p")
      record lat_${kind}_p${pct%%.*}_us $(awk "BEGIN{print $v/1000}")
    done
  done
done
daemons_stop

med() { awk -v k="$1" '$1==k{print $2}' $RES | median; }
DD=$(med dd_MBps); TCP=$(med tcp_MBps); LIMIT=$(awk "BEGIN{print ($DD<$TCP)?$DD:$TCP}")
MFS_S=$(med migratefs_s); RSYNC_S=$(med rsync_s); DDCOPY_S=$(med ddcopy_s); SAME_S=$(med migratefs_samedisk_s)
mbps() { awk "BEGIN{print $IMG_BYTES/$1/1e6}"; }
PIPE_S=$(med pipeline_s); PIPE_MBPS=$(mbps $PIPE_S); SF_S=$(med socatfile_s); SF_MBPS=$(mbps $SF_S)
BEST_PIPE_MBPS=$(awk "BEGIN{print ($PIPE_MBPS>$SF_MBPS)?$PIPE_MBPS:$SF_MBPS}")
MFS_MBPS=$(mbps $MFS_S); RSYNC_MBPS=$(mbps $RSYNC_S); DDCOPY_MBPS=$(mbps $DDCOPY_S); SAME_MBPS=$(mbps $SAME_S)
D1=$(med dense1_s); SP=$(med sparse_s); B4=$(med bulk4_s); W4=$(med writer4_to_mirror_s); SR=$(med writer4_sent_ratio)
{
echo "# Transfer benchmark"
echo
echo "Run $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, kernel $(uname -r); load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg); medians of $REPS interleaved repetitions;"
echo "every ratio is against a baseline measured in the same run. Command: \`bash bench/transfer/run.sh\`"
echo "(SIZE_GB=$SIZE_GB REPS=$REPS)."
echo
echo "| measure | value | ratio | goal |"
echo "|---|---|---|---|"
echo "| disk read, dd iflag=direct of the ${SIZE_GB} GiB image | $(printf %.0f $DD) MB/s | | |"
echo "| TCP on loopback, iperf3 1 stream 5 s | $(printf %.0f $TCP) MB/s | | |"
echo "| minimal copy pipeline: dd iflag=direct bs=4M \\| socat → socat \\| dd, no checksums, target on tmpfs | $(printf %.0f $PIPE_MBPS) MB/s ($PIPE_S s) | | |"
echo "| same without pipes: socat -b 4M OPEN:img,o-direct → socat → CREATE:file, target on tmpfs | $(printf %.0f $SF_MBPS) MB/s ($SF_S s) | | |"
echo "| migratefs bulk copy daemon→daemon, default settings (XXH3 checksums on), target on tmpfs | $(printf %.0f $MFS_MBPS) MB/s ($MFS_S s) | $(ratio $MFS_MBPS $LIMIT)× min(disk, TCP); **$(ratio $MFS_MBPS $BEST_PIPE_MBPS)× the faster pipeline** | ≥ 0.9× pipeline |"
echo "| rsync --whole-file --inplace to an rsync daemon, destination on tmpfs | $(printf %.0f $RSYNC_MBPS) MB/s ($RSYNC_S s) | migratefs $(ratio $MFS_MBPS $RSYNC_MBPS)× rsync | ≥ 1.5× |"
echo "| both copies on the one disk: dd copy iflag=direct oflag=direct | $(printf %.0f $DDCOPY_MBPS) MB/s ($DDCOPY_S s) | | |"
echo "| both copies on the one disk: migratefs bulk copy | $(printf %.0f $SAME_MBPS) MB/s ($SAME_S s) | $(ratio $SAME_MBPS $DDCOPY_MBPS)× dd copy | |"
echo "| 64 GiB sparse image holding 1 GiB vs 1 GiB dense | $SP s vs $D1 s | $(ratio $SP $D1)× | ≤ 1.2× |"
echo "| 4 GiB at 110 MB/s limit: bulk alone vs to phase 3 under a 30 MB/s random writer | $B4 s vs $W4 s | $(ratio $W4 $B4)× | ≤ 1.2× |"
echo "| same: bytes sent / (image + unique bytes the writer dirtied before phase 3) | $(med writer4_sent_over_needed) (image alone: $SR) | | ≤ 1.3× |"
echo "| 4 KiB O_DIRECT write latency, psync qd1: p50 plain / mirrored | $(med lat_plain_p50_us) µs / $(med lat_mirror_p50_us) µs | $(ratio $(med lat_mirror_p50_us) $(med lat_plain_p50_us))× | |"
echo "| same, p99 plain / mirrored | $(med lat_plain_p99_us) µs / $(med lat_mirror_p99_us) µs | $(ratio $(med lat_mirror_p99_us) $(med lat_plain_p99_us))× | |"
echo
echo "Raw samples (name value):"
echo
echo '```'
cat $RES
echo '```'
} > $OUT
cat $OUT
