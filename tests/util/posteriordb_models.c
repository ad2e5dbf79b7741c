/* posteriordb_models.c — the four posteriordb posteriors as Ember models, and their data. */
#include "util/posteriordb_models.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/json.h"

int tu_pdb_dir(const char *posterior, char *buf, size_t buflen) {
    /* make check runs the tests from the repository root; a developer may run one from build/
     * or tests/, so look a few levels up too */
    static const char *const prefixes[] = {"", "../", "../../", "../../../"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        int k = snprintf(buf, buflen, "%stests/data/posteriordb/%s", prefixes[i], posterior);
        if (k < 0 || (size_t)k >= buflen) return -1;
        char probe[4096];
        snprintf(probe, sizeof probe, "%s/data.json", buf);
        if (access(probe, R_OK) == 0) return 0;
    }
    return -1;
}

/* Parse <dir of posterior>/data.json. */
static tu_json *read_data(const char *posterior, char *err, size_t errlen) {
    char dir[1024], path[1100];
    if (tu_pdb_dir(posterior, dir, sizeof dir)) {
        snprintf(err, errlen, "tests/data/posteriordb/%s/data.json not found from the working directory",
                 posterior);
        return NULL;
    }
    snprintf(path, sizeof path, "%s/data.json", dir);
    return tu_json_read_file(path, err, errlen);
}

/* A numeric vector field of exactly n values (n == 0: any length, returned in *len). */
static int get_vector(const tu_json *doc, const char *posterior, const char *key, size_t n,
                      double **out, size_t *len, char *err, size_t errlen) {
    char msg[256];
    size_t got;
    if (tu_json_numbers(tu_json_get(doc, key), out, &got, msg, sizeof msg)) {
        snprintf(err, errlen, "%s/data.json: '%s': %s", posterior, key, msg);
        return -1;
    }
    if (n && got != n) {
        snprintf(err, errlen, "%s/data.json: '%s' has %zu values, expected %zu", posterior, key, got, n);
        free(*out);
        *out = NULL;
        return -1;
    }
    if (len) *len = got;
    return 0;
}

/* A positive integer field. */
static int get_count(const tu_json *doc, const char *posterior, const char *key, size_t *out,
                     char *err, size_t errlen) {
    double v = tu_json_number(tu_json_get(doc, key));
    if (!(v >= 1 && v <= 1e7 && v == floor(v))) {
        snprintf(err, errlen, "%s/data.json: '%s' must be a positive integer (got %g)", posterior, key, v);
        return -1;
    }
    *out = (size_t)v;
    return 0;
}

/* ---- kidiq ------------------------------------------------------------------------------ */

static const char KIDIQ[] = "kidiq-kidscore_momiq";

int tu_pdb_kidiq_load(tu_pdb_kidiq *d, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    tu_json *doc = read_data(KIDIQ, err, errlen);
    if (!doc) return -1;
    int rc = get_count(doc, KIDIQ, "N", &d->N, err, errlen) ||
             get_vector(doc, KIDIQ, "kid_score", d->N, &d->kid_score, NULL, err, errlen) ||
             get_vector(doc, KIDIQ, "mom_iq", d->N, &d->mom_iq, NULL, err, errlen);
    tu_json_free(doc);
    if (rc) tu_pdb_kidiq_free(d);
    return rc ? -1 : 0;
}

void tu_pdb_kidiq_free(tu_pdb_kidiq *d) {
    free(d->kid_score);
    free(d->mom_iq);
    memset(d, 0, sizeof *d);
}

void tu_pdb_kidiq_model(em_model *m, const void *data) {
    const tu_pdb_kidiq *d = data;
    /* Stan's default for a parameter without a sampling statement is the improper flat prior;
     * em_flat is exactly that (log density 0), whereas a wide proper prior would be a
     * different posterior. */
    em_var beta = em_sample(m, "beta", em_flat(m, 2));
    em_var sigma = em_sample(m, "sigma", em_half_cauchy(m, 2.5));
    em_var mu = em_add(m, em_slice(m, beta, 0, 1),
                       em_mul(m, em_slice(m, beta, 1, 1), em_data(m, d->mom_iq, d->N)));
    EM_PLATE(m, p, "data", d->N, 0) {
        em_observe(m, "kid_score", em_normal(m, mu, sigma), d->kid_score, d->N);
    }
}

