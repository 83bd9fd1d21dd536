#!/usr/bin/env bash
# Fig. 4 of seed 004: SLA-violation periods vs network load, for "no scheduling"
# (policy none) and the broker policy with deadlines of 200, 350 and 800 s.
#
#   bench/sim/sweep.sh [SCENARIO]     (default bench/scenarios/paper.toml)
#
# Env: SIM=path/to/migratefs-sim (default: build-sim/, then build/), LOADS="5 6 .. 25",
#      SEEDS="1 2 3 4 5", OUT=bench/sim (where runs.csv, fig4.csv and fig4.png go).
# Writes OUT/runs.csv (one line per run), OUT/fig4.csv (mean over seeds, one line per
# load) and OUT/fig4.png. Needs jq and gnuplot.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SCENARIO="${1:-$ROOT/bench/scenarios/paper.toml}"
OUT="${OUT:-$ROOT/bench/sim}"
LOADS="${LOADS:-$(seq -s ' ' 5 25)}"
SEEDS="${SEEDS:-1 2 3 4 5}"
if [[ -z "${SIM:-}" ]]; then
  for c in "$ROOT/build-sim/migratefs-sim" "$ROOT/build/migratefs-sim"; do
    [[ -x "$c" ]] && SIM="$c" && break
  done
fi
[[ -x "${SIM:-}" ]] || { echo "sweep.sh: build migratefs-sim first or set SIM=" >&2; exit 2; }

RUNS="$OUT/runs.csv"
echo "load_pct,policy,deadline_s,seed,sla_violation_periods,missed_deadlines,tasks,migration_time_mean_s,time_network_limited_s,time_disk_limited_s" > "$RUNS"
run() {  # load policy deadline seed
  "$SIM" "$SCENARIO" --load "$1" --policy "$2" --deadline "$3" --seed "$4" --json |
    jq -r --arg d "$3" '[.load_pct, .policy, ($d|tonumber), .seed, .sla_violation_periods,
      .missed_deadlines, .tasks, .migration_time_s.mean, .time_network_limited_s,
      .time_disk_limited_s] | @csv' | tr -d '"' >> "$RUNS"
}
start=$(date +%s.%N)
for load in $LOADS; do
  for seed in $SEEDS; do
    for d in 200 350 800; do
      run "$load" none "$d" "$seed"  # deadlines do not steer "none", only count its misses
      run "$load" broker "$d" "$seed"
    done
  done
done
elapsed=$(echo "$(date +%s.%N) - $start" | bc)

# Mean over seeds, one column per curve.
awk -F, 'NR > 1 {
    key = $2 $3
    v[$1 "," key] += $5; m[$1 "," key] += $6; n[$1 "," key]++; loads[$1] = 1 }
  END {
    print "load_pct,none,broker_200,broker_350,broker_800," \
          "missed_none_200,missed_broker_200,missed_none_350,missed_broker_350," \
          "missed_none_800,missed_broker_800"
    for (l in loads) {
      line = l
      split("none350 broker200 broker350 broker800", ks, " ")  # none: same for every deadline
      for (i = 1; i <= 4; i++) line = line "," v[l "," ks[i]] / n[l "," ks[i]]
      split("none200 broker200 none350 broker350 none800 broker800", ks, " ")
      for (i = 1; i <= 6; i++) line = line "," m[l "," ks[i]] / n[l "," ks[i]]
      print line
    }
  }' "$RUNS" | (read -r header; echo "$header"; sort -t, -k1,1n) > "$OUT/fig4.csv"

gnuplot <<GP
set terminal pngcairo size 800,500 font "sans,11"
set output "$OUT/fig4.png"
set datafile separator ","
set key top left
set grid
set xlabel "network load (% of machines starting a shortage per 60 s period)"
set ylabel "SLA violation periods (machine-periods)"
set title "migratefs-sim, $(basename "$SCENARIO"): seeds $SEEDS (mean)"
plot "$OUT/fig4.csv" every ::1 using 1:2 with linespoints lw 2 title "No Scheduling", \
     "" every ::1 using 1:3 with linespoints lw 2 title "broker, deadline 200 s", \
     "" every ::1 using 1:4 with linespoints lw 2 title "broker, deadline 350 s", \
     "" every ::1 using 1:5 with linespoints lw 2 title "broker, deadline 800 s"
GP
runs=$(( $(wc -l < "$RUNS") - 1 ))
echo "sweep.sh: $runs runs in ${elapsed}s -> $OUT/fig4.csv, $OUT/fig4.png, $RUNS"
column -s, -t "$OUT/fig4.csv"
