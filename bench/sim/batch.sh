#!/usr/bin/env bash
# Issue 11, item 6: batches of migrations on one link in migratefs-sim --batch.
#  1. seed 003's trade-off: serial vs gang as one migration stream's ceiling varies
#     (bench/sim/scenarios/batch_tradeoff.toml): makespan and total phase-3 time
#  2. seed 000's allocation vs equal shares on the seed's 3- and 5-VM rows
#     (bench/sim/scenarios/batch_seed000.toml), in the seed's static model and
#     work-conserving (rates re-shared when one ends, or every period)
#  3. seed 003's classes on a link with a workload (70 MB/s wanted; reservation 30..60)
#
#   bench/sim/batch.sh
#
# Env: SIM=path/to/migratefs-sim (default: build-h1/, build-sim/, then build/),
#      OUT=bench/sim. Writes OUT/batch_tradeoff.csv, OUT/batch_tradeoff.png,
#      OUT/batch_alloc.csv, OUT/batch_alloc.png, OUT/batch_classes.csv and prints
#      markdown tables. Needs jq and gnuplot.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${OUT:-$ROOT/bench/sim}"
if [[ -z "${SIM:-}" ]]; then
  for c in "$ROOT/build-h1/migratefs-sim" "$ROOT/build-sim/migratefs-sim" "$ROOT/build/migratefs-sim"; do
    [[ -x "$c" ]] && SIM="$c" && break
  done
fi
[[ -x "${SIM:-}" ]] || { echo "batch.sh: build migratefs-sim first or set SIM=" >&2; exit 2; }
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# 1. Trade-off.
TRADE="$OUT/batch_tradeoff.csv"
echo "stream_max_mb_s,strategy,makespan_s,sum_completion_s,total_downtime_s,max_downtime_s" > "$TRADE"
for cap in 25 40 60 90 125; do
  sed "s/^stream_max_mb_s = .*/stream_max_mb_s = $cap/" "$ROOT/bench/sim/scenarios/batch_tradeoff.toml" > "$TMP/t.toml"
  for st in gang serial; do
    "$SIM" --batch "$TMP/t.toml" --strategy "$st" --json |
      jq -r --arg c "$cap" '[($c|tonumber), .strategy, .makespan_s, .sum_completion_s, .total_downtime_s,
        .max_downtime_s] | @csv' | tr -d '"' >> "$TRADE"
  done
done
gnuplot <<GP
set terminal pngcairo size 1000,420
set output "$OUT/batch_tradeoff.png"
set datafile separator ","
set multiplot layout 1,2 title "5 VMs on a 125 MB/s link (seed 003): serial vs gang"
set xlabel "one migration stream's ceiling, MB/s"
set key top right
set ylabel "makespan, s"
plot "< grep ',gang,' $TRADE" using 1:3 with linespoints title "gang", \
     "< grep ',serial,' $TRADE" using 1:3 with linespoints title "serial"
set ylabel "total phase-3 time (downtime), s"
plot "< grep ',gang,' $TRADE" using 1:5 with linespoints title "gang", \
     "< grep ',serial,' $TRADE" using 1:5 with linespoints title "serial"
unset multiplot
GP

# 2. Allocation.
ALLOC="$OUT/batch_alloc.csv"
echo "row,model,allocation,sum_completion_s,makespan_s,total_downtime_s" > "$ALLOC"
three='[[vm]]\nsize_mb = 500.02\ndirty_mb_s = 10.24\n[[vm]]\nsize_mb = 479.92\ndirty_mb_s = 10.24\n[[vm]]\nsize_mb = 904.72\ndirty_mb_s = 10.24\n'
sed '/^\[\[vm\]\]/,$d' "$ROOT/bench/sim/scenarios/batch_seed000.toml" > "$TMP/three.toml"
printf "$three" >> "$TMP/three.toml"
cp "$ROOT/bench/sim/scenarios/batch_seed000.toml" "$TMP/five.toml"
for row in three five; do
  for model in static resplit period1; do
    case $model in
      static) extra="resplit = false" ;;
      resplit) extra="resplit = true" ;;
      period1) extra="resplit = true\nperiod_s = 1" ;;
    esac
    sed "s/^allocation = .*/&\n$extra/" "$TMP/$row.toml" > "$TMP/r.toml"
    for a in equal optimal; do
      "$SIM" --batch "$TMP/r.toml" --allocation "$a" --json |
        jq -r --arg r "$row" --arg m "$model" '[$r, $m, .allocation, .sum_completion_s, .makespan_s,
          .total_downtime_s] | @csv' | tr -d '"' >> "$ALLOC"
    done
  done
