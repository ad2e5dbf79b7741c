#!/usr/bin/env bash
# fuzz.sh — build every libFuzzer target in tests/fuzz/ (with ASan and UBSan) and run each one
# for a bounded time.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]    (default 60 seconds per target; every fuzz_*.c)
#   make fuzz FUZZ_SECONDS=...
#
# The library is compiled once per change with -fsanitize=fuzzer-no-link into build/fuzz/obj/
# and each target is linked against it. Seeds are tests/fuzz/corpus/<target>/ (small, never
# written) plus, for the CSV readers, tests/data/*.csv; the working corpus and any crash
# reproducers (crash-*, leak-*, timeout-*) go to build/fuzz/<target>/, and the dictionary is
# tests/fuzz/<target>.dict. Every target runs even when one fails; the last lines (also in
# build/fuzz/summary.txt) give each target's executions. Exits non-zero when any target found
# a crash, a leak, a sanitizer report or a timeout.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
case $secs in ''|*[!0-9]*) echo "fuzz.sh: SECONDS must be a whole number, got '$secs'" >&2; exit 2;; esac
shift || true
if [ $# -gt 0 ]; then targets=("$@"); else
  targets=()
  for f in tests/fuzz/fuzz_*.c; do t=${f##*/}; targets+=("${t%.c}"); done
fi
for t in "${targets[@]}"; do
  [ -f "tests/fuzz/$t.c" ] || { echo "fuzz.sh: no target tests/fuzz/$t.c" >&2; exit 2; }
done

CLANG=${CLANG:-clang}
out=build/fuzz
multiarch=$("$CLANG" -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
flags=(-std=c11 -g -O1 -Wno-psabi -fsanitize=address,undefined -fno-sanitize-recover=undefined -D_POSIX_C_SOURCE=200809L
       -Iinclude -Isrc "-I/usr/include/$multiarch/openblas-pthread")
libs=(-lgsl -lopenblas -llapacke -lm -lpthread)

# The library, rebuilt where a source or any header is newer than its object, two files at a time.
newest_header=$(ls -t include/*.h include/ember/*.h src/internal/*.h | head -n 1)
compile() {
  mkdir -p "$(dirname "$2")"
  rm -f "$2" # a failed compile leaves no stale object for the link to pick up
  "$CLANG" "${flags[@]}" -fsanitize=fuzzer-no-link -c "$1" -o "$2"
}
objs=()
running=0
for src in src/*/*.c; do
  case $src in src/mpi/*) continue ;; esac # the MPI layer is a library of its own (needs mpicc)
  obj=$out/obj/${src#src/}
  obj=${obj%.c}.o
  objs+=("$obj")
  if ! [ "$obj" -nt "$src" ] || ! [ "$obj" -nt "$newest_header" ]; then
    compile "$src" "$obj" &
    running=$((running + 1))
    if [ "$running" -ge 2 ]; then wait -n; running=$((running - 1)); fi
  fi
done
while [ "$running" -gt 0 ]; do wait -n; running=$((running - 1)); done

status=0
summary=()
for t in "${targets[@]}"; do
  dir=$out/$t
  mkdir -p "$dir/corpus"
  "$CLANG" "${flags[@]}" -fsanitize=fuzzer "tests/fuzz/$t.c" "${objs[@]}" -o "$dir/$t" "${libs[@]}"
  cp tests/fuzz/corpus/"$t"/* "$dir/corpus/"
  case $t in fuzz_csv|fuzz_cmdstan) cp tests/data/*.csv "$dir/corpus/";; esac
  dict=()
  [ -f "tests/fuzz/$t.dict" ] && dict=("-dict=tests/fuzz/$t.dict")
  echo "== $t: ${secs} s"
  set +e
  "$dir/$t" "$dir/corpus" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 "${dict[@]}" \
      -artifact_prefix="$dir/" -print_final_stats=1 2>&1 | tee "$dir/log"
  rc=${PIPESTATUS[0]}
  set -e
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -n 1)
  summary+=("$t: ${runs:-?} executions in $secs s, $(ls "$dir/corpus" | wc -l) corpus inputs, exit $rc")
  [ "$rc" = 0 ] || status=1
done
printf '%s\n' "${summary[@]}" | tee "$out/summary.txt"
exit $status
