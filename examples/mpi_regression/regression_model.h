/* regression_model.h — the MPI example's model: a linear or logistic regression on k
 * predictors, over a view of some rows of a row-major design matrix (shared by the example,
 * tests/mpi and bench/mpi).
 *
 *     alpha ~ Normal(0, 5),  beta_j ~ Normal(0, 2.5),  sigma ~ Exponential(1)   (linear only)
 *     y_i ~ Normal(alpha + x_i·beta, sigma)   or   y_i ~ Bernoulli(logit⁻¹(alpha + x_i·beta))
 *
 * The likelihood is one fused GLM over the rows (normal_id_glm or bernoulli_logit_glm) in the
 * plate "data", so it shards: every rank runs the model over its blocks of rows.
 */
#ifndef EMBER_EXAMPLE_REGRESSION_MODEL_H
#define EMBER_EXAMPLE_REGRESSION_MODEL_H

#include <stddef.h>

#include "ember/mpi.h"

#define REG_MAX_K 16

/* A shard's rows: X row-major n×k, y. */
typedef struct reg_rows {
    const double *X, *y;
    size_t n, k;
    int logistic;
    size_t subsample; /* SVI minibatch per rank (0: every row) */
} reg_rows;

/* em_mpi_view_fn: rows [first, first + count) of a reg_rows shard into a reg_rows view. */
void reg_view(const void *shard, size_t first, size_t count, void *view);
void reg_model(em_model *m, const void *rows);

/* The sharded model of a shard (block_rows 0: the default). */
em_mpi_model reg_spec(const reg_rows *shard, size_t block_rows);

/* Collective: this rank's rows of a CSV with columns x1..xk and y (em_mpi_csv_read, blocks of
 * block_rows; 0: the default) as a reg_rows shard owning X (row-major) and y; *total_rows and
 * *block_used say how the rows were cut. A logistic y must be 0 or 1 (the file's line in the
 * message). Free with reg_rows_free. */
em_status reg_read_shard(const char *path, size_t k, int logistic, size_t block_rows, reg_rows *out,
                         size_t *total_rows, size_t *block_used, em_error *err);
void reg_rows_free(reg_rows *r);

/* Deterministic synthetic data: row i (global index) of X and y depend only on i and seed,
 * so every rank can make its own rows and a serial run the whole. */
void reg_make_rows(size_t first, size_t n, size_t k, int logistic, unsigned long long seed, double *X, double *y);

#endif
