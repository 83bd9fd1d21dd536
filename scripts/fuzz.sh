#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, -DMIGRATEFS_FUZZ=ON) in a separate build
# directory and runs every *_fuzz binary found there for SECONDS seconds each.
#
#   scripts/fuzz.sh [SECONDS]        (default 30; env: BUILD_DIR, JOBS, CORPUS_DIR)
#
# Each target keeps its corpus in $CORPUS_DIR/<target>/ (default build-fuzz/corpus),
# so later runs start where earlier ones stopped. Crashes are written to
# $BUILD_DIR/artifacts/<target>/ and make the script exit non-zero.
set -euo pipefail

SECONDS_PER_TARGET="${1:-30}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build-fuzz}"
JOBS="${JOBS:-2}"
CORPUS_DIR="${CORPUS_DIR:-$BUILD_DIR/corpus}"

command -v clang >/dev/null && command -v clang++ >/dev/null || {
  echo "fuzz.sh: clang/clang++ not found" >&2
  exit 2
}

CC=clang CXX=clang++ cmake -S "$ROOT" -B "$BUILD_DIR" -DMIGRATEFS_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null

# Build only the fuzz targets (their names end in _fuzz), not the whole tree.
mapfile -t TARGETS < <(cmake --build "$BUILD_DIR" --target help | sed -n 's/^\.\.\. \([A-Za-z0-9_]*_fuzz\)\b.*/\1/p' | sort -u)
if [ "${#TARGETS[@]}" -eq 0 ]; then
  echo "fuzz.sh: no *_fuzz targets configured (is the compiler clang?)" >&2
  exit 2
fi
cmake --build "$BUILD_DIR" -j"$JOBS" --target "${TARGETS[@]}"

status=0
while IFS= read -r bin; do
  name="$(basename "$bin")"
  mkdir -p "$CORPUS_DIR/$name" "$BUILD_DIR/artifacts/$name"
  echo "=== $name: ${SECONDS_PER_TARGET}s"
  if ! "$bin" -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 \
      -artifact_prefix="$BUILD_DIR/artifacts/$name/" "$CORPUS_DIR/$name"; then
    echo "=== $name: FAILED (see $BUILD_DIR/artifacts/$name/)" >&2
    status=1
  fi
done < <(find "$BUILD_DIR" -type f -name '*_fuzz' -perm -u+x | sort)
exit $status
