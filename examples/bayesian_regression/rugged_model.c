/* rugged_model.c — the rugged regression model and its data. See rugged_model.h. */
#include "rugged_model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The interaction column and the design matrix [A, R, A·R] (one row per country). */
static void fill_interaction(rugged_data *d) {
    for (size_t i = 0; i < d->n; i++) {
        d->africa_x_rugged[i] = d->africa[i] * d->rugged[i];
        d->X[3 * i] = d->africa[i];
        d->X[3 * i + 1] = d->rugged[i];
        d->X[3 * i + 2] = d->africa_x_rugged[i];
    }
}

em_status rugged_data_load(const char *path, rugged_data *d, em_error *err) {
    memset(d, 0, sizeof *d);
    const char *cols[] = {"cont_africa", "rugged", "rgdppc_2000"};
    em_csv_options opt = {.missing = EM_CSV_MISSING_DROP_ROW};
    em_status s = em_csv_read(path, cols, 3, &opt, &d->table, err);
    if (s != EM_OK) return s;
    if (d->table->nrows == 0) {
        /* nothing below (nor the model) has a row to read: say why there is none */
        if (d->table->dropped)
            em_error_set(err, EM_ERR_PARSE, "%s: no usable rows: all %zu data rows miss cont_africa, rugged or "
                         "rgdppc_2000", path, d->table->dropped);
        else
            em_error_set(err, EM_ERR_PARSE, "%s: no data rows after the header", path);
        rugged_data_free(d);
        return EM_ERR_PARSE;
    }
    d->n = d->table->nrows;
    d->africa = d->table->cols[0];
    d->rugged = d->table->cols[1];
    d->africa_x_rugged = malloc(d->n * sizeof(double));
    d->log_gdp = malloc(d->n * sizeof(double));
    d->X = malloc(3 * d->n * sizeof(double));
    if (!d->africa_x_rugged || !d->log_gdp || !d->X) {
        rugged_data_free(d);
        return em_error_set(err, EM_ERR_NOMEM, "%s: out of memory", path);
    }
    for (size_t i = 0; i < d->n; i++) {
        double gdp = d->table->cols[2][i];
        if (!(gdp > 0.0)) {
            em_error_set(err, EM_ERR_DOMAIN, "%s:%zu: rgdppc_2000 = %g must be positive to take its log", path,
                         d->table->line[i], gdp);
            rugged_data_free(d);
            return EM_ERR_DOMAIN;
        }
        if (d->africa[i] != 0.0 && d->africa[i] != 1.0) {
            em_error_set(err, EM_ERR_DOMAIN, "%s:%zu: cont_africa = %g must be 0 or 1", path, d->table->line[i],
                         d->africa[i]);
            rugged_data_free(d);
            return EM_ERR_DOMAIN;
        }
        d->log_gdp[i] = log(gdp);
    }
    fill_interaction(d);
    return EM_OK;
}

em_status rugged_data_predictors(rugged_data *d, const double *africa, const double *rugged, size_t n,
                                 em_error *err) {
    memset(d, 0, sizeof *d);
    if (n == 0) return em_error_set(err, EM_ERR_ARG, "rugged predictors: no rows");
    d->n = n;
    d->africa = africa;
    d->rugged = rugged;
    d->africa_x_rugged = malloc(n * sizeof(double));
    d->X = malloc(3 * n * sizeof(double));
    if (!d->africa_x_rugged || !d->X) {
        rugged_data_free(d);
        return em_error_set(err, EM_ERR_NOMEM, "rugged predictors: out of memory");
    }
    fill_interaction(d);
    return EM_OK;
}

void rugged_data_free(rugged_data *d) {
    free(d->africa_x_rugged);
    free(d->X);
    free(d->log_gdp);
    em_csv_table_free(d->table);
    memset(d, 0, sizeof *d);
}

void rugged_model(em_model *m, const void *arg) {
    const rugged_data *d = arg;
    em_var a = em_sample(m, "a", em_normal(m, 0.0, 10.0));
    em_var bA = em_sample(m, "bA", em_normal(m, 0.0, 1.0));
    em_var bR = em_sample(m, "bR", em_normal(m, 0.0, 1.0));
    em_var bAR = em_sample(m, "bAR", em_normal(m, 0.0, 1.0));
    em_var sigma = em_sample(m, "sigma", em_uniform(m, 0.0, 10.0));
    /* mean = a + [A, R, A·R]·[bA, bR, bAR], recorded for predictive output. The likelihood is
     * the same Normal(mean, sigma) written as the fused GLM (as Stan's normal_id_glm): one pass
     * over the 170×3 design gives the density and every partial. When the density is replayed
     * for HMC, the mean node feeds nothing the density needs and is skipped. */
    const em_var slopes[3] = {bA, bR, bAR};
    em_var beta = em_op_concat(em_model_tape(m), slopes, 3);
    em_var X = em_const_matrix(em_model_tape(m), d->X, d->n, 3);
    em_deterministic(m, "mean", em_matvec_add(m, X, beta, a));
    EM_PLATE(m, p, "data", d->n, 0) {
        em_observe(m, "obs", em_normal_id_glm(m, X, a, beta, sigma), d->log_gdp ? d->log_gdp : d->africa_x_rugged,
                   d->n);
    }
}

double rugged_logdensity_by_hand(const rugged_data *d, const double *th, double *grad) {
    const double log_sqrt_2pi = 0.91893853320467274178;
    double a = th[0], bA = th[1], bR = th[2], bAR = th[3], u = th[4];
    /* sigma = 10·sigmoid(u), computed stably; log|dsigma/du| = log 10 + log σ(u) + log σ(-u) */
    double sg = u >= 0 ? 1.0 / (1.0 + exp(-u)) : exp(u) / (1.0 + exp(u));
    double sigma = 10.0 * sg;
    double log_sg = u >= 0 ? -log1p(exp(-u)) : u - log1p(exp(u));
    double log_1msg = u >= 0 ? -u - log1p(exp(-u)) : -log1p(exp(u));
    double lp = -0.5 * (a / 10.0) * (a / 10.0) - log(10.0) - log_sqrt_2pi;
    lp += -0.5 * (bA * bA + bR * bR + bAR * bAR) - 3.0 * log_sqrt_2pi;
    lp += -log(10.0);                           /* Uniform(0, 10) */
    lp += log(10.0) + log_sg + log_1msg;        /* Jacobian */
    double ss = 0.0, ga = 0.0, gA = 0.0, gR = 0.0, gAR = 0.0;
    for (size_t i = 0; i < d->n; i++) {
        double mu = a + bA * d->africa[i] + bR * d->rugged[i] + bAR * d->africa_x_rugged[i];
        double r = d->log_gdp[i] - mu;
        ss += r * r;
        ga += r;
        gA += r * d->africa[i];
        gR += r * d->rugged[i];
        gAR += r * d->africa_x_rugged[i];
    }
    double n = (double)d->n;
    lp += -0.5 * ss / (sigma * sigma) - n * log(sigma) - n * log_sqrt_2pi;
    if (grad) {
        double s2 = sigma * sigma;
        grad[0] = ga / s2 - a / 100.0;
        grad[1] = gA / s2 - bA;
        grad[2] = gR / s2 - bR;
        grad[3] = gAR / s2 - bAR;
        double dsigma = ss / (s2 * sigma) - n / sigma;
        grad[4] = dsigma * 10.0 * sg * (1.0 - sg) + (1.0 - 2.0 * sg);
    }
    return lp;
}
