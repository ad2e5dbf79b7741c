#!/usr/bin/env bash
# test_example.sh — run the Bayesian-regression example with small settings and check what it
# promises: every output file, CmdStan's CSV layout (comment header, column header, adaptation
# block, timing footer, >= 9 significant digits), summaries that agree with the draws (read
# back with awk), the same summaries recomputed by R's posterior package when it is installed,
# clear errors for bad options and a missing data file, and the files kept after Ctrl-C and SIGTERM.
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
ok() { echo "ok: $*"; }

# Small settings (smaller still under the sanitizers); the SVI draw counts are the tutorials'.
if [ "$san" = "1" ]; then
  args=(--chains 2 --samples 150 --warmup 150 --svi-steps 300 --folds 2)
  nsamp=150
else
  args=(--chains 2 --samples 300 --warmup 300 --svi-steps 500 --folds 3)
  nsamp=300
fi
out=$tmp/out
if (cd "$ex" && "$bin" --out "$out" --seed 7 --quiet "${args[@]}" >"$tmp/stdout" 2>"$tmp/stderr"); then
  ok "example ran: ${args[*]}"
else
  cat "$tmp/stderr" >&2
  echo "FAIL: the example exited with an error" >&2
  exit 1
fi
[ -s "$tmp/stderr" ] && fail "--quiet run wrote to stderr: $(head -3 "$tmp/stderr")"

# ---- every promised file ------------------------------------------------------------------
for f in nuts_chain_1.csv nuts_chain_2.csv svi_draws.csv summary_nuts.csv summary_svi.csv predictive.csv coverage.csv; do
  [ -s "$out/$f" ] || fail "missing or empty $f"
done
[ -e "$out/nuts_chain_3.csv" ] && fail "nuts_chain_3.csv written for a 2-chain run"
figs="regression_line_svi regression_line_nuts predictive_svi predictive_nuts slope_density_svi slope_density_nuts
      marginals_diag_vs_nuts marginals_mvn_vs_nuts trace_nuts"
for g in $figs; do
  [ -s "$out/figures/$g.gp" ] || fail "missing figures/$g.gp"
  if command -v gnuplot >/dev/null; then
    # a PNG starts with \x89PNG
    [ "$(head -c 4 "$out/figures/$g.png" 2>/dev/null | tail -c 3)" = "PNG" ] || fail "figures/$g.png is not a PNG"
  fi
