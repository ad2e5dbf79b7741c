#!/usr/bin/env bash
# test_posterior_r.sh — Ember's CmdStan files as the Stan ecosystem reads them. A small
# program (tests/r/posterior_files.c) fits a regression by NUTS and by SVI and writes their
# CmdStan CSV files and Ember's summaries; R then reads the files with rstan::read_stan_csv
# and with plain read.csv + posterior (what posterior::read_cmdstan_csv-style code does) and
# checks the parameter names, the draw counts, the sampler diagnostics, and that mean, R-hat
# and bulk ESS agree with Ember's summary to 1e-8 relative. Without R, rstan and posterior it
# says SKIPPED (scripts/install-deps.sh --with-r installs them; CI does).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v Rscript >/dev/null || ! Rscript -e 'library(rstan); library(posterior)' >/dev/null 2>&1; then
  echo "SKIPPED: reading Ember's CmdStan files with R (no Rscript with rstan and posterior;"
  echo "SKIPPED: scripts/install-deps.sh --with-r installs them)"
  exit 0
fi
build=${EMBER_BUILD:-build/rel}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
extra=""
if [ "${SANITIZE:-0}" = "1" ]; then extra="-fsanitize=address,undefined"; fi
# shellcheck disable=SC2086
${CC:-cc} -std=c11 -Iinclude -I/usr/include/$(${CC:-cc} -print-multiarch)/openblas-pthread $extra \
  tests/r/posterior_files.c "$build/lib/libember.a" -lgsl -lopenblas -llapacke -lm -lpthread -o "$tmp/posterior_files"
"$tmp/posterior_files" "$tmp"
Rscript tests/r/read_posterior_files.R "$tmp"
