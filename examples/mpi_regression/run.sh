#!/usr/bin/env bash
# run.sh EXAMPLE ROWS RANKS OUTDIR — `make run-mpi`: generate ROWS rows of synthetic linear-
# regression data (once; kept in OUTDIR), then fit them with NUTS over RANKS MPI ranks and
# write the CmdStan CSVs to OUTDIR. Ranks beyond the cores are oversubscribed.
set -euo pipefail
ex=$1 rows=$2 np=$3 out=$4
mkdir -p "$out"
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OPENBLAS_NUM_THREADS=1 # the ranks are the parallelism
data="$out/rows-$rows.csv"
[ -f "$data" ] || "$ex" --generate "$data" --rows "$rows"
mpirun -np "$np" --oversubscribe "$ex" "$data" --out "$out"
