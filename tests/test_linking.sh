#!/usr/bin/env bash
# test_linking.sh — the linking example as a user runs it: install Ember into a temporary
# prefix, build examples/linking/linking.c with pkg-config, run it, and check its summary and
# its CmdStan CSV files.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

make -s install PREFIX="$tmp/prefix" SANITIZE="${SANITIZE:-0}" >/dev/null
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
extra=""
if [ "${SANITIZE:-0}" = "1" ]; then extra="-fsanitize=address,undefined"; fi
# shellcheck disable=SC2046
${CC:-cc} -std=c11 -Wall -Wextra -Werror $extra examples/linking/linking.c $(pkg-config --cflags --libs ember) \
  -o "$tmp/linking"
mkdir "$tmp/out"
"$tmp/linking" "$tmp/out" >"$tmp/stdout"

fail() { echo "FAIL: $*" >&2; cat "$tmp/stdout" >&2; exit 1; }
# the slope of the eight points is close to 2 (least squares: 1.986)
awk '$1 == "beta" { found = 1; if ($2 < 1.9 || $2 > 2.1) exit 1 } END { exit !found }' "$tmp/stdout" ||
  fail "beta's posterior mean is not near 2"
grep -q "^divergent transitions: " "$tmp/stdout" || fail "no divergence count"
header='lp__,accept_stat__,stepsize__,treedepth__,n_leapfrog__,divergent__,energy__,alpha,beta,sigma'
for k in 1 2 3 4; do
  f=$tmp/out/line_$k.csv
  [ -s "$f" ] || fail "line_$k.csv not written"
  [ "$(grep -v '^#' "$f" | head -1)" = "$header" ] || fail "line_$k.csv: wrong column header"
  grep -q "^# Step size = " "$f" || fail "line_$k.csv: no adaptation block"
  grep -q "Elapsed Time" "$f" || fail "line_$k.csv: no timing footer"
  rows=$(grep -v '^#' "$f" | tail -n +2 | awk -F, 'NF == 10' | wc -l)
  [ "$rows" = 1000 ] || fail "line_$k.csv: $rows draws of 10 columns, expected 1000"
done
echo "linking example OK: built with pkg-config, $(awk '$1 == "beta" { print "beta mean " $2 }' "$tmp/stdout"), 4 chain files"
