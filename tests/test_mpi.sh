#!/usr/bin/env bash
# test_mpi.sh — the MPI layer under mpirun with 1, 2 and 4 ranks (oversubscribed on a small
# machine): tests/mpi/test_mpi's checks on every rank, the density's and the draws' digests
# identical across rank counts, and the example ending every rank with the global line of a
# bad row in one rank's part of the file. SKIPPED when the build has no MPI layer.
set -u
BUILD=${EMBER_BUILD:-build/rel}
T=$BUILD/tests/mpi/test_mpi
EX=$BUILD/examples/mpi_regression
if [ "${MPI:-0}" != 1 ] || [ ! -x "$T" ] || ! command -v mpirun >/dev/null 2>&1; then
  echo "SKIPPED: no MPI layer in this build (install OpenMPI: scripts/install-deps.sh --with-mpi)"
  exit 0
fi
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OPENBLAS_NUM_THREADS=1
# Sanitizer build: OpenMPI keeps some allocations until exit by design; only those are
# suppressed, recognised by OpenMPI's frames on the full allocation stack (its components stay
# loaded so that their frames have names).
export OMPI_MCA_mca_base_component_disable_dlclose=1
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
export LSAN_OPTIONS="suppressions=$(pwd)/tests/mpi/lsan.supp:print_suppressions=0"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
for np in 1 2 4; do
  if ! timeout 600 mpirun -np "$np" --oversubscribe "$T" "$tmp/digest.$np" "$tmp" >"$tmp/log.$np" 2>&1; then
    echo "FAIL: test_mpi with $np ranks:"; tail -40 "$tmp/log.$np"; fail=1
  else
    grep "test_mpi:" "$tmp/log.$np"
  fi
done
for np in 2 4; do
  if ! cmp -s "$tmp/digest.1" "$tmp/digest.$np"; then
    echo "FAIL: the density or the NUTS draws differ between 1 and $np ranks:"; paste "$tmp/digest.1" "$tmp/digest.$np"; fail=1
  fi
done
[ $fail = 0 ] && echo "ok: density and NUTS draws bit-identical for 1, 2 and 4 ranks ($(tr '\n' ' ' < "$tmp/digest.1"))"

# A bad value in the last rank's rows: every rank exits 1 and says where, with the file's line.
"$EX" --generate "$tmp/rows.csv" --rows 5000 >/dev/null || { echo "FAIL: generate"; fail=1; }
awk 'NR == 4800 { sub(/^[^,]*/, "1.2.3") } { print }' "$tmp/rows.csv" > "$tmp/bad.csv"
mpirun -np 4 --oversubscribe "$EX" "$tmp/bad.csv" --block-rows 256 >"$tmp/bad.out" 2>"$tmp/bad.err"
rc=$?
n=$(grep -c "bad.csv:4800:1: column 'x1': '1.2.3'" "$tmp/bad.err")
if [ $rc = 0 ] || [ "$n" != 4 ]; then
  echo "FAIL: a bad row on one rank (exit $rc, $n of 4 ranks named line 4800):"; cat "$tmp/bad.err"; fail=1
else
  echo "ok: a bad row in rank 3's rows stops all 4 ranks, each naming bad.csv:4800:1"
fi
# SIGTERM as a batch scheduler sends it (Slurm signals every process of the job): it reaches
# the ranks at different moments; every rank stops after the same iteration and rank 0 writes
# the draws made so far. (Sent to mpirun instead, it is OpenMPI's to forward: mpirun kills the
# ranks odls_base_sigkill_timeout seconds later, 1 by default.)
# (50000 rows and 300000 iterations: a minute or more, so that the signal finds it sampling)
"$EX" --generate "$tmp/rows50k.csv" --rows 50000 >/dev/null || { echo "FAIL: generate"; fail=1; }
mpirun -np 2 --oversubscribe "$EX" "$tmp/rows50k.csv" --chains 1 --warmup 100 --samples 300000 --out "$tmp/sig" \
  >"$tmp/sig.out" 2>"$tmp/sig.err" &
pid=$!
sleep 10
ranks=$(pgrep -P $pid)
kill -TERM $ranks 2>/dev/null
wait $pid
draws=$(grep -vc '^#\|^lp__' "$tmp/sig/mpi_regression_1.csv" 2>/dev/null || echo 0)
if ! grep -q "interrupted" "$tmp/sig.out" || [ "$draws" -lt 1 ]; then
  echo "FAIL: SIGTERM during an MPI run did not keep its draws ($draws rows):"; tail -n 5 "$tmp/sig.out" "$tmp/sig.err"; fail=1
else
  echo "ok: SIGTERM stops both ranks at the same iteration and keeps the $draws draws made so far"
fi
exit $fail
