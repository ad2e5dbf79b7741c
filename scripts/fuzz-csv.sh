#!/usr/bin/env bash
# fuzz-csv.sh — build the CSV reader's libFuzzer target (with ASan and UBSan) and run it.
#
#   scripts/fuzz-csv.sh [SECONDS]     (default 60)
#
# Seeds: tests/data/*.csv and the rugged data. The working corpus and any crash reproducers
# (crash-*, leak-*, timeout-*) go to build/fuzz/. Exits non-zero when the fuzzer finds a
# crash, a leak, a sanitizer report or a timeout.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
case $secs in ''|*[!0-9]*) echo "fuzz-csv.sh: SECONDS must be a whole number, got '$secs'" >&2; exit 2;; esac
CLANG=${CLANG:-clang}
out=build/fuzz
mkdir -p "$out/corpus"

"$CLANG" -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc \
    tests/fuzz/fuzz_csv.c src/io/csv.c src/core/core.c src/core/text.c -o "$out/fuzz_csv" -lgsl -lm -lpthread

cp tests/data/*.csv examples/bayesian_regression/data/rugged_data.csv "$out/corpus/"

# Tokens that matter to the grammar, so mutations reach quoting, line ends and numbers.
cat > "$out/csv.dict" <<'DICT'
"\x22"
"\x22\x22"
","
"\x0d\x0a"
"\x0d"
"\x0a"
"\xef\xbb\xbf"
"NA"
"NaN"
"nan"
"-inf"
"e+"
"e-308"
"1e400"
"#"
"a,b"
"lp__"
"name"
DICT

exec "$out/fuzz_csv" "$out/corpus" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -dict="$out/csv.dict" -artifact_prefix="$out/" -print_final_stats=1
