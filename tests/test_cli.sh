#!/usr/bin/env bash
# test_cli.sh — the `ember` command as a user runs it: installed into a prefix beside the
# library, `ember fit` on a CSV file with a formula (brms's summary, CmdStan files with brms's
# names that `ember summary` reads back), its errors (a caret under a formula's mistake, an
# unknown column named with the nearest ones) and its exit codes (0, 1, 2); an ordinal and a
# censored survival family.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
make -s install PREFIX="$tmp/prefix" SANITIZE="${SANITIZE:-0}" >/dev/null
ember="$tmp/prefix/bin/ember"
[ -x "$ember" ] || { echo "FAIL: make install put no bin/ember in the prefix" >&2; exit 1; }
fail() { echo "FAIL: $*" >&2; exit 1; }

# 120 rows: y = 1 + 0.5 x + a group effect + noise, a factor trt with three levels
awk 'BEGIN { s = 7; print "y,x,trt,g"
  for (i = 0; i < 120; i++) { for (k = 0; k < 3; k++) { z = 0; for (j = 0; j < 12; j++) { s = (s * 1103515245 + 12345) % 2147483648; z += s / 2147483648 } v[k] = z - 6 }
    g = i % 6; t = (i % 3 == 0) ? "ctl" : (i % 3 == 1) ? "drugA" : "drugB"
    printf "%.5f,%.5f,%s,G%d\n", 1 + 0.5 * v[0] + 0.3 * (g - 2.5) + (t == "drugA" ? 0.8 : 0) + 0.5 * v[1], v[0], t, g } }' > "$tmp/d.csv"

"$ember" fit "$tmp/d.csv" "y ~ x + trt + (1 | g)" --chains 2 --samples 500 --warmup 500 --seed 3 --quiet \
  --out "$tmp/out" > "$tmp/fit.txt" || fail "ember fit failed: $(cat "$tmp/fit.txt")"
for want in " Family: gaussian" "Group-Level Effects:" "~g (Number of levels: 6)" "sd(Intercept)" \
            "Population-Level Effects:" "trtdrugA" "Family Specific Parameters:" "Bulk_ESS"; do
  grep -qF -- "$want" "$tmp/fit.txt" || fail "the summary lacks '$want': $(cat "$tmp/fit.txt")"
done
awk '$1 == "x" { ok = ($2 > 0.35 && $2 < 0.65) } END { exit !ok }' "$tmp/fit.txt" || fail "the slope of x is not near 0.5"
[ -s "$tmp/out/fit_1.csv" ] && [ -s "$tmp/out/fit_2.csv" ] && [ -s "$tmp/out/summary.csv" ] || fail "files missing in --out"
header=$(awk '!/^#/ { print; exit }' "$tmp/out/fit_1.csv")
case "$header" in
  lp__,*,energy__,b_Intercept,b_x,b_trtdrugA,b_trtdrugB,sd_g__Intercept,sigma,r_g\[G0.Intercept\],*) ;;
  *) fail "fit_1.csv has not brms's names: $(echo "$header" | cut -c1-200)" ;;
esac
"$ember" summary "$tmp/out/fit_1.csv" "$tmp/out/fit_2.csv" > "$tmp/sum.txt" || fail "ember summary failed"
grep -q "^b_x " "$tmp/sum.txt" && grep -q "NUTS: 2 chains x 500 draws" "$tmp/sum.txt" || fail "ember summary: $(cat "$tmp/sum.txt")"

# PSIS-LOO of two models and their comparison
"$ember" fit "$tmp/d.csv" "y ~ x + trt + (1 | g)" --chains 2 --samples 500 --warmup 500 --quiet --loo --out "$tmp/m1" > "$tmp/l1.txt"
"$ember" fit "$tmp/d.csv" "y ~ x" --chains 2 --samples 500 --warmup 500 --quiet --loo --out "$tmp/m2" > /dev/null
grep -q "^Computed from 1000 by 120 log-likelihood matrix" "$tmp/l1.txt" && [ -s "$tmp/m1/loo.csv" ] || fail "--loo: $(tail -12 "$tmp/l1.txt")"
"$ember" loo-compare "$tmp/m1" "$tmp/m2" > "$tmp/cmp.txt" || fail "loo-compare failed"
awk 'NR == 1 { ok = ($1 == "elpd_diff") } NR == 2 { best = ($1 ~ /m1$/ && $2 == "0.0") } NR == 3 { worse = ($2 < 0) } END { exit !(ok && best && worse) }' \
  "$tmp/cmp.txt" || fail "loo-compare: the model with trt and groups should be best: $(cat "$tmp/cmp.txt")"

