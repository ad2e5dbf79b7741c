#!/usr/bin/env bash
# test_cli.sh — the `ember` command as a user runs it: installed into a prefix beside the
# library, `ember fit` on a CSV file with a formula (brms's summary, CmdStan files with brms's
# names that `ember summary` reads back), `ember predict` from the fit's directory (new rows, a
# new group level, the training rows, --type, --draws, --seed, and its errors), its errors (a caret under a formula's mistake, an
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
[ -s "$tmp/out/coef.gp" ] && [ "$(grep -c '^[0-9]' "$tmp/out/coef.dat")" = 4 ] || fail "--out lacks the coefficient figure's script and data"
if command -v gnuplot > /dev/null; then [ -s "$tmp/out/coef.png" ] || fail "gnuplot is there but coef.png was not drawn"; fi
header=$(awk '!/^#/ { print; exit }' "$tmp/out/fit_1.csv")
case "$header" in
  lp__,*,energy__,b_Intercept,b_x,b_trtdrugA,b_trtdrugB,sd_g__Intercept,sigma,r_g\[G0.Intercept\],*) ;;
  *) fail "fit_1.csv has not brms's names: $(echo "$header" | cut -c1-200)" ;;
esac
"$ember" summary "$tmp/out/fit_1.csv" "$tmp/out/fit_2.csv" > "$tmp/sum.txt" || fail "ember summary failed"
grep -q "^b_x " "$tmp/sum.txt" && grep -q "NUTS: 2 chains x 500 draws" "$tmp/sum.txt" || fail "ember summary: $(cat "$tmp/sum.txt")"

# ember predict from the fit's directory: new rows coded as the training rows were
[ -s "$tmp/out/model.txt" ] && [ -s "$tmp/out/data.csv" ] && grep -qx "formula: y ~ x + trt + (1 | g)" "$tmp/out/model.txt" \
  || fail "--out lacks model.txt or data.csv: $(cat "$tmp/out/model.txt" 2>&1)"
printf 'g,trt,x\nG1,drugA,0.5\nG4,ctl,-1\nGnew,drugB,0\n' > "$tmp/new.csv"
"$ember" predict "$tmp/out" "$tmp/new.csv" --type epred --out "$tmp/ep.csv" --draws "$tmp/epd.csv" 2> "$tmp/pe" \
  || fail "ember predict failed: $(cat "$tmp/pe")"
grep -q "1 grouping level not in the training data" "$tmp/pe" || fail "predict did not report the new level: $(cat "$tmp/pe")"
awk -F, 'NR == 1 { ok = ($0 == "row,Estimate,Est.Error,Q2.5,Q97.5") } NR > 1 { n++; ok = ok && $1 == n && $3 > 0 && $4 < $2 && $2 < $5 }
         END { exit !(ok && n == 3) }' "$tmp/ep.csv" || fail "predict's summary: $(cat "$tmp/ep.csv")"
# without the group effects, drugA's row minus ctl's at the same x is b_trtdrugA, draw by draw
"$ember" predict "$tmp/out" <(printf 'trt,x,g\ndrugA,0.3,G1\nctl,0.3,G1\n') --type epred --population-only > "$tmp/ab.csv"
bA=$(awk -F, '$1 == "b_trtdrugA" { print $2 }' "$tmp/out/summary.csv")
awk -F, -v b="$bA" 'NR == 2 { a = $2 } NR == 3 { c = $2 } END { d = a - c - b; exit !(d < 1e-6 && d > -1e-6) }' "$tmp/ab.csv" \
  || fail "drugA - ctl is not b_trtdrugA = $bA: $(cat "$tmp/ab.csv")"
[ "$(wc -l < "$tmp/epd.csv")" = 1001 ] && head -1 "$tmp/epd.csv" | grep -qx "epred.1,epred.2,epred.3" || fail "--draws: $(head -2 "$tmp/epd.csv")"
"$ember" predict "$tmp/out" "$tmp/new.csv" --type linpred > "$tmp/lp.csv" 2>/dev/null
cmp -s "$tmp/lp.csv" "$tmp/ep.csv" || fail "a gaussian's linear predictor is its expected value"
"$ember" predict "$tmp/out" "$tmp/new.csv" --seed 5 > "$tmp/y1.csv" 2>/dev/null
"$ember" predict "$tmp/out" "$tmp/new.csv" --seed 5 > "$tmp/y2.csv" 2>/dev/null
"$ember" predict "$tmp/out" "$tmp/new.csv" --seed 6 > "$tmp/y3.csv" 2>/dev/null
cmp -s "$tmp/y1.csv" "$tmp/y2.csv" && ! cmp -s "$tmp/y1.csv" "$tmp/y3.csv" || fail "predict's draws do not follow --seed"
"$ember" predict "$tmp/out" > "$tmp/train.csv" || fail "predict at the training data failed"
[ "$(wc -l < "$tmp/train.csv")" = 121 ] || fail "predict without new data: not the 120 training rows"
set +e
printf 'g,trt,x\nG1,drugC,0.5\n' > "$tmp/bad1.csv"; "$ember" predict "$tmp/out" "$tmp/bad1.csv" > /dev/null 2> "$tmp/p1"; p1=$?
printf 'g,trt\nG1,ctl\n' > "$tmp/bad2.csv"; "$ember" predict "$tmp/out" "$tmp/bad2.csv" > /dev/null 2> "$tmp/p2"; p2=$?
"$ember" predict "$tmp/out" "$tmp/new.csv" --new-levels error > /dev/null 2> "$tmp/p3"; p3=$?
"$ember" predict "$tmp/nowhere" "$tmp/new.csv" > /dev/null 2> "$tmp/p4"; p4=$?
printf 'g,trt,x\nG1,"ctl,0.5\n' > "$tmp/bad5.csv"; "$ember" predict "$tmp/out" "$tmp/bad5.csv" > /dev/null 2> "$tmp/p5"; p5=$?
"$ember" predict "$tmp/out" "$tmp/new.csv" --type mean > /dev/null 2> "$tmp/p6"; p6=$?
"$ember" predict > /dev/null 2>&1; p7=$?
"$ember" predict --help > "$tmp/ph"; p8=$?
set -e
[ $p1 = 1 ] && grep -q "bad1.csv:2: 'trt' = 'drugC' is not a level" "$tmp/p1" && grep -q "'ctl', 'drugA', 'drugB'" "$tmp/p1" \
  || fail "unknown level: rc $p1, $(cat "$tmp/p1")"
