/* rugged_model.h — the terrain-ruggedness regression of Pyro's Bayesian-regression tutorials
 * (Nunn & Puga 2012 data), written in Ember's model language, and its data.
 *
 *   log GDP_i ~ Normal(a + bA·A_i + bR·R_i + bAR·A_i·R_i, sigma),  i = 1..170
 *   a ~ Normal(0, 10);  bA, bR, bAR ~ Normal(0, 1);  sigma ~ Uniform(0, 10)
 *
 * with A = cont_africa, R = rugged; rows without rgdppc_2000 are dropped (170 remain).
 * Shared by the example program, the tests and the benchmarks.
 */
#ifndef RUGGED_MODEL_H
#define RUGGED_MODEL_H

#include "ember.h"

typedef struct rugged_data {
    size_t n;
    const double *africa;    /* cont_africa (0/1) */
    const double *rugged;    /* terrain ruggedness index */
    double *africa_x_rugged; /* the interaction, computed on load */
    double *X;               /* n×3 row-major design matrix [A, R, A·R], computed on load */
    double *log_gdp;         /* NULL when the data are only predictors (a grid for predictions) */
    em_csv_table *table;     /* owns africa and rugged when loaded from a file */
} rugged_data;

/* Read cont_africa, rugged and rgdppc_2000 from the CSV at path, dropping rows without GDP. */
em_status rugged_data_load(const char *path, rugged_data *d, em_error *err);
/* Predictors only (no response): for predictions at new points. africa/rugged are referenced. */
em_status rugged_data_predictors(rugged_data *d, const double *africa, const double *rugged, size_t n,
                                 em_error *err);
void rugged_data_free(rugged_data *d);

/* The model (Part 2's site names: a, bA, bR, bAR, sigma, then "mean" and "obs"). The regression
 * line is recorded as the deterministic site "mean". Without log_gdp the site "obs" is still
 * declared (observed at zeros) so that predictive runs can draw it. */
void rugged_model(em_model *m, const void *data);

/* The exact log density of the model on the unconstrained space θ = (a, bA, bR, bAR,
 * logit(sigma/10)), written by hand, with its gradient (NULL to skip). For tests and benches. */
double rugged_logdensity_by_hand(const rugged_data *d, const double *theta, double *grad);

#endif
