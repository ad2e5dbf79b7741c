#!/usr/bin/env bash
# bench-stan.sh — the Stan side of the NUTS benchmark (bench/nuts.c), through Debian's
# r-cran-rstan, and a one-command way to run that benchmark against Stan.
#
#   scripts/bench-stan.sh [--install]   build and run build/rel/bench/nuts (with --install, first
#                                       install R and rstan: scripts/install-deps.sh --with-stan)
#   scripts/bench-stan.sh check         exit 0 when R can load rstan and posterior
#   scripts/bench-stan.sh compile MODEL compile bench/stan/MODEL.stan once, cached in build/stan
#                                       (prints {"compile_s":..., "cached":...})
#   scripts/bench-stan.sh sample MODEL DATAFILE SEED WARMUP SAMPLES
#                                       one chain on the data bench/nuts.c wrote (prints one JSON
#                                       line: min bulk ESS, Stan's CPU seconds, gradient count)
#
# Run from the repository root (bench/nuts.c does). R's messages go to build/stan/MODEL.log and
# are shown only when a step fails.
set -eu

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="$root/build/stan"
driver="$root/bench/stan/bench_stan.R"
# A Stan chain is single-threaded; keep any BLAS R loads on one thread as well.
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

stan_ok() {
  command -v Rscript >/dev/null 2>&1 &&
    Rscript -e 'suppressPackageStartupMessages({library(rstan); library(posterior)})' >/dev/null 2>&1
}

run_r() { # MODEL ARGS...: Rscript with its stderr in the model's log, shown on failure
  local model="$1" log
  shift
  mkdir -p "$cache"
  log="$cache/$model.log"
  if ! Rscript "$driver" "$@" 2>"$log"; then
    echo "bench-stan.sh: R failed, last lines of $log:" >&2
    tail -n 20 "$log" >&2
    return 1
  fi
}

case "${1:-}" in
  check)
    stan_ok
    ;;
  compile)
    [ $# -eq 2 ] || { echo "usage: $0 compile MODEL" >&2; exit 2; }
    run_r "$2" compile "$2" "$root/bench/stan/$2.stan" "$cache"
    ;;
  sample)
    [ $# -eq 6 ] || { echo "usage: $0 sample MODEL DATAFILE SEED WARMUP SAMPLES" >&2; exit 2; }
    run_r "$2" sample "$2" "$root/bench/stan/$2.stan" "$cache" "$3" "$4" "$5" "$6"
    ;;
  ""|--install)
    if [ "${1:-}" = "--install" ]; then
      bash "$root/scripts/install-deps.sh" --with-stan
    fi
    stan_ok || echo "bench-stan.sh: R cannot load rstan; Stan's figures will be null" \
      "(install with: bash scripts/install-deps.sh --with-stan, as root)" >&2
    cd "$root"
    make build/rel/bench/nuts
    ./build/rel/bench/nuts
    ;;
  *)
    echo "usage: $0 [--install] | check | compile MODEL | sample MODEL DATAFILE SEED WARMUP SAMPLES" >&2
    exit 2
    ;;
esac
