#!/usr/bin/env bash
# test_loo_r.sh — compare Ember's loo module with a live run of R's loo: regenerate the reference
# of tests/r with the installed R (tests/r/loo_reference.R) into a temporary folder and run
# test_loo against it. Without Rscript or the loo package it says so and passes, loudly.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${EMBER_BUILD:-build/rel}
if ! command -v Rscript >/dev/null 2>&1 ||
   ! Rscript -e 'quit(status = !requireNamespace("loo", quietly = TRUE))' >/dev/null 2>&1; then
  echo "SKIPPED: R/loo not installed (scripts/install-deps.sh --with-r installs r-cran-loo)"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
Rscript tests/r/loo_reference.R "$tmp"
version=$(Rscript -e 'cat(as.character(packageVersion("loo")))')
[ "$version" = "2.5.1" ] || echo "note: the installed loo is $version; the stored reference is loo 2.5.1"
EMBER_LOO_REF="$tmp" "$build/tests/test_loo"
# the live run must reproduce the stored files exactly (same seeds, same R and loo)
if [ "$version" = "2.5.1" ]; then
  for f in tests/r/*.json; do
    cmp -s "$f" "$tmp/$(basename "$f")" || { echo "FAIL: $f differs from a fresh run of loo_reference.R"; exit 1; }
  done
  echo "live R/loo $version: the stored reference files are reproduced byte for byte"
fi
