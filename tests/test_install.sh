#!/usr/bin/env bash
# test_install.sh — install the library into a temporary prefix, build a small program against
# it with pkg-config (as a user would), run it and check what it prints.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

make -s install PREFIX="$tmp/prefix" SANITIZE="${SANITIZE:-0}" >/dev/null
test -f "$tmp/prefix/include/ember.h"
test -f "$tmp/prefix/lib/libember.a"
test -f "$tmp/prefix/lib/libember.so"

cat > "$tmp/prog.c" <<'C'
#include <ember.h>
#include <stdio.h>

/* y ~ Normal(mu, 1) for three observations, mu ~ Normal(0, 10): print the log density and its
 * gradient at mu = 0.5 through the installed library. */
static const double Y[3] = {1.0, 2.0, 3.0};
static void model(em_model *m, const void *data) {
    (void)data;
    em_var mu = em_sample(m, "mu", em_normal(m, 0.0, 10.0));
    em_observe(m, "y", em_normal(m, mu, 1.0), Y, 3);
}

int main(void) {
    em_error err = {0};
    em_logdensity *ld = em_logdensity_from_model(model, NULL, NULL, &err);
    if (!ld) { fprintf(stderr, "%s\n", err.msg); return 1; }
    double th = 0.5, lp, g;
    if (em_logdensity_eval(ld, &th, &lp, &g, &err) != EM_OK) { fprintf(stderr, "%s\n", err.msg); return 1; }
    printf("%s %.6f %.6f\n", em_logdensity_output_name(ld, 0), lp, g);
    em_logdensity_destroy(ld);
    return 0;
}
C
extra=""
if [ "${SANITIZE:-0}" = "1" ]; then extra="-fsanitize=address,undefined"; fi
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
${CC:-cc} -std=c11 $extra "$tmp/prog.c" $(pkg-config --cflags --libs ember) -o "$tmp/prog"
out=$("$tmp/prog")
# log N(0.5 | 0, 10) + Σ log N(y_i | 0.5, 1) and d/dmu = -0.5/100 + Σ (y_i - 0.5)
expect=$(awk 'BEGIN { pi = atan2(0, -1); mu = 0.5;
  lp = -0.5 * (mu / 10)^2 - log(10) - 0.5 * log(2 * pi);
  g = -mu / 100;
  for (y = 1; y <= 3; y++) { lp += -0.5 * (y - mu)^2 - 0.5 * log(2 * pi); g += y - mu }
  printf "mu %.6f %.6f\n", lp, g }')
if [ "$out" != "$expect" ]; then
  echo "installed-library program printed '$out', expected '$expect'" >&2
  exit 1
fi
echo "installed library OK: $out"

# With the MPI layer: its header and library are installed, and a program built with mpicc
# against them (-lember_mpi before pkg-config's flags) runs under mpirun.
if [ "${MPI:-0}" = 1 ] && command -v mpicc >/dev/null 2>&1; then
  test -f "$tmp/prefix/include/ember/mpi.h"
  test -f "$tmp/prefix/lib/libember_mpi.a"
  cat > "$tmp/mpiprog.c" <<'C'
#include <ember.h>
#include <ember/mpi.h>
#include <stdio.h>

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    size_t first, n;
    em_mpi_partition(10000, 0, 2, 1, &first, &n); /* rank 1 of 2: blocks 1..2 of 3 */
    printf("%zu %zu\n", first, n);
    MPI_Finalize();
    return 0;
}
C
  mpicc -std=c11 $extra "$tmp/mpiprog.c" -L"$tmp/prefix/lib" -l:libember_mpi.a $(pkg-config --cflags --libs --static ember) -o "$tmp/mpiprog"
  if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
  # as in test_mpi.sh: under the sanitizers, OpenMPI's own lasting allocations are suppressed
  export OMPI_MCA_mca_base_component_disable_dlclose=1
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
  export LSAN_OPTIONS="suppressions=$(pwd)/tests/mpi/lsan.supp:print_suppressions=0"
  got=$(mpirun -np 1 "$tmp/mpiprog")
  [ "$got" = "4096 5904" ] || { echo "installed MPI layer printed '$got', expected '4096 5904'" >&2; exit 1; }
  echo "installed MPI layer OK: $got"
fi
