#!/usr/bin/env bash
# test_readme.sh — the program in README.md's "A model" section compiles against the library
# as printed there and fits a regression whose coefficients it recovers.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${EMBER_BUILD:-build/rel}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
awk '/^## A model/ { inside = 1 } inside && /^```c/ { code = 1; next } code && /^```/ { exit } code' README.md \
  > "$tmp/body.c"
[ -s "$tmp/body.c" ] || { echo "FAIL: no C block in README.md's 'A model' section" >&2; exit 1; }
printf '#include <stdio.h>\n#include <stdlib.h>\n' | cat - "$tmp/body.c" > "$tmp/fit.c"
extra=""
if [ "${SANITIZE:-0}" = "1" ]; then extra="-fsanitize=address,undefined"; fi
# shellcheck disable=SC2086
${CC:-cc} -std=c11 -Wall -Wextra -Werror $extra -Iinclude -I/usr/include/$(${CC:-cc} -print-multiarch)/openblas-pthread \
  "$tmp/fit.c" "$build/lib/libember.a" -lgsl -lopenblas -llapacke -lm -lpthread -o "$tmp/fit"
# y = 1 + 2 x1 - x2 + noise(0.5), 200 rows from a fixed linear congruential generator
awk 'BEGIN { s = 12345; print "x1,x2,y"
  for (i = 0; i < 200; i++) { for (k = 0; k < 3; k++) { z = 0; for (j = 0; j < 12; j++) { s = (s * 1103515245 + 12345) % 2147483648; z += s / 2147483648 } v[k] = z - 6 }
    printf "%.6f,%.6f,%.6f\n", v[0], v[1], 1 + 2 * v[0] - v[1] + 0.5 * v[2] } }' > "$tmp/data.csv"
(cd "$tmp" && ./fit data.csv) > "$tmp/out"
fail() { echo "FAIL: $*" >&2; cat "$tmp/out" >&2; exit 1; }
awk '$1 == "beta.1" { f1 = ($2 > 1.85 && $2 < 2.15) } $1 == "beta.2" { f2 = ($2 > -1.15 && $2 < -0.85) }
     END { exit !(f1 && f2) }' "$tmp/out" || fail "the README program did not recover beta = (2, -1)"
[ -s "$tmp/fit_4.csv" ] || fail "the README program wrote no fit_4.csv"
echo "test_readme.sh: the README's program compiles, fits and writes its files"
