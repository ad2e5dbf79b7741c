#!/usr/bin/env bash
# install-deps.sh — make sure the Debian packages Ember builds and runs with are present.
#
# Checks each package with dpkg and installs only what is missing. As root it runs apt-get;
# otherwise it prints the exact command to run and exits non-zero. Optional groups:
#   --with-r      R with r-cran-posterior, r-cran-rstan and r-cran-loo: the oracles of the tests
#                 (R-hat/ESS, reading our CmdStan files with rstan::read_stan_csv, PSIS-LOO)
#   --with-stan   r-cran-rstan and r-cran-posterior (the NUTS benchmark's Stan baseline: rstan
#                 compiles the models against libboost-dev, which r-cran-bh pulls in)
#   --with-brms   r-cran-brms and r-cran-rstanarm (regenerating the formula front end's reference posteriors,
#                 tests/r/brms_reference.R, and the benchmark against brms; not needed by the tests)
#   --with-fuzz   clang and its sanitizer runtime (the readers' libFuzzer targets, scripts/fuzz.sh)
#   --with-python python3-nbformat (validates the exported notebooks)
#   --with-mpi    OpenMPI (libopenmpi-dev, openmpi-bin): the data-parallel layer, make MPI=1
set -eu

required="build-essential pkg-config libgsl-dev libopenblas-dev liblapacke-dev libcmocka-dev gnuplot-nox"
optional=""
for arg in "$@"; do
  case "$arg" in
    --with-r) optional="$optional r-base-core r-cran-posterior r-cran-rstan r-cran-loo" ;;
    --with-stan) optional="$optional r-base-core r-cran-rstan r-cran-posterior" ;;
    --with-brms) optional="$optional r-base-core r-cran-brms r-cran-rstan r-cran-bh r-cran-rstanarm" ;;
    --with-fuzz) optional="$optional clang libclang-rt-dev" ;;
    --with-python) optional="$optional python3 python3-nbformat" ;;
    --with-mpi) optional="$optional libopenmpi-dev openmpi-bin" ;;
    *) echo "install-deps.sh: unknown option '$arg'" >&2; exit 2 ;;
  esac
done

missing=""
for pkg in $required $optional; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $pkg"
  fi
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: missing Debian packages:$missing" >&2
  echo "run: sudo apt-get install -y --no-install-recommends$missing" >&2
  exit 1
fi

echo "install-deps.sh: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have stale or empty package lists; refresh once before installing.
apt-get update -qq >/dev/null || apt-get update
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
