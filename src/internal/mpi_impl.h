/* mpi_impl.h — what the MPI layer's files share (src/mpi): the block model, the collective
 * agreement on a status, the ranks' row layout and the stop flags of the sharded density. */
#ifndef EMBER_MPI_IMPL_H
#define EMBER_MPI_IMPL_H

#include <signal.h>

#include "ember/handlers.h"
#include "ember/mpi.h"

/* One block of rows, or a whole shard for SVI: the model runs over view, its sites outside
 * plate are counted only when count_once (masked otherwise), and its sites inside plate are
 * scaled by data_scale. */
typedef struct em_block_arg {
    em_model_fn fn;
    const void *view;
    const char *plate;
    int count_once;
    double data_scale;
} em_block_arg;

/* The model function for an em_block_arg. */
void em_mpi_block_model(em_model *m, const void *arg);

/* Collective: check spec on every rank and the ranks' rows (consecutive, block-aligned);
 * this rank's first global row, all rows and the common block size. */
em_status em_mpi_layout_rows(MPI_Comm comm, const em_mpi_model *spec, size_t *first_row, size_t *total_rows,
                             size_t *block_rows, em_error *err);

/* A sharded density reads *stop_in at every evaluation and sets *cancel_out when any rank's
 * was set, so that every rank stops at the same iteration (NULL: none). */
void em_mpi_logdensity_stop_flags(em_logdensity *ld, volatile sig_atomic_t *stop_in, volatile int *cancel_out);

#endif