# issue 16's families: an ordinal probit regression (--family as brms writes it) and a
# right-censored Weibull one with its predictive check and LOO
awk -F, 'NR == 1 { print "rating,x,time,status"; next }
  { r = 1 + ($1 > 0.6) + ($1 > 1.4); t = exp($1 / 2); printf "%d,%s,%.5f,%s\n", r, $2, t, (NR % 4 == 0) ? "right" : "none" }' \
  "$tmp/d.csv" > "$tmp/o.csv"
"$ember" fit "$tmp/o.csv" "rating ~ x" --family 'cumulative("probit")' --chains 1 --samples 300 --warmup 300 --quiet \
  --out "$tmp/ord" > "$tmp/ord.txt" || fail "ordinal fit failed: $(cat "$tmp/ord.txt")"
for want in " Family: cumulative" "Links: mu = probit; disc = identity" "Intercept[1]" "Intercept[2]"; do
  grep -qF -- "$want" "$tmp/ord.txt" || fail "the ordinal summary lacks '$want': $(cat "$tmp/ord.txt")"
done
grep -q "b_Intercept\[1\],b_Intercept\[2\],b_x" "$tmp/ord/fit_1.csv" || fail "fit_1.csv lacks brms's threshold names"
"$ember" fit "$tmp/o.csv" "time | cens(status) ~ x" --family weibull --chains 1 --samples 300 --warmup 300 --quiet \
  --loo --out "$tmp/wei" > "$tmp/wei.txt" || fail "censored weibull fit failed: $(cat "$tmp/wei.txt")"
grep -q "^shape " "$tmp/wei.txt" && grep -q "^Computed from 300 by 120 log-likelihood matrix" "$tmp/wei.txt" &&
  [ -s "$tmp/wei/ppc.gp" ] || fail "censored weibull: $(cat "$tmp/wei.txt")"

# errors: exit 1 with the place; usage errors exit 2
set +e
"$ember" fit "$tmp/d.csv" "y ~ x +" > /dev/null 2> "$tmp/e1"; rc1=$?
"$ember" fit "$tmp/d.csv" "y ~ xx" > /dev/null 2> "$tmp/e2"; rc2=$?
"$ember" fit "$tmp/d.csv" "y ~ x" --family poison > /dev/null 2> "$tmp/e3"; rc3=$?
"$ember" fit "$tmp/d.csv" > /dev/null 2>&1; rc4=$?
"$ember" frobnicate > /dev/null 2>&1; rc5=$?
"$ember" --help > "$tmp/help"; rc6=$?
"$ember" fit "$tmp/d.csv" "y ~ x" --chains 0 > /dev/null 2> "$tmp/e7"; rc7=$?
"$ember" fit "$tmp/o.csv" "rating ~ x" --family 'poisson("probit")' > /dev/null 2> "$tmp/e8"; rc8=$?
set -e
[ $rc1 = 1 ] && grep -q "a term is missing.* at column 8" "$tmp/e1" && grep -q '^         \^' "$tmp/e1" || fail "syntax error: rc $rc1, $(cat "$tmp/e1")"
[ $rc2 = 1 ] && grep -q "no column 'xx'.*did you mean 'x'" "$tmp/e2" || fail "unknown column: rc $rc2, $(cat "$tmp/e2")"
[ $rc3 = 2 ] && grep -q "unknown family 'poison'" "$tmp/e3" || fail "unknown family: rc $rc3, $(cat "$tmp/e3")"
[ $rc4 = 2 ] && [ $rc5 = 2 ] && [ $rc6 = 0 ] && grep -q "^usage: ember fit" "$tmp/help" || fail "exit codes: $rc4 $rc5 $rc6"
[ $rc7 = 2 ] && grep -q "chains 0" "$tmp/e7" || fail "--chains 0: rc $rc7, $(cat "$tmp/e7")"
[ $rc8 = 2 ] && grep -q "family poisson takes the log link, not probit" "$tmp/e8" || fail "a wrong link: rc $rc8, $(cat "$tmp/e8")"
echo "test_cli.sh: ember fit and summary from the installed prefix, errors with their place, exit codes"
