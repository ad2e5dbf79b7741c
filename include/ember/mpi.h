/* mpi.h — one model's rows spread over MPI ranks: a sharded log density, NUTS and SVI on it,
 * and a CSV reader that gives each rank only its rows.
 *
 * A regression's log density is the prior plus a sum over rows. Here every rank holds a shard
 * of the rows and runs the ordinary model function over it; the priors (every site outside the
 * data plate) and the transforms' Jacobian are counted once; the parts are combined on every
 * rank. The rows are cut into blocks of a fixed number of rows (the same for every run, not
 * per rank), each block's log density and gradient is one leaf, and the leaves are added in a
 * fixed binary tree over the block indices. Each rank adds the subtrees that lie inside its
 * rows and sends only those (O(log blocks) vectors of d + 1 doubles); every rank then finishes
 * the same tree. The result is bit for bit the same for any number of ranks (1, 2, 4, 8, ...)
 * and equal to the serial density up to the order of that sum. It is the same on every rank,
 * so NUTS, given the same seed everywhere, follows the same trajectory on every rank and the
 * draws do not depend on the number of ranks.
 *
 * Everything here is collective over the communicator it is given: every rank calls the same
 * functions in the same order. Errors are collective too: when one rank fails (a bad row in its
 * shard, no memory), every rank returns that rank's status and message — the first failing
 * rank's, by rank — so no rank waits for one that has given up. Line numbers in messages are
 * the data file's own.
 *
 * Built only with MPI (make MPI=1, or when mpicc is found), into libember_mpi beside libember;
 * the serial library does not depend on MPI. MPI must be initialised with at least
 * MPI_THREAD_FUNNELED, and the calls made from the thread that initialised it.
 *
 *     em_mpi_table *t;                                      each rank: its rows only
 *     em_mpi_csv_read(MPI_COMM_WORLD, "big.csv", cols, 3, NULL, 0, &t, &err);
 *     em_mpi_model spec = {model, "data", &view_of_rows, sizeof(my_data), t, t->nrows, 0};
 *     em_mpi_fit_nuts(MPI_COMM_WORLD, &spec, &cfg, &post, &err);   the same draws on every rank
 *     if (rank == 0) em_posterior_print(post, stdout, &err);
 *
 * Link with -lember_mpi -lember and mpicc's flags. The cost model at 10^8–10^9 rows is in the
 * README ("Past one machine").
 */
#ifndef EMBER_MPI_H
#define EMBER_MPI_H

#include <mpi.h>

#include "ember/io.h"
#include "ember/model.h"
#include "ember/posterior.h"
#include "ember/svi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Collective: every rank returns the status of the first rank (by rank) whose st is not
 * EM_OK, and that rank's message in *err; EM_OK when none failed. A program's own checks of
 * its shard go through this too, so that no rank goes on while another has stopped. */
em_status em_mpi_agree(MPI_Comm comm, em_status st, em_error *err);

/* Rows per block unless asked otherwise: large enough that a block's model run costs little
 * next to its rows, small enough that the rows split evenly over many ranks. */
#define EM_MPI_DEFAULT_BLOCK_ROWS 4096

/* The rows of total_rows (blocks of block_rows; 0: the default) that rank `rank` of `size`
 * holds in the standard partition: whole blocks, as evenly as blocks allow. */
void em_mpi_partition(size_t total_rows, size_t block_rows, int size, int rank, size_t *first_row,
                      size_t *num_rows);

/* ---- reading a CSV sharded --------------------------------------------------------------------
 *
 * Each rank reads the header and one byte range of the file, cut at line ends, parses it with
 * the data CSV reader's grammar and policies (io.h), and the ranks then pass rows to their
 * neighbours so that each holds the standard partition's rows (em_mpi_partition). No rank
 * ever reads or holds the whole file. Lines end in LF or CRLF here (a lone CR is not counted as
 * a line end between ranks), and quoted fields may not span lines (a shard boundary could fall
 * inside one: such a file is an error). */
typedef struct em_mpi_table {
    size_t nrows;      /* rows on this rank */
    size_t first_row;  /* global index (0-based, after dropped rows) of its first row */
    size_t total_rows; /* rows on all ranks */
    size_t dropped;    /* rows dropped under EM_CSV_MISSING_DROP_ROW, on all ranks */
    size_t block_rows; /* the block size the partition was cut with */
    size_t ncols;
    char **names;   /* [ncols] */
    double **cols;  /* [ncols][nrows] column-major */
    size_t *line;   /* [nrows] the file line of each row */
} em_mpi_table;

/* Numeric columns named in columns[0..ncols) (NULL, 0: every column); opt as em_csv_read (text
 * columns are not supported here: EM_ERR_ARG). block_rows: 0 for the default. */
em_status em_mpi_csv_read(MPI_Comm comm, const char *path, const char *const *columns, size_t ncols,
                          const em_csv_options *opt, size_t block_rows, em_mpi_table **out, em_error *err);
void em_mpi_table_free(em_mpi_table *t);
/* The named column, or NULL. */
const double *em_mpi_table_column(const em_mpi_table *t, const char *name);

/* ---- the sharded density ---------------------------------------------------------------------- */