/* ---- eight schools ------------------------------------------------------------------------ */

static const char EIGHT[] = "eight_schools-eight_schools_noncentered";

int tu_pdb_eight_schools_load(tu_pdb_eight_schools *d, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    tu_json *doc = read_data(EIGHT, err, errlen);
    if (!doc) return -1;
    int rc = get_count(doc, EIGHT, "J", &d->J, err, errlen) ||
             get_vector(doc, EIGHT, "y", d->J, &d->y, NULL, err, errlen) ||
             get_vector(doc, EIGHT, "sigma", d->J, &d->sigma, NULL, err, errlen);
    for (size_t j = 0; !rc && j < d->J; j++) {
        if (!(d->sigma[j] > 0)) {
            snprintf(err, errlen, "%s/data.json: sigma[%zu] = %g must be positive", EIGHT, j, d->sigma[j]);
            rc = 1;
        }
    }
    tu_json_free(doc);
    if (rc) tu_pdb_eight_schools_free(d);
    return rc ? -1 : 0;
}

void tu_pdb_eight_schools_free(tu_pdb_eight_schools *d) {
    free(d->y);
    free(d->sigma);
    memset(d, 0, sizeof *d);
}

void tu_pdb_eight_schools_model(em_model *m, const void *data) {
    const tu_pdb_eight_schools *d = data;
    em_var theta_trans = em_sample(m, "theta_trans", em_expand(em_normal(m, 0.0, 1.0), d->J));
    em_var mu = em_sample(m, "mu", em_normal(m, 0.0, 5.0));
    em_var tau = em_sample(m, "tau", em_half_cauchy(m, 5.0));
    /* the non-centred parameterisation: the sampler sees theta_trans, users read theta */
    em_var theta = em_add(m, mu, em_mul(m, tau, theta_trans));
    em_deterministic(m, "theta", theta);
    EM_PLATE(m, p, "schools", d->J, 0) {
        em_observe(m, "y", em_normal(m, theta, em_data(m, d->sigma, d->J)), d->y, d->J);
    }
}

/* ---- dogs ---------------------------------------------------------------------------------- */

static const char DOGS[] = "dogs-dogs";

int tu_pdb_dogs_load(tu_pdb_dogs *d, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    tu_json *doc = read_data(DOGS, err, errlen);
    if (!doc) return -1;
    char msg[256];
    size_t rows = 0, cols = 0;
    int rc = get_count(doc, DOGS, "n_dogs", &d->n_dogs, err, errlen) ||
             get_count(doc, DOGS, "n_trials", &d->n_trials, err, errlen);
    if (!rc && tu_json_matrix(tu_json_get(doc, "y"), &d->y, &rows, &cols, msg, sizeof msg)) {
        snprintf(err, errlen, "%s/data.json: 'y': %s", DOGS, msg);
        rc = 1;
    }
    if (!rc && (rows != d->n_dogs || cols != d->n_trials)) {
        snprintf(err, errlen, "%s/data.json: 'y' is %zux%zu, expected n_dogs x n_trials = %zux%zu", DOGS,
                 rows, cols, d->n_dogs, d->n_trials);
        rc = 1;
    }
    if (!rc) {
        d->n = rows * cols;
        d->X = malloc(2 * d->n * sizeof *d->X);
        if (!d->X) {
            snprintf(err, errlen, "%s: out of memory", DOGS);
            rc = 1;
        }
    }
    /* model.md's recursions: before trial 1 both counts are 0; each later trial adds
     * 1 - y (the first covariate) or y (the second) of the trial before. */
    for (size_t j = 0; !rc && j < d->n_dogs; j++) {
        double a = 0.0, s = 0.0;
        for (size_t t = 0; t < d->n_trials; t++) {
            size_t r = j * d->n_trials + t;
            double yv = d->y[r];
            if (yv != 0.0 && yv != 1.0) {
                snprintf(err, errlen, "%s/data.json: y[%zu][%zu] = %g is not 0 or 1", DOGS, j, t, yv);
                rc = 1;
                break;
            }
            d->X[2 * r] = a;
            d->X[2 * r + 1] = s;
            a += 1.0 - yv;
            s += yv;
        }
    }
    tu_json_free(doc);
    if (rc) tu_pdb_dogs_free(d);
    return rc ? -1 : 0;
}

