/* regression_model.c — see regression_model.h. */
#include "regression_model.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const beta_names[REG_MAX_K] = {"beta.1", "beta.2", "beta.3", "beta.4", "beta.5", "beta.6",
                                                  "beta.7", "beta.8", "beta.9", "beta.10", "beta.11", "beta.12",
                                                  "beta.13", "beta.14", "beta.15", "beta.16"};

void reg_view(const void *shard, size_t first, size_t count, void *view) {
    const reg_rows *s = shard;
    reg_rows *v = view;
    *v = *s;
    v->X = s->X + first * s->k;
    v->y = s->y + first;
    v->n = count;
}

void reg_model(em_model *m, const void *rows) {
    const reg_rows *d = rows;
    em_tape *t = em_model_tape(m);
    em_var alpha = em_sample(m, "alpha", em_normal(m, 0.0, 5.0));
    em_var b[REG_MAX_K];
    size_t k = d->k < REG_MAX_K ? d->k : REG_MAX_K;
    for (size_t j = 0; j < k; j++) b[j] = em_sample(m, beta_names[j], em_normal(m, 0.0, 2.5));
    em_var sigma = d->logistic ? EM_VAR_INVALID : em_sample(m, "sigma", em_exponential(m, 1.0));
    em_var beta = em_op_concat(t, b, k);
    EM_PLATE(m, p, "data", d->n, d->subsample) {
        size_t ns = em_plate_size(p);
        const double *Xs = d->subsample ? em_plate_select_rows(m, p, d->X, d->k) : d->X;
        const double *ys = d->subsample ? em_plate_select(m, p, d->y) : d->y;
        em_var X = em_const_matrix(t, Xs, ns, d->k);
        if (d->logistic) em_observe(m, "y", em_bernoulli_logit_glm(m, X, alpha, beta), ys, ns);
        else em_observe(m, "y", em_normal_id_glm(m, X, alpha, beta, sigma), ys, ns);
    }
}

em_mpi_model reg_spec(const reg_rows *shard, size_t block_rows) {
    em_mpi_model s = {reg_model, "data", reg_view, sizeof(reg_rows), shard, shard->n, block_rows};
    return s;
}

/* splitmix64: a counter-based stream, so row i's values need no other row's */
static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static double unif(uint64_t key) { return ((double)(mix(key) >> 11) + 0.5) * 0x1.0p-53; }

static double std_normal(uint64_t key) { /* Box–Muller, one of the pair */
    return sqrt(-2.0 * log(unif(key))) * cos(6.283185307179586 * unif(key ^ 0x5555555555555555ull));
}

void reg_make_rows(size_t first, size_t n, size_t k, int logistic, unsigned long long seed, double *X, double *y) {
    for (size_t r = 0; r < n; r++) {
        uint64_t i = (uint64_t)(first + r), base = mix(seed ^ (i * 0x100000001b3ull));
        double eta = 0.5;
        for (size_t j = 0; j < k; j++) {
            double x = std_normal(base + 2 * j + 1);
            X[r * k + j] = x;
            eta += (j % 2 ? -1.0 : 1.0) * (0.25 + 0.25 * (double)j / (double)(k ? k : 1)) * x;
        }
        double e = std_normal(base + 2 * k + 7);
        y[r] = logistic ? (unif(base + 2 * k + 9) < 1.0 / (1.0 + exp(-eta)) ? 1.0 : 0.0) : eta + 0.8 * e;
    }
}

em_status reg_read_shard(const char *path, size_t k, int logistic, size_t block_rows, reg_rows *out,
                         size_t *total_rows, size_t *block_used, em_error *err) {
    memset(out, 0, sizeof *out);
    const char *cols[REG_MAX_K + 1];
    char names[REG_MAX_K][16];
    for (size_t j = 0; j < k && j < REG_MAX_K; j++) {
        snprintf(names[j], sizeof names[j], "x%zu", j + 1);
        cols[j] = names[j];
    }
    cols[k] = "y";
    em_mpi_table *t = NULL;
    em_status st = em_mpi_csv_read(MPI_COMM_WORLD, path, cols, k + 1, NULL, block_rows, &t, err);
    if (st != EM_OK) return st;
    /* the shard's design matrix, row-major; the column arrays go as soon as it is built */
    double *X = malloc((t->nrows ? t->nrows : 1) * k * sizeof *X), *y = malloc((t->nrows ? t->nrows : 1) * sizeof *y);
    em_error e = {0};
    st = X && y ? EM_OK : em_error_set(&e, EM_ERR_NOMEM, "out of memory for %zu rows", t->nrows);
    for (size_t i = 0; st == EM_OK && i < t->nrows; i++) {
        for (size_t j = 0; j < k; j++) X[i * k + j] = t->cols[j][i];
        y[i] = t->cols[k][i];
        if (logistic && y[i] != 0.0 && y[i] != 1.0)
            st = em_error_set(&e, EM_ERR_DOMAIN, "%s:%zu: y = %g, must be 0 or 1 for a logistic regression", path,
                              t->line[i], y[i]);
    }
    *out = (reg_rows){X, y, t->nrows, k, logistic, 0};
    if (total_rows) *total_rows = t->total_rows;
    if (block_used) *block_used = t->block_rows;
    em_mpi_table_free(t);
    if ((st = em_mpi_agree(MPI_COMM_WORLD, st, &e)) != EM_OK) {
        reg_rows_free(out);
        return em_error_set(err, st, "%s", e.msg);
    }
    return EM_OK;
}

void reg_rows_free(reg_rows *r) {
    free((double *)r->X);
    free((double *)r->y);
    memset(r, 0, sizeof *r);
}
