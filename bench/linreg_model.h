/* linreg_model.h — the large linear regression of the benchmarks, written in Ember's model
 * language, and its synthetic data, for every bench file that needs it (static functions: each
 * bench is one translation unit).
 *
 *   alpha ~ Normal(0, 10);  beta_k ~ Normal(0, 1), k = 1..d;  sigma ~ HalfNormal(1)
 *   y_i ~ Normal(alpha + x_i . beta, sigma),  i = 1..n,  through the fused normal_id_glm
 *
 * The unconstrained space is θ = (alpha, beta[d], log sigma), the same as Stan's for
 * bench/stan/linreg_glm.stan. Data: X_ik ~ N(0, 1) and y from "true" parameters drawn with
 * 0.5 N(0, 1) (the same recipe as bench/logdensity.c, seed 3), so every run sees the same data.
 */
#ifndef EMBER_BENCH_LINREG_MODEL_H
#define EMBER_BENCH_LINREG_MODEL_H

#include <math.h>
#include <stdlib.h>

#include "ember.h"

typedef struct linreg_data {
    size_t n, d;
    double *X; /* n x d row-major */
    double *y; /* n */
} linreg_data;

static void linreg_model(em_model *m, const void *arg) {
    const linreg_data *D = arg;
    em_var alpha = em_sample(m, "alpha", em_normal(m, 0.0, 10.0));
    em_var beta = em_sample(m, "beta", em_expand(em_normal(m, 0.0, 1.0), D->d));
    em_var sigma = em_sample(m, "sigma", em_half_normal(m, 1.0));
    em_var X = em_const_matrix(em_model_tape(m), D->X, D->n, D->d);
    EM_PLATE(m, p, "data", D->n, 0) {
        em_observe(m, "y", em_normal_id_glm(m, X, alpha, beta, sigma), D->y, D->n);
    }
}

/* Fill D with n rows of d predictors from em_rng_create(seed, 0). Returns 0, or -1 when out of
 * memory (D is then left empty). */
static int linreg_data_make(linreg_data *D, size_t n, size_t d, uint64_t seed) {
    D->n = n;
    D->d = d;
    D->X = malloc(n * d * sizeof(double));
    D->y = malloc(n * sizeof(double));
    double *truth = malloc((d + 2) * sizeof(double));
    em_rng *rng = em_rng_create(seed, 0);
    if (!D->X || !D->y || !truth || !rng) {
        free(D->X);
        free(D->y);
        free(truth);
        em_rng_destroy(rng);
        D->X = D->y = NULL;
        return -1;
    }
    for (size_t k = 0; k < d + 2; k++) truth[k] = 0.5 * em_rng_normal(rng);
    for (size_t i = 0; i < n; i++) {
        double mu = truth[0];
        for (size_t k = 0; k < d; k++) {
            D->X[i * d + k] = em_rng_normal(rng);
            mu += D->X[i * d + k] * truth[1 + k];
        }
        D->y[i] = mu + exp(truth[d + 1]) * em_rng_normal(rng);
    }
    em_rng_destroy(rng);
    free(truth);
    return 0;
}

static void linreg_data_free(linreg_data *D) {
    free(D->X);
    free(D->y);
    D->X = D->y = NULL;
}

#endif
