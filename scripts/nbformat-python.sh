# nbformat-python.sh — sourced by scripts/export-notebooks.sh and tests/test_notebooks.sh: sets
# py to a python3 that can import nbformat, or to "" when there is none. Debian's python3 with
# python3-nbformat is what install-deps.sh provides; a python3 earlier on PATH (pyenv, venv) may
# lack it, so $PYTHON, then /usr/bin/python3, then the PATH's are tried in that order.
py=""
for cand in "${PYTHON:-}" /usr/bin/python3 python3; do
  [ -n "$cand" ] || continue
  if "$cand" -c 'import nbformat' 2>/dev/null; then py=$cand; break; fi
done
