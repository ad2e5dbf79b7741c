#!/usr/bin/env bash
# test_notebooks.sh — the exported notebooks are valid nbformat 4 and their printed outputs are
# what the current code prints: the example is re-run with the arguments recorded in the
# notebooks' metadata and every output is compared with the stored one (scripts/notebooks.py
# check). Skips, loudly, without python3-nbformat.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/nbformat-python.sh
if [ -z "$py" ]; then
  echo "SKIPPED: notebook checks (no python3 with nbformat; install python3-nbformat:"
  echo "SKIPPED: scripts/install-deps.sh --with-python)"
  exit 0
fi
for f in bayesian_regression.ipynb bayesian_regression_ii.ipynb bayesian_regression.md bayesian_regression_ii.md; do
  [ -s "notebooks-export/$f" ] || { echo "FAIL: notebooks-export/$f is missing (run make notebooks)" >&2; exit 1; }
done
make -s examples/bayesian_regression/rugged SANITIZE="${SANITIZE:-0}" >/dev/null
# Under the sanitizers the run is the same program, only slower; ASan's leak report would go to
# stderr, which notebooks.py shows if the program fails.
"$py" scripts/notebooks.py check --bin examples/bayesian_regression/rugged --dir notebooks-export
echo "test_notebooks.sh: notebooks are valid and match the current code"
