#!/usr/bin/env bash
# bench-brms.sh — `ember fit` against brms on the same formulas and data, in the same run: the
# end-to-end wall time (process start to printed summary, 4 chains x 1000 + 1000) against brms's
# compile plus sampling, and the smallest bulk ESS per second of sampling (summed over chains)
# against Stan's. Needs R with brms (scripts/install-deps.sh --with-brms); prints one JSON line
# per model, nothing asserts a time.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s all >/dev/null
if ! Rscript -e 'library(brms)' >/dev/null 2>&1; then
  echo '{"bench":"formula_vs_brms","skipped":"R with brms is not installed (scripts/install-deps.sh --with-brms)"}'
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
Rscript bench/brms/bench_brms.R data "$tmp" 2>/dev/null
now() { date +%s.%N; }
run() { # NAME DATA FORMULA FAMILY
  local t0 t1 ember_s ess samp brms
  t0=$(now)
  ./bin/ember fit "$tmp/$2" "$3" --family "$4" --quiet --seed 1 --out "$tmp/$1" > "$tmp/$1.txt"
  t1=$(now)
  ember_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  # the smallest bulk ESS over b_, sd_ and family parameters, and the chains' sampling seconds
  ess=$(awk -F, 'NR > 1 && ($1 ~ /^b_/ || $1 ~ /^sd_/ || $1 == "sigma" || $1 == "shape" || $1 == "nu") { if (m == "" || $7 < m) m = $7 } END { print m }' "$tmp/$1/summary.csv")
  samp=$(cat "$tmp/$1"/fit_*.csv | awk '/seconds \(Sampling\)/ { s += $2 } END { printf "%.6f", s }')
  brms=$(Rscript bench/brms/bench_brms.R fit "$tmp/$2" "$3" "$4" 2>/dev/null | tail -1)
  python3 - "$1" "$ember_s" "$ess" "$samp" "$brms" <<'PY'
import json, sys
name, ember_s, ess, samp, brms = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), json.loads(sys.argv[5])
brms_total = brms["compile_s"] + brms["sample_wall_s"]
e_rate, s_rate = ess / samp, brms["min_ess_bulk"] / brms["stan_sampling_s"]
print(json.dumps({"bench": "formula_vs_brms", "model": name, "ember_end_to_end_s": round(ember_s, 3),
                  "brms_compile_s": brms["compile_s"], "brms_sampling_wall_s": brms["sample_wall_s"],
                  "end_to_end_ratio": round(brms_total / ember_s, 1),
                  "ember_min_ess_per_s": round(e_rate, 1), "stan_min_ess_per_s": round(s_rate, 1),
                  "ess_per_s_ratio": round(e_rate / s_rate, 2)}))
PY
}
run logistic3000 logistic3000.csv "y ~ x1 + x2 + x3 + f" bernoulli
run vint900 vint900.csv "y ~ x + (1 | g)" gaussian