[ $p2 = 1 ] && grep -q "no column 'x' in .*bad2.csv" "$tmp/p2" || fail "missing column: rc $p2, $(cat "$tmp/p2")"
[ $p3 = 1 ] && grep -q "new.csv:4: level 'Gnew' of the grouping factor 'g'" "$tmp/p3" || fail "refused new level: rc $p3, $(cat "$tmp/p3")"
[ $p4 = 1 ] && grep -q "nowhere/model.txt" "$tmp/p4" || fail "no fit directory: rc $p4, $(cat "$tmp/p4")"
[ $p5 = 1 ] && grep -q "bad5.csv:2" "$tmp/p5" || fail "a malformed data file: rc $p5, $(cat "$tmp/p5")"
[ $p6 = 2 ] && grep -q "expected predict, epred or linpred" "$tmp/p6" || fail "--type mean: rc $p6, $(cat "$tmp/p6")"
[ $p7 = 2 ] && [ $p8 = 0 ] && grep -q "ember predict FIT_DIR" "$tmp/ph" || fail "predict's exit codes: $p7 $p8"
for sub in fit summary loo-compare; do
  "$ember" $sub --help > "$tmp/h_$sub" && grep -q "^usage: ember fit" "$tmp/h_$sub" || fail "ember $sub --help"
done

# --method svi: the same names, the approximation's verdict, a fit.csv that predict reads
"$ember" fit "$tmp/d.csv" "y ~ x + trt" --method svi --seed 2 --quiet --out "$tmp/vi" > "$tmp/vi.txt" || fail "--method svi: $(cat "$tmp/vi.txt")"
grep -q "variational approximation (SVI" "$tmp/vi.txt" && grep -q "Pareto k-hat" "$tmp/vi.txt" && grep -q "^trtdrugA" "$tmp/vi.txt" \
  || fail "--method svi's summary: $(cat "$tmp/vi.txt")"
[ -s "$tmp/vi/fit.csv" ] && grep -q "method = variational" "$tmp/vi/fit.csv" || fail "--method svi wrote no variational fit.csv"
"$ember" predict "$tmp/vi" "$tmp/new.csv" --type epred > "$tmp/vip.csv" 2>/dev/null && [ "$(wc -l < "$tmp/vip.csv")" = 4 ] \
  || fail "predict from an SVI fit: $(cat "$tmp/vip.csv")"
set +e; "$ember" fit "$tmp/d.csv" "y ~ x" --method advi > /dev/null 2> "$tmp/e8"; rc8=$?; set -e
[ $rc8 = 2 ] && grep -q "expected nuts or svi" "$tmp/e8" || fail "--method advi: rc $rc8, $(cat "$tmp/e8")"

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
# its predictions, as brms's predict() and fitted() give an ordinal model's: per category
printf 'x\n-2\n0\n2\n' > "$tmp/ord_new.csv"
"$ember" predict "$tmp/ord" "$tmp/ord_new.csv" > "$tmp/ord_p.csv" || fail "ordinal predict failed"
awk -F, 'NR == 1 { ok = ($0 == "row,P(Y = 1),P(Y = 2),P(Y = 3)") } NR > 1 { s = $2 + $3 + $4; if (s < 0.999 || s > 1.001) ok = 0 }
  NR == 2 { lo = $2 } NR == 4 { hi = $4 } END { exit !(ok && NR == 4 && lo > 0.5 && hi > 0.5) }' "$tmp/ord_p.csv" ||
  fail "ordinal predict: shares per category that sum to 1, low x in category 1 and high x in 3: $(cat "$tmp/ord_p.csv")"
"$ember" predict "$tmp/ord" "$tmp/ord_new.csv" --type epred > "$tmp/ord_e.csv" || fail "ordinal epred failed"
awk -F, 'NR == 1 { ok = ($0 == "row,category,Estimate,Est.Error,Q2.5,Q97.5") } NR > 1 { s[$1] += $3 }
  END { for (r in s) if (s[r] < 0.999 || s[r] > 1.001) ok = 0; exit !(ok && NR == 10) }' "$tmp/ord_e.csv" ||
  fail "ordinal epred: three categories per row whose probabilities sum to 1: $(cat "$tmp/ord_e.csv")"
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
echo "test_cli.sh: ember fit, predict and summary from the installed prefix, errors with their place, exit codes"