/* Fill view (view_size bytes) with the model's data for `count` rows starting at row `first`
 * of this rank's shard: typically pointers into the shard's arrays and the count, no copy. */
typedef void (*em_mpi_view_fn)(const void *shard, size_t first, size_t count, void *view);

typedef struct em_mpi_model {
    em_model_fn fn;         /* the ordinary model, run over the data a view describes */
    const char *data_plate; /* the plate over the rows: sites inside it are per-row terms; every
                               other site (the priors) is counted once */
    em_mpi_view_fn view;
    size_t view_size;
    const void *shard;      /* this rank's rows, handed to view */
    size_t num_rows;        /* rows in the shard; the ranks hold consecutive row ranges in rank
                               order, each starting at a multiple of block_rows */
    size_t block_rows;      /* 0: EM_MPI_DEFAULT_BLOCK_ROWS (the same on every rank) */
} em_mpi_model;

/* A density over θ whose value and gradient are the whole data's, the same on every rank.
 * Every latent site must lie outside the data plate (a per-row latent cannot be sharded);
 * opt as em_logdensity_from_model (deterministic sites are not supported: they would be per
 * block). Collective; destroy it on every rank too. */
em_logdensity *em_mpi_logdensity(MPI_Comm comm, const em_mpi_model *spec, const em_logdensity_options *opt,
                                 em_error *err);

/* Blocks in the whole data and on this rank (for reports); 0 for another density. */
size_t em_mpi_logdensity_blocks(const em_logdensity *ld, size_t *local_blocks);

/* ---- NUTS ------------------------------------------------------------------------------------
 *
 * em_mcmc_run over the sharded density, chains one after the other (each gradient already uses
 * every rank). With cfg->handle_sigint, SIGINT, SIGTERM and SIGHUP on any rank stop every rank
 * at the same iteration, and the draws made so far are kept (EM_ERR_INTERRUPTED with *out
 * set). *out is the same posterior on every rank; it carries no model (prediction needs the
 * rows: run it on the shards). */
em_status em_mpi_fit_nuts(MPI_Comm comm, const em_mpi_model *spec, const em_mcmc_config *cfg, em_posterior **out,
                          em_error *err);

/* ---- chains over groups of ranks -------------------------------------------------------------
 *
 * Past the ranks that one gradient can use well, more ranks can run more chains at once: the
 * ranks form `groups` equal groups of consecutive ranks (em_mpi_group_split), each group holds
 * the whole data sharded over its own ranks (read it with the group's communicator) and runs
 * its share of the chains, and the chains are then gathered so that every rank has the whole
 * posterior. Chain k's draws are those it has in a run without groups (its stream is chain k's
 * and the density's bits do not depend on the ranks). A signal stops the groups it reaches (a
 * scheduler signals every rank), at an iteration boundary; the others finish their chains, and
 * the result is EM_ERR_INTERRUPTED with every draw made kept. */
em_status em_mpi_group_split(MPI_Comm comm, int groups, MPI_Comm *group, int *group_index, em_error *err);
/* comm: all ranks; group: this rank's group (from em_mpi_group_split); spec: this rank's rows
 * of its group's data. cfg->num_chains >= the number of groups. Collective over comm. */
em_status em_mpi_fit_nuts_groups(MPI_Comm comm, MPI_Comm group, const em_mpi_model *spec, const em_mcmc_config *cfg,
                                 em_posterior **out, em_error *err);

/* ---- data-parallel SVI --------------------------------------------------------------------------
 *
 * Every rank runs SVI on its own shard with its own random stream (its guide draws and its
 * minibatch: pass the subsample size to the data plate inside the model as usual). The rank's
 * data-plate terms are scaled by total_rows / shard rows, so each rank's loss and gradient
 * are unbiased for the whole data's; the ranks' estimates are then averaged with weights
 * shard rows / total rows, in rank order, so every rank takes the same optimizer step and
 * holds the same parameters after every step (the average of the ranks' independent estimates
 * has their variance divided by about the number of ranks). */
typedef struct em_mpi_svi em_mpi_svi;

/* An autoguide of kind guide (not Laplace) over the model, and SVI with optim and opt
 * (opt->combine must be unset: it is this layer's); opt->seed gives the guide's start (the same
 * on every rank) and, mixed with the rank, each rank's stream. Collective. */
em_mpi_svi *em_mpi_svi_create(MPI_Comm comm, const em_mpi_model *spec, em_autoguide_kind guide,
                              const em_optim_config *optim, const em_svi_options *opt, em_error *err);
/* The underlying em_svi and autoguide (em_svi_run, em_svi_step on it are collective). */
em_svi *em_mpi_svi_handle(em_mpi_svi *s);
em_autoguide *em_mpi_svi_guide(em_mpi_svi *s);
/* ndraws draws of the fitted guide (the same on every rank), their log_p__ and PSIS k̂ from
 * the whole data's density (the sharded density of spec, the same spec as at creation). */
em_status em_mpi_svi_posterior(em_mpi_svi *s, const em_mpi_model *spec, size_t ndraws, uint64_t seed,
                               em_posterior **out, em_error *err);
void em_mpi_svi_destroy(em_mpi_svi *s);

#ifdef __cplusplus
}
#endif
#endif