done
ls "$out"/*.tmp.* >/dev/null 2>&1 && fail "temporary files left in $out"
ok "all output files present"

# ---- CmdStan layout -------------------------------------------------------------------------
header='lp__,accept_stat__,stepsize__,treedepth__,n_leapfrog__,divergent__,energy__,a,bA,bR,bAR,sigma'
for k in 1 2; do
  f=$out/nuts_chain_$k.csv
  msg=$(awk -v header="$header" -v nsamp="$nsamp" -v k="$k" '
    function sig(x,   m) {           # significant digits of a number as written
      m = x; sub(/^[-+]/, "", m); sub(/[eE].*/, "", m); sub(/\./, "", m); sub(/^0+/, "", m)
      return length(m)
    }
    NR == 1 && !/^# model = / { print "line 1 is not the model comment: " $0; bad = 1 }
    /^# method = sample$/ { m++ } /^#     num_samples = / { if ($NF != nsamp) print "num_samples = " $NF; ns++ }
    /^# id = / { if ($NF != k) print "id = " $NF " in chain " k; id++ }
    /^# Adaptation terminated$/ { if (state != 1) print "adaptation block not right after the header"; state = 2; next }
    state == 2 { if ($0 !~ /^# Step size = [0-9.eE+-]+$/) print "bad step size line: " $0; else if (sig($5) < 9) print "step size has < 9 digits"; state = 3; next }
    state == 3 { if ($0 != "# Diagonal elements of inverse mass matrix:") print "bad metric title: " $0; state = 4; next }
    state == 4 { n = split(substr($0, 3), v, ", "); if (n != 5) print "inverse metric has " n " values"; state = 5; next }
    /^#/ { if (state >= 5 && /Elapsed Time: .* seconds \(Warm-up\)/) foot++; if (state >= 5 && /seconds \(Total\)/) foot++; next }
    state == 0 { if ($0 != header) print "column header: " $0; state = 1; next }
    state == 5 {
      rows++; n = split($0, v, ",")
      if (n != 12) { print "row " rows " has " n " fields"; exit }
      for (j = 1; j <= 12; j++) if (j == 1 || j >= 7) if (sig(v[j]) < 9) short++   # continuous columns
      if (v[4] != int(v[4]) || v[6] != 0 && v[6] != 1) print "treedepth__/divergent__ not integral in row " rows
    }
    END {
      if (!m) print "no method = sample comment"; if (!ns) print "no num_samples comment"; if (!id) print "no id"
      if (state != 5) print "adaptation block missing"
      if (rows != nsamp) print rows " draws, expected " nsamp
      if (foot != 2) print "elapsed-time footer missing"
      if (short > 0) print short " values with fewer than 9 significant digits"
    }' "$f")
  [ -z "$msg" ] && ok "nuts_chain_$k.csv has CmdStan's layout" || fail "nuts_chain_$k.csv: $msg"
done
# CmdStan's variational layout: lp__, log_p__, log_g__, the parameters; the guide's mean as the
# first row, then the draws (what rstan::read_stan_csv expects of method = variational)
msg=$(awk -F, '/^# method = variational$/ { m++ } /^#     output_samples = 800$/ { os++ } /^#/ { c++; next }
               !h { h = 1; if ($0 != "lp__,log_p__,log_g__,a,bA,bR,bAR,sigma") print "header " $0; next }
               { r++; if (NF != 8) print "row " r " has " NF " fields"; if (r == 1 && ($1 != 0 || $2 != 0 || $3 != 0)) print "mean row not first" }
               END { if (!c) print "no comment header"; if (!m) print "no method = variational"; if (!os) print "no output_samples"
                     if (r != 801) print r " rows, expected the mean and 800 draws (Part 1)" }' "$out/svi_draws.csv")
[ -z "$msg" ] && ok "svi_draws.csv has CmdStan's variational layout" || fail "svi_draws.csv: $msg"

# ---- summaries agree with the draws (mean, sd, type-7 quantiles) ------------------------------
# check_summary SUMMARY DRAWS...: recompute each parameter's statistics from the draws files
# (SKIP=1: the first row of each file is not a draw, as the mean row of a variational file)
check_summary() {
  local summary=$1; shift
  local p col
  for p in a bA bR bAR sigma; do
    col=$(awk -F, -v p="$p" '/^#/ { next } { for (j = 1; j <= NF; j++) if ($j == p) print j; exit }' "$1")
    awk -F, -v c="$col" -v skip="${SKIP:-0}" 'FNR == 1 { h = 0; r = 0 } /^#/ { next } !h { h = 1; next }
      { if (++r > skip) print $c }' "$@" | sort -g > "$tmp/col"
    awk -F, -v p="$p" -v sorted="$tmp/col" '
      function q7(pr,   h, lo) { h = (n - 1) * pr; lo = int(h); return x[lo + 1] + (h - lo) * (x[lo + 2] - x[lo + 1]) }
      function near(a, b) { return (a - b) <= 1e-9 * (1 + (b < 0 ? -b : b)) && (b - a) <= 1e-9 * (1 + (b < 0 ? -b : b)) }
      BEGIN { while ((getline v < sorted) > 0) { n++; x[n] = v + 0; s += v } m = s / n
              for (i = 1; i <= n; i++) ss += (x[i] - m)^2; sd = sqrt(ss / (n - 1)) }
      $1 == p { found = 1
        if (!near($2, m)) print p ": mean " $2 " vs " m
        if (!near($3, sd)) print p ": sd " $3 " vs " sd
        if (!near($4, q7(0.05))) print p ": q5 " $4 " vs " q7(0.05)
        if (!near($5, q7(0.5))) print p ": q50 " $5 " vs " q7(0.5)
        if (!near($6, q7(0.95))) print p ": q95 " $6 " vs " q7(0.95) }
      END { if (!found) print "no row for " p }' "$summary"
  done
}
[ "$(head -1 "$out/summary_nuts.csv")" = "param,mean,sd,q5,q50,q95,ess_bulk,ess_tail,r_hat,mcse_mean" ] || fail "summary_nuts.csv header"
[ "$(head -1 "$out/summary_svi.csv")" = "param,mean,sd,q5,q50,q95,mcse_mean" ] || fail "summary_svi.csv header"
# the PSIS-LOO comparison: three models, best first, as loo_compare prints it and in loo_compare.csv
msg=$(awk -F, 'NR == 1 { if ($0 != "model,elpd_loo,se_elpd_loo,p_loo,elpd_diff,se_diff") print "header " $0; next }
               { r++; seen[$1] = 1; if (r == 1 && $5 != 0) print "the best model has elpd_diff " $5
                 if ($2 >= 0 || $3 <= 0) print $1 ": elpd_loo " $2 " se " $3 }
               END { if (r != 3 || !seen["interaction"] || !seen["additive"] || !seen["student_t"]) print r " models" }' \
      "$out/loo_compare.csv" 2>&1)
[ -z "$msg" ] && grep -q "^Computed from $((2 * nsamp)) by 170 log-likelihood matrix" "$tmp/stdout" &&
  grep -q "elpd_diff se_diff" "$tmp/stdout" && ok "PSIS-LOO comparison of three models" || fail "loo comparison: $msg"
msg=$(check_summary "$out/summary_nuts.csv" "$out/nuts_chain_1.csv" "$out/nuts_chain_2.csv")
[ -z "$msg" ] && ok "summary_nuts.csv agrees with the chains" || fail "summary_nuts.csv: $msg"
msg=$(SKIP=1 check_summary "$out/summary_svi.csv" "$out/svi_draws.csv")
[ -z "$msg" ] && ok "summary_svi.csv agrees with svi_draws.csv" || fail "summary_svi.csv: $msg"

# ---- the numbers: exact posterior column, and NUTS against it ----------------------------------------
# The exact posterior of this model (../shared/reference/pyro_bayesian_regression.md §5, computed
# independently): means and sds of a, bA, bR, bAR, sigma.
exact_mean="9.180251 -1.840385 -0.182849 0.345808 0.951475"
exact_sd="0.139200 0.222767 0.077238 0.130050 0.052783"
msg=$(awk -v em="$exact_mean" -v es="$exact_sd" '
  BEGIN { split(em, m, " "); split(es, sd, " "); split("a bA bR bAR sigma", p, " ") }
  /^Posterior mean:/ { t = 1; next } /^Posterior standard deviation:/ { t = 2; next }
  t && $1 == "param" { next }
  t && NF >= 2 { for (k = 1; k <= 5; k++) if ($1 == p[k]) {
      want = t == 1 ? m[k] : sd[k]; got = $NF; seen[t, k] = 1
      if (got - want > 5e-5 || want - got > 5e-5) print p[k] " exact " (t == 1 ? "mean " : "sd ") got ", reference " want } }
  /^$/ { t = 0 }
  END { for (t = 1; t <= 2; t++) for (k = 1; k <= 5; k++) if (!seen[t, k]) print "no exact value for " p[k] }' "$tmp/stdout")
[ -z "$msg" ] && ok "exact posterior column matches the reference to 5e-5" || fail "exact column: $msg"
# NUTS means within 5 Monte Carlo standard errors (sd / sqrt(ess_bulk)) of the exact means
msg=$(awk -F, -v em="$exact_mean" 'BEGIN { split(em, m, " "); split("a bA bR bAR sigma", p, " ") }
  NR > 1 { for (k = 1; k <= 5; k++) if ($1 == p[k]) { se = $3 / sqrt($7); d = $2 - m[k]; if (d < 0) d = -d
      if (d > 5 * se) print p[k] ": NUTS mean " $2 " is " d / se " MCSE from the exact " m[k] } }' "$out/summary_nuts.csv")
[ -z "$msg" ] && ok "NUTS means agree with the exact posterior (within 5 MCSE)" || fail "$msg"

# ---- predictive.csv and coverage.csv ------------------------------------------------------------
msg=$(awk -F, 'NR == 1 { if ($0 != "method,where,row,isocode,cont_africa,rugged,log_gdp,mu_mean,mu_q5,mu_q50,mu_q95,y_mean,y_q5,y_q50,y_q95") print "header " $0; next }
  { n[$1 "," $2]++; if (NF != 15) print "line " NR " has " NF " fields"
    if ($2 == "data" && $4 !~ /^[A-Z][A-Z][A-Z]$/) print "no isocode on line " NR
    if (!($9 <= $10 && $10 <= $11 && $13 <= $14 && $14 <= $15)) print "quantiles out of order on line " NR
    if (!($13 <= $9 && $11 <= $15)) print "predictive band narrower than the line band on line " NR }
  END { if (n["nuts,data"] != 170 || n["svi,data"] != 170) print "expected 170 data rows per method"
        if (n["nuts,grid"] != n["svi,grid"] || n["nuts,grid"] < 20) print "grid rows missing" }' "$out/predictive.csv" | head -5)
[ -z "$msg" ] && ok "predictive.csv is consistent" || fail "predictive.csv: $msg"
msg=$(awk -F, 'NR == 1 { if ($0 != "method,interval,nominal,covered,n,coverage,mean_width,folds") print "header " $0; next }
  { rows++; if ($5 != 170) print "n = " $5 " on line " NR; if ($4 > $5) print "covered > n"
    if ($3 == 0.9 && $2 == "predictive_90" && ($6 < 0.75 || $6 > 1)) print $1 " 90% predictive coverage " $6 " is far off" }
  END { if (rows != 6) print rows " rows, expected 6" }' "$out/coverage.csv")
[ -z "$msg" ] && ok "coverage.csv is consistent" || fail "coverage.csv: $msg"

# ---- the printed report --------------------------------------------------------------------------
for want in "=== Data ===" "170 nations" "49 African, 121 other" "=== Part 1: SVI with AutoDiagonalNormal ===" \
            "=== Part 2: NUTS ===" "ess_bulk" "r_hat" "inside Africa  (bR + bAR)" "=== SVI vs NUTS ===" \
            "=== Calibration: 3-fold cross-validation ===" "E-BFMI" "=== Answer ===" "P(slope > 0)" "=== Timing ==="; do
  [ "$san" = "1" ] && [ "$want" = "=== Calibration: 3-fold cross-validation ===" ] && want="=== Calibration: 2-fold cross-validation ==="
  grep -qF -- "$want" "$tmp/stdout" || fail "report lacks '$want'"
done
ok "report has its sections"

# ---- R's posterior package reads our CSV files and agrees -----------------------------------------
if command -v Rscript >/dev/null && Rscript -e 'quit(status = !requireNamespace("posterior", quietly = TRUE))' 2>/dev/null; then
  if Rscript - "$out/summary_nuts.csv" "$out/nuts_chain_1.csv" "$out/nuts_chain_2.csv" <<'R' >"$tmp/r.out" 2>&1; then
suppressMessages(library(posterior))
args <- commandArgs(trailingOnly = TRUE)
ours <- read.csv(args[1])
pars <- c("a", "bA", "bR", "bAR", "sigma")
chains <- lapply(args[-1], function(f) as_draws_array(as.matrix(read.csv(f, comment.char = "#")[, pars])))
x <- do.call(bind_draws, c(chains, along = "chain"))
s <- summarise_draws(x, mean, sd, ~quantile2(.x, probs = c(0.05, 0.5, 0.95)), rhat, ess_bulk, ess_tail)
bad <- 0
for (p in pars) {
  r <- s[s$variable == p, ]; o <- ours[ours$param == p, ]
  cmp <- list(mean = c(r$mean, o$mean), sd = c(r$sd, o$sd), q5 = c(r$q5, o$q5), q50 = c(r$q50, o$q50),
              q95 = c(r$q95, o$q95), r_hat = c(r$rhat, o$r_hat), ess_bulk = c(r$ess_bulk, o$ess_bulk),
              ess_tail = c(r$ess_tail, o$ess_tail))
  for (k in names(cmp)) {
    v <- cmp[[k]]
    if (abs(v[1] - v[2]) > 1e-6 * max(1, abs(v[1]))) {
      cat(sprintf("%s %s: posterior %.10g, ours %.10g\n", p, k, v[1], v[2])); bad <- bad + 1
    }
  }
}
cat(sprintf("compared %d parameters x 8 statistics with posterior %s\n", length(pars), packageVersion("posterior")))
quit(status = bad > 0)
R
    ok "R posterior::summarise_draws agrees with summary_nuts.csv ($(tail -1 "$tmp/r.out"))"
  else
    fail "R's posterior disagrees with summary_nuts.csv:"; cat "$tmp/r.out" >&2
  fi
else
  echo "SKIPPED: R cross-check of the CmdStan CSV files (Rscript with the posterior package not found;"
  echo "SKIPPED: install r-base-core and r-cran-posterior: scripts/install-deps.sh --with-r)"
fi

# ---- bad options and a missing data file --------------------------------------------------------
expect_usage() {   # expect_usage WORD ARGS...: exit status 2 and a message naming WORD
  local word=$1; shift
  local rc=0
  (cd "$ex" && "$bin" "$@" --out "$tmp/bad" >"$tmp/bad.out" 2>"$tmp/bad.err") || rc=$?
  if [ "$rc" != 2 ]; then fail "rugged $* exited $rc, expected 2"
  elif ! grep -qF -- "$word" "$tmp/bad.err"; then fail "rugged $*: message lacks '$word': $(cat "$tmp/bad.err")"
  fi
}
expect_usage "--bogus" --bogus
expect_usage "--chains" --chains 0
expect_usage "--chains" --chains many
expect_usage "--samples" --samples
expect_usage "--method" --method mcmc
expect_usage "--seed" --seed -3
expect_usage "--folds" --folds 1
expect_usage "stray" stray
expect_usage "--quiet" --quiet=1
expect_usage "--sbc" --sbc 0
ok "bad options exit 2 with a message"

# ---- --sbc: simulation-based calibration through the library, a few replications ---------------
rc=0
(cd "$ex" && "$bin" --sbc 12 --seed 3 --no-figures --quiet --out "$tmp/sbc" >"$tmp/sbc.out" 2>"$tmp/sbc.err") || rc=$?
if [ "$rc" != 0 ]; then fail "rugged --sbc 12 exited $rc: $(cat "$tmp/sbc.err")"
elif [ "$(head -n 1 "$tmp/sbc/sbc_summary.csv")" != "param,chi2_p,cov50,cov80,cov90,cov95" ]; then
  fail "sbc_summary.csv header: $(head -n 1 "$tmp/sbc/sbc_summary.csv")"
elif [ "$(wc -l < "$tmp/sbc/sbc_summary.csv")" != 6 ]; then fail "sbc_summary.csv should have 5 parameters"
elif [ "$(head -n 1 "$tmp/sbc/sbc_ranks.csv")" != "replication,param,rank,L" ] ||
     [ "$(wc -l < "$tmp/sbc/sbc_ranks.csv")" != 61 ]; then fail "sbc_ranks.csv: 12 replications x 5 parameters"
else ok "--sbc writes sbc_summary.csv and sbc_ranks.csv"
fi
rc=0
"$bin" --help >"$tmp/help" || rc=$?
[ "$rc" = 0 ] && grep -q "^usage: rugged" "$tmp/help" || fail "--help"
rc=0
"$bin" --data "$tmp/no/such/rugged.csv" --out "$tmp/o2" --quiet >"$tmp/m.out" 2>"$tmp/m.err" || rc=$?
if [ "$rc" != 1 ] || ! grep -qF "$tmp/no/such/rugged.csv" "$tmp/m.err"; then
  fail "missing data file: exit $rc, message '$(cat "$tmp/m.err")'"
else
  ok "missing data file: $(cat "$tmp/m.err")"
fi

# A data file with a header and no rows, or whose every row is dropped: a clear error (no read
# past the empty columns, which the sanitizer build would report)
head -n 1 "$ex/data/rugged_data.csv" >"$tmp/header_only.csv"
printf 'cont_africa,rugged,rgdppc_2000\n1,0.5,\n' >"$tmp/all_dropped.csv"
for f in header_only all_dropped; do
  rc=0
  "$bin" --data "$tmp/$f.csv" --out "$tmp/o_$f" --quiet >"$tmp/$f.out" 2>"$tmp/$f.err" || rc=$?
  if [ "$rc" != 1 ] || ! grep -q "$tmp/$f.csv: no .*rows" "$tmp/$f.err" || grep -q "Sanitizer" "$tmp/$f.err"; then
    fail "$f data file: exit $rc, message '$(head -3 "$tmp/$f.err")'"
  else
    ok "$f data file: $(cat "$tmp/$f.err")"
  fi
done

# ---- without gnuplot: scripts and data are kept, and the report says how to draw them ------------
mkdir -p "$tmp/nobin"
rc=0
(cd "$ex" && PATH="$tmp/nobin" "$bin" --out "$tmp/nognuplot" --method svi --svi-steps 200 --folds 0 --quiet \
   >"$tmp/ng.out" 2>"$tmp/ng.err") || rc=$?
if [ "$rc" != 0 ]; then
  fail "run without gnuplot exited $rc: $(cat "$tmp/ng.err")"
elif ! [ -s "$tmp/nognuplot/figures/regression_line_svi.gp" ] || ls "$tmp/nognuplot/figures/"*.png >/dev/null 2>&1 ||
     ! grep -q "gnuplot is not on PATH" "$tmp/ng.out" || ! grep -qF 'do gnuplot "$f"; done' "$tmp/ng.out"; then
  fail "run without gnuplot: scripts missing or no instructions: $(grep -A2 'figures' "$tmp/ng.out")"
else
  ok "without gnuplot: scripts kept, report says how to draw them"
fi

# ---- Ctrl-C, and SIGTERM (what Slurm sends), during NUTS keep the chains' draws and say so ------
for sig in INT TERM; do
  (cd "$ex" && exec "$bin" --out "$tmp/$sig" --method nuts --chains 2 --samples 5000000 --warmup 200 --folds 0 \
     --no-figures >"$tmp/$sig.out" 2>"$tmp/$sig.err") &
  pid=$!
  sleep $([ "$san" = "1" ] && echo 8 || echo 3)
  kill -"$sig" "$pid"
  rc=0
  wait "$pid" || rc=$?
  if [ "$rc" != 130 ]; then
    fail "run stopped by SIG$sig exited $rc, expected 130: $(tail -3 "$tmp/$sig.err")"
  elif ! grep -q "^# interrupted = 1" "$tmp/$sig/nuts_chain_1.csv" || ! grep -q "^# interrupted = 1" "$tmp/$sig/nuts_chain_2.csv" ||
       [ "$(grep -v '^#' "$tmp/$sig/nuts_chain_1.csv" | head -1)" != "$header" ]; then
    fail "run stopped by SIG$sig did not keep both chain files with their draws: $(tail -3 "$tmp/$sig.err")"
  elif ! grep -q "^\[nuts\] interrupted: writing the [0-9]* draws made to" "$tmp/$sig.err"; then
    fail "run stopped by SIG$sig did not say what it does after the signal: $(tail -3 "$tmp/$sig.err")"
  else
    ok "SIG$sig during NUTS: exit 130, $(grep -vc '^#' "$tmp/$sig/nuts_chain_1.csv") lines kept in nuts_chain_1.csv," \
       "'$(grep -o 'writing the [0-9]* draws' "$tmp/$sig.err")'"
  fi
done

if [ "$fails" -gt 0 ]; then
  echo "test_example.sh: $fails check(s) failed" >&2
  exit 1
fi
echo "test_example.sh: all checks passed"
