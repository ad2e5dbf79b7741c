#!/usr/bin/env bash
# test_signals.sh — SIGINT and SIGTERM at random moments of a NUTS run of the example that
# writes CSV files, five trials each: whatever the moment (sampling, writing the chains,
# summarising), every CSV file that exists must parse as whole rows — a header, then rows
# with as many numeric fields as the header — and no temporary file may be left behind.
set -euo pipefail
cd "$(dirname "$0")/.."
ex=examples/bayesian_regression
san=${SANITIZE:-0}
make -s "$ex/rugged" SANITIZE="$san" >/dev/null
bin=$PWD/$ex/rugged
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

# Every line of a CmdStan or summary CSV that is not a comment: the header, then rows of the
# header's width whose fields are numbers (or a quoted/plain name in the first column of a
# summary); the file ends with a newline.
# (Other CSV files, such as predictive.csv with its text columns, must hold whole rows.)
check_csv() {
  local f=$1 numeric=1
  case ${f##*/} in nuts_chain_*.csv | summary_*.csv) ;; *) numeric=0 ;; esac
  [ -s "$f" ] || { echo "empty"; return; }
  [ "$(tail -c 1 "$f" | od -An -c | tr -d ' ')" = '\n' ] || { echo "no final newline (a cut row)"; return; }
  awk -F, -v numeric="$numeric" '
    /^#/ { next }
    !w { w = NF; next }
    NF != w { printf "line %d has %d fields, the header %d\n", NR, NF, w; bad = 1; exit }
    numeric { for (i = 2; i <= NF; i++)
        if ($i !~ /^-?(nan|inf|[0-9.]+([eE][-+]?[0-9]+)?)$/) { printf "line %d field %d: %s\n", NR, i, $i; bad = 1; exit } }
    END { if (!w && !bad) print "no header" }' "$f"
}

# A run long enough to write big files; the moment is uniform over its whole length as measured
# by one uninterrupted run (startup, warmup, sampling, writing the chains, summarising, predicting).
args=(--method nuts --chains 2 --samples 3000 --warmup 200 --folds 0 --no-figures --quiet)
t0=$(date +%s%N)
(cd "$ex" && "$bin" --out "$tmp/full" "${args[@]}" >/dev/null 2>&1) || fail "the uninterrupted run failed"
max_ms=$((($(date +%s%N) - t0) / 1000000))
echo "an uninterrupted run takes $max_ms ms"
trial=0
for sig in INT TERM; do
  for k in 1 2 3 4 5; do
    trial=$((trial + 1))
    out=$tmp/t$trial
    (cd "$ex" && exec "$bin" --out "$out" "${args[@]}" --seed "$trial" >"$tmp/t$trial.out" 2>"$tmp/t$trial.err") &
    pid=$!
    ms=$((RANDOM % max_ms))
    sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
    kill -"$sig" "$pid" 2>/dev/null || true
    rc=0
    wait "$pid" || rc=$?
    # 130: stopped by the library's handler; 128+signal: killed before or after it was installed
    case $rc in 0|130|$((128 + $(kill -l "$sig")))) ;; *) fail "SIG$sig after $ms ms: exit $rc: $(tail -3 "$tmp/t$trial.err")";; esac
    if [ -d "$out" ]; then
      left=$(find "$out" -name '*.tmp.*' | head -3)
      [ -z "$left" ] || fail "SIG$sig after $ms ms: temporary files left: $left"
      for f in "$out"/*.csv; do
        [ -e "$f" ] || continue
        why=$(check_csv "$f")
        [ -z "$why" ] || fail "SIG$sig after $ms ms: ${f##*/}: $why"
      done
    fi
    echo "ok: SIG$sig after $ms ms: exit $rc, $(ls "$out" 2>/dev/null | wc -l) file(s) checked"
  done
done

if [ "$fails" -gt 0 ]; then
  echo "test_signals.sh: $fails check(s) failed" >&2
  exit 1
fi
echo "test_signals.sh: all checks passed"
