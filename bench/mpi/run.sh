#!/usr/bin/env bash
# run.sh EXAMPLE BENCH — `make bench-mpi`: for 10^6 and 10^7 rows (ROWS="..." to change) and
# 1, 2, 4 ranks, bench_mpi's JSON line (gradient throughput, NUTS ESS/s, peak memory per rank),
# then a table of the ratios to one rank. This machine has 2 cores: 4 ranks are oversubscribed
# (marked), so their speed says nothing about a cluster; their memory does.
set -euo pipefail
ex=$1 bench=$2
rows=${ROWS:-"1000000 10000000"}
tmp=${TMPDIR:-/tmp}/ember-bench-mpi
mkdir -p "$tmp"
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OPENBLAS_NUM_THREADS=1
cores=$(nproc)
log="$tmp/results.jsonl"
: > "$log"
for n in $rows; do
  data="$tmp/rows-$n.csv"
  [ -f "$data" ] || "$ex" --generate "$data" --rows "$n" >/dev/null
  for np in 1 2 4; do
    mpirun -np "$np" --oversubscribe "$bench" "$data" --warmup "${WARMUP:-150}" --samples "${SAMPLES:-150}" | tee -a "$log"
  done
done
python3 - "$log" "$cores" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
cores = int(sys.argv[2])
print("\n%10s %5s %12s %8s %9s %8s %12s %12s %s" % ("rows", "ranks", "rows/s", "speedup", "ESS/s", "speedup",
      "data/rank", "peak/rank", "note"))
for r in rows:
    base = next(b for b in rows if b["rows"] == r["rows"] and b["ranks"] == 1)
    data = r["rss_after_read_mib"] - r["rss_start_mib"]
    print("%10d %5d %12.4g %8.2f %9.1f %8.2f %10.1f MiB %10.1f MiB %s" % (
        r["rows"], r["ranks"], r["rows_per_s"], r["rows_per_s"] / base["rows_per_s"], r["ess_per_s"],
        r["ess_per_s"] / base["ess_per_s"], data, r["rss_peak_mib"],
        "oversubscribed (%d cores)" % cores if r["ranks"] > cores else ""))
PY