void tu_pdb_dogs_free(tu_pdb_dogs *d) {
    free(d->y);
    free(d->X);
    memset(d, 0, sizeof *d);
}

void tu_pdb_dogs_model(em_model *m, const void *data) {
    const tu_pdb_dogs *d = data;
    em_var beta = em_sample(m, "beta", em_expand(em_normal(m, 0.0, 100.0), 3));
    /* the fused GLM node: logit = beta[1] + X · beta[2:3] */
    em_var X = em_const_matrix(em_model_tape(m), d->X, d->n, 2);
    em_var alpha = em_slice(m, beta, 0, 1);
    em_var b = em_slice(m, beta, 1, 2);
    EM_PLATE(m, p, "outcomes", d->n, 0) {
        em_observe(m, "y", em_bernoulli_logit_glm(m, X, alpha, b), d->y, d->n);
    }
}

/* ---- GP Poisson regression -------------------------------------------------------------------- */

static const char GP[] = "gp_pois_regr-gp_pois_regr";

int tu_pdb_gp_load(tu_pdb_gp *d, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    tu_json *doc = read_data(GP, err, errlen);
    if (!doc) return -1;
    int rc = get_count(doc, GP, "N", &d->N, err, errlen) ||
             get_vector(doc, GP, "x", d->N, &d->x, NULL, err, errlen) ||
             get_vector(doc, GP, "k", d->N, &d->k, NULL, err, errlen);
    for (size_t i = 0; !rc && i < d->N; i++) {
        if (!(d->k[i] >= 0 && d->k[i] == floor(d->k[i]))) {
            snprintf(err, errlen, "%s/data.json: k[%zu] = %g is not a count", GP, i, d->k[i]);
            rc = 1;
        }
    }
    size_t N = d->N;
    if (!rc) {
        d->half_neg_sqdist = malloc(N * N * sizeof(double));
        d->jitter = calloc(N * N, sizeof(double));
        if (!d->half_neg_sqdist || !d->jitter) {
            snprintf(err, errlen, "%s: out of memory", GP);
            rc = 1;
        }
    }
    for (size_t i = 0; !rc && i < N; i++) {
        for (size_t j = 0; j < N; j++) {
            double dx = d->x[i] - d->x[j];
            d->half_neg_sqdist[i * N + j] = -0.5 * dx * dx;
        }
        d->jitter[i * N + i] = TU_PDB_GP_JITTER;
    }
    tu_json_free(doc);
    if (rc) tu_pdb_gp_free(d);
    return rc ? -1 : 0;
}

void tu_pdb_gp_free(tu_pdb_gp *d) {
    free(d->x);
    free(d->k);
    free(d->half_neg_sqdist);
    free(d->jitter);
    memset(d, 0, sizeof *d);
}

void tu_pdb_gp_model(em_model *m, const void *data) {
    const tu_pdb_gp *d = data;
    em_tape *t = em_model_tape(m);
    size_t N = d->N;
    em_var rho = em_sample(m, "rho", em_gamma(m, 25.0, 4.0));
    em_var alpha = em_sample(m, "alpha", em_half_normal(m, 2.0));
    em_var f_tilde = em_sample(m, "f_tilde", em_expand(em_normal(m, 0.0, 1.0), N));
    /* Stan's gp_exp_quad_cov plus the model's 1e-10 jitter: one elementwise node per step over
     * the whole N×N matrix (elementwise ops keep the matrix shape that em_cholesky needs) */
    em_var H = em_const_matrix(t, d->half_neg_sqdist, N, N);
    em_var K = em_mul(m, em_square(m, alpha), em_exp(m, em_div(m, H, em_square(m, rho))));
    K = em_add(m, K, em_const_matrix(t, d->jitter, N, N));
    em_var L = em_cholesky(m, K);
    em_var f = em_matvec(m, L, f_tilde);
    em_deterministic(m, "f", f);
    EM_PLATE(m, p, "data", N, 0) {
        em_observe(m, "k", em_poisson_log(m, f), d->k, N);
    }
}
