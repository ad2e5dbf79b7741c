#!/usr/bin/env bash
# export-notebooks.sh — regenerate notebooks-export/ from a real run of the Bayesian-regression
# example (called by `make notebooks`, which builds the example first). The run's arguments
# are fixed in scripts/notebooks.py and recorded in each notebook's metadata, so that
# tests/test_notebooks.sh can repeat it and compare.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/nbformat-python.sh
if [ -z "$py" ]; then
  echo "export-notebooks.sh: no python3 with nbformat found; install python3-nbformat" >&2
  echo "  (scripts/install-deps.sh --with-python)" >&2
  exit 1
fi
if ! command -v gnuplot >/dev/null; then
  echo "export-notebooks.sh: gnuplot is needed to draw the notebooks' figures (apt-get install gnuplot-nox)" >&2
  exit 1
fi
[ -x examples/bayesian_regression/rugged ] || make -s examples
"$py" scripts/notebooks.py build --bin examples/bayesian_regression/rugged --out notebooks-export
# the formula front end's walkthrough: the radon analysis with the ember command (real outputs)
[ -x bin/ember ] || make -s all
bash examples/radon/walkthrough.sh notebooks-export/radon_multilevel.md.tmp
mv notebooks-export/radon_multilevel.md.tmp notebooks-export/radon_multilevel.md
echo "export-notebooks.sh: wrote notebooks-export/radon_multilevel.md
