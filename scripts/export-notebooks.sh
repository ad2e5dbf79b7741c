#!/usr/bin/env bash
# export-notebooks.sh — regenerate notebooks-export/ from a real run of the Bayesian-regression
# example (called by `make notebooks`, which builds the example first). The run's arguments
# are fixed in scripts/notebooks.py and recorded in each notebook's metadata, so that
# tests/test_notebooks.sh can repeat it and compare.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's python3 with python3-nbformat; a python3 earlier on PATH (pyenv, venv) may lack it.
py=""
for cand in "${PYTHON:-}" /usr/bin/python3 python3; do
  [ -n "$cand" ] || continue
  if "$cand" -c 'import nbformat' 2>/dev/null; then py=$cand; break; fi
done
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
exec "$py" scripts/notebooks.py build --bin examples/bayesian_regression/rugged --out notebooks-export