done

gnuplot <<GP
set terminal pngcairo size 800,420
set output "$OUT/batch_alloc.png"
set datafile separator ","
set title "seed 000's rates vs equal shares, 5-VM row (125 MB/s, D = 10.24 MB/s, n = 3)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set ylabel "sum of completion times, s"
set yrange [0:*]
set key outside bottom center horizontal
plot "< grep '^five,' $ALLOC | grep ',equal,'" using 4:xtic(2) title "equal shares", \
     "< grep '^five,' $ALLOC | grep ',optimal,'" using 4 title "seed 000 optimal"
GP

# 3. Classes and the workload's reservation.
CLASSES="$OUT/batch_classes.csv"
echo "class,makespan_s,total_downtime_s,workload_min_mb_s" > "$CLASSES"
for cls in high medium low; do
  sed -e "s/^priority = .*/priority = \"$cls\"/" -e "s/^stream_max_mb_s = .*/stream_max_mb_s = 0/" \
      -e "s/^capacity_mb_s = 125/capacity_mb_s = 125\nworkload_mb_s = 70\nworkload_min_mb_s = 30\nworkload_max_mb_s = 60/" \
      "$ROOT/bench/sim/scenarios/batch_tradeoff.toml" > "$TMP/c.toml"
  "$SIM" --batch "$TMP/c.toml" --strategy gang --json |
    jq -r --arg c "$cls" '[$c, .makespan_s, .total_downtime_s, .workload_min_mb_s] | @csv' | tr -d '"' >> "$CLASSES"
done

echo "### serial vs gang (5 VMs, 125 MB/s, n = 3, 8 MB/s dirty, 1024 MB RAM each, low priority)"
echo
echo "| stream ceiling MB/s | gang makespan s | serial makespan s | gang total downtime s | serial total downtime s |"
echo "|---|---|---|---|---|"
awk -F, 'NR>1 { k=$1; if ($2=="gang") { gm[k]=$3; gd[k]=$5 } else { sm[k]=$3; sd[k]=$5 }; if (!(k in seen)) { seen[k]=1; order[++n]=k } }
  END { for (i=1;i<=n;i++) { k=order[i];
    printf "| %s | %.1f | %.1f | %.1f | %.1f |\n", k, gm[k], sm[k], gd[k], sd[k] } }' "$TRADE"
echo
echo "### seed 000's rates vs equal shares (gang, 125 MB/s, D = 10.24 MB/s, n = 3)"
echo
echo "| row | model | equal: sum of completions s | optimal: sum s | equal: makespan s | optimal: makespan s |"
echo "|---|---|---|---|---|---|"
awk -F, 'NR>1 { k=$1","$2; if ($3=="equal") { es[k]=$4; em[k]=$5 } else { os[k]=$4; om[k]=$5 }; if (!(k in seen)) { seen[k]=1; order[++n]=k } }
  END { for (i=1;i<=n;i++) { k=order[i]; split(k, p, ",");
    printf "| %s VMs | %s | %.2f | %.2f | %.2f | %.2f |\n", (p[1]=="three"?"3":"5"), p[2], es[k], os[k], em[k], om[k] } }' "$ALLOC"
echo
echo "### classes on a link with a workload (gang of the 5 VMs, 125 MB/s, workload wants 70 MB/s, reservation 30..60 MB/s)"
echo
echo "| class | makespan s | total downtime s | workload's lowest MB/s |"
echo "|---|---|---|---|"
awk -F, 'NR>1 { printf "| %s | %.1f | %.1f | %.1f |\n", $1, $2, $3, $4 }' "$CLASSES"
