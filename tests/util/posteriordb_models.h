/* posteriordb_models.h — four posteriordb reference posteriors written as Ember models, with
 * loaders for their data files (tests/data/posteriordb/<name>/data.json).
 *
 * They are shared test fixtures: tests/test_posteriordb.c checks NUTS against Stan's reference
 * draws with them, and any other engine test (SVI, Laplace) can reuse them. Each model follows
 * the folder's model.md term by term, so the posterior is exactly posteriordb's (constants
 * aside); the names of latent and deterministic sites are Stan's, so "beta.1" here is
 * "beta[1]" in the reference summary.
 */
#ifndef EMBER_TESTS_POSTERIORDB_MODELS_H
#define EMBER_TESTS_POSTERIORDB_MODELS_H

#include <stddef.h>

#include "ember.h"

/* kidiq-kidscore_momiq: kid_score ~ Normal(beta[1] + beta[2] * mom_iq, sigma), flat priors on
 * beta, sigma ~ half-Cauchy(0, 2.5). Latents: beta (2), sigma. */
typedef struct tu_pdb_kidiq {
    size_t N;
    double *kid_score, *mom_iq;
} tu_pdb_kidiq;

/* eight_schools-eight_schools_noncentered. Latents: theta_trans (8), mu, tau; deterministic
 * theta = mu + tau * theta_trans. */
typedef struct tu_pdb_eight_schools {
    size_t J;
    double *y, *sigma;
} tu_pdb_eight_schools;

/* dogs-dogs (31 dogs x 25 trials). Latent beta (3). The covariates are the running counts of
 * model.md, one row per (dog, trial), dog-major: X[r][0] = n_avoid, X[r][1] = n_shock. */
typedef struct tu_pdb_dogs {
    size_t n_dogs, n_trials, n; /* n = n_dogs * n_trials outcomes */
    double *y;                  /* n outcomes in {0, 1} */
    double *X;                  /* n x 2, row-major */
} tu_pdb_dogs;

/* gp_pois_regr-gp_pois_regr. Latents: rho, alpha, f_tilde (N); deterministic f = L * f_tilde
 * with L the Cholesky factor of K = alpha^2 exp(-(x_i - x_j)^2 / (2 rho^2)) + 1e-10 I. */
typedef struct tu_pdb_gp {
    size_t N;
    double *x, *k;
    double *half_neg_sqdist; /* N x N: -(x_i - x_j)^2 / 2 */
    double *jitter;          /* N x N: 1e-10 on the diagonal */
} tu_pdb_gp;

#define TU_PDB_GP_JITTER 1e-10

/* The directory of a posterior's files, found from the working directory (the repository root,
 * as make check runs tests, or a few levels below it). Returns 0 and fills buf, or -1. */
int tu_pdb_dir(const char *posterior, char *buf, size_t buflen);

/* Loaders: 0 on success, -1 with a message naming the file and field in err. Free with the
 * matching _free (safe on a zeroed or partly filled struct). */
int tu_pdb_kidiq_load(tu_pdb_kidiq *d, char *err, size_t errlen);
int tu_pdb_eight_schools_load(tu_pdb_eight_schools *d, char *err, size_t errlen);
int tu_pdb_dogs_load(tu_pdb_dogs *d, char *err, size_t errlen);
int tu_pdb_gp_load(tu_pdb_gp *d, char *err, size_t errlen);
void tu_pdb_kidiq_free(tu_pdb_kidiq *d);
void tu_pdb_eight_schools_free(tu_pdb_eight_schools *d);
void tu_pdb_dogs_free(tu_pdb_dogs *d);
void tu_pdb_gp_free(tu_pdb_gp *d);

/* The models (data: a pointer to the matching struct). */
void tu_pdb_kidiq_model(em_model *m, const void *data);
void tu_pdb_eight_schools_model(em_model *m, const void *data);
void tu_pdb_dogs_model(em_model *m, const void *data);
void tu_pdb_gp_model(em_model *m, const void *data);

#endif
