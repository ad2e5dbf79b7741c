/* sbc_families.c — simulation-based calibration of NUTS on every family issue #16 added.
 *
 *   sbc_families [--sbc R] [--family NAME] [--threads N] [--seed S] [--warmup N] [--samples N] [--list]
 *
 * For each family a small regression (two to five parameters, 40 or 50 observations of one
 * covariate, proper priors to simulate from) goes through em_sbc_run (Talts, Betancourt,
 * Simpson, Vehtari & Gelman 2018, "Validating Bayesian inference algorithms with
 * simulation-based calibration", arXiv:1804.06788): R replications, each drawing the
 * parameters from the prior, simulating the data, fitting one NUTS chain and ranking the truth
 * among L = 99 draws thinned by the effective sample size.
 *
 * Censoring needs one step more than the calibration module gives: a censored observation is
 * a coarsened value (the time when the study ended, the detection limit, the interval a value
 * fell in) and whether it is censored depends on the value drawn. The prior predictive
 * therefore draws the uncensored value y* from the base family, and a custom engine coarsens
 * y* at fixed thresholds (the indicator vector brms's cens() takes) and fits the censored
 * model to that; the posterior given the coarsened data is then the one whose ranks must be
 * uniform. Truncated sites need nothing of the kind: their draws stay inside the bounds.
 *
 * With --sbc R (`make sbc` passes 400) the acceptance of issue #16 is checked and the program
 * exits 1 when a family fails it: every parameter's rank histogram has a chi-square p-value
 * above 0.001, no replication failed, and the family's 90% intervals cover the truth 86–94% of
 * the time. The coverage is the mean over the family's parameters: one parameter's coverage
 * over 400 replications has a binomial error of 1.5%, so the band 86–94% (±2.7 errors) would
 * fail a correct sampler about once in 140 parameters, and there are 80; the family mean has a
 * smaller error, and each parameter's coverage is printed beside it. The seed is fixed, so the
 * verdict is the same on every run. Without --sbc a short run (R = 20, nothing checked) serves
 * as the benchmark of `make bench`. The table goes to stderr, one JSON line per family to
 * stdout (as for the other benchmarks).
 */
#include "ember.h"

#include "bench.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_cdf.h>

enum { N = 40, NMIX = 50, NTRIALS = 10, NCUT = 3 };

/* One covariate, standardised normal scores in a shuffled order, and a second column (its
 * square, centred) for the fused GLMs' two-column design matrix; an offset (a log exposure). */
typedef struct fam_data {
    double x[NMIX];
    double X[NMIX * 2];
    double offset[NMIX];
    double trials[NMIX];
    double ones[NMIX];      /* in-support values for the continuous positive and unit sites */
    double halves[NMIX];
    double zeros[NMIX];     /* the count and category sites */
} fam_data;

static fam_data D;

static void data_init(void) {
    for (size_t i = 0; i < NMIX; i++) {
        size_t k = (i * 17) % NMIX; /* 17 is coprime to 50 and 40: a permutation */
        D.x[i] = gsl_cdf_ugaussian_Pinv(((double)k + 0.5) / NMIX);
    }
    for (size_t i = 0; i < NMIX; i++) {
        D.X[2 * i] = D.x[i];
        D.X[2 * i + 1] = D.x[i] * D.x[i] - 1.0;
        D.offset[i] = 0.3 * sin((double)i);
        D.trials[i] = NTRIALS;
        D.ones[i] = 1.0;
        D.halves[i] = 0.5;
        D.zeros[i] = 0.0;
    }
}

/* a + b·x over the first n rows, with a ~ N(a_loc, a_sd) and b ~ N(0, b_sd) */
static em_var linear(em_model *m, double a_loc, double a_sd, double b_sd, size_t n) {
    em_var a = em_sample(m, "a", em_normal(m, a_loc, a_sd));
    em_var b = em_sample(m, "b", em_normal(m, 0.0, b_sd));
    return em_add(m, a, em_mul(m, b, em_data(m, D.x, n)));
}

/* ---- the families ----------------------------------------------------------------------------- */

static void m_weibull(em_model *m, const void *arg) {
    (void)arg;
    em_var eta = linear(m, 0.0, 0.5, 0.5, N);
    em_var k = em_sample(m, "shape", em_lognormal(m, 0.3, 0.3));
    em_observe(m, "y", em_weibull(m, k, em_exp(m, eta)), D.ones, N);
}

static void m_skew_normal(em_model *m, const void *arg) {
    (void)arg;
    em_var xi = linear(m, 0.0, 1.0, 0.5, N);
    em_var omega = em_sample(m, "omega", em_lognormal(m, 0.0, 0.3));
    em_var alpha = em_sample(m, "alpha", em_normal(m, 0.0, 2.0));
    em_observe(m, "y", em_skew_normal(m, xi, omega, alpha), D.zeros, N);
}

static void m_beta_binomial(em_model *m, const void *arg) {
    (void)arg;
    em_var mu = em_inv_logit(m, linear(m, 0.0, 0.5, 0.5, N));
    em_var phi = em_sample(m, "phi", em_lognormal(m, 2.0, 0.5));
    em_observe(m, "y", em_beta_binomial(m, D.trials, N, em_mul(m, mu, phi), em_mul(m, em_sub(m, 1.0, mu), phi)),
               D.zeros, N);
}

static void m_beta_proportion(em_model *m, const void *arg) {
    (void)arg;
    em_var mu = em_inv_logit(m, linear(m, 0.0, 0.5, 0.5, N));
    em_var kappa = em_sample(m, "kappa", em_lognormal(m, 2.5, 0.4));
    em_observe(m, "y", em_beta_proportion(m, mu, kappa), D.halves, N);
}

/* Gamma(shape, rate) with the mean e^eta: rate = shape · e^-eta */
static void m_gamma(em_model *m, const void *arg) {
    (void)arg;
    em_var eta = linear(m, 0.5, 0.5, 0.5, N);
    em_var shape = em_sample(m, "shape", em_lognormal(m, 1.0, 0.5));
    em_observe(m, "y", em_gamma(m, shape, em_mul(m, shape, em_exp(m, em_neg(m, eta)))), D.ones, N);
}

static void m_gamma_mean(em_model *m, const void *arg) {
    (void)arg;
    em_var eta = linear(m, 0.5, 0.5, 0.5, N);
    em_var shape = em_sample(m, "shape", em_lognormal(m, 1.0, 0.5));
    em_observe(m, "y", em_gamma_mean(m, em_exp(m, eta), shape), D.ones, N);
}

static void m_gamma_log_glm(em_model *m, const void *arg) {
    (void)arg;
    em_var a = em_sample(m, "a", em_normal(m, 0.5, 0.5));
    em_var b = em_sample(m, "b", em_normal(m, em_data(m, D.zeros, 2), 0.5));
    em_var shape = em_sample(m, "shape", em_lognormal(m, 1.0, 0.5));
    em_observe(m, "y", em_gamma_log_glm(m, em_data_matrix(m, D.X, N, 2), a, b, shape, D.offset), D.ones, N);
}

static void m_lognormal(em_model *m, const void *arg) {
    (void)arg;
    em_var mu = linear(m, 0.0, 1.0, 0.5, N);
    em_var sigma = em_sample(m, "sigma", em_half_normal(m, 1.0));
    em_observe(m, "y", em_lognormal(m, mu, sigma), D.ones, N);
}

static void m_nb2_log(em_model *m, const void *arg) {
    (void)arg;
    em_var eta = linear(m, 1.0, 0.5, 0.5, N);
    em_var phi = em_sample(m, "phi", em_lognormal(m, 1.0, 0.5));
    em_observe(m, "y", em_neg_binomial2_log(m, eta, phi), D.zeros, N);
}

static void m_nb2_log_glm(em_model *m, const void *arg) {
    (void)arg;
    em_var a = em_sample(m, "a", em_normal(m, 1.0, 0.5));
    em_var b = em_sample(m, "b", em_normal(m, em_data(m, D.zeros, 2), 0.5));
    em_var phi = em_sample(m, "phi", em_lognormal(m, 1.0, 0.5));
    em_observe(m, "y", em_neg_binomial2_log_glm(m, em_data_matrix(m, D.X, N, 2), a, b, phi, D.offset), D.zeros, N);
}

/* Cut points through the ordered transform: c_1 free, each further gap e^{free value}. The prior
 * is on the free values (c_1 ~ N(-1, 1), log gaps ~ N(0, 0.5)), so it needs no Jacobian. */
static const double CUT_LOC[NCUT] = {-1.0, 0.0, 0.0}, CUT_SD[NCUT] = {1.0, 0.5, 0.5};
static em_var cutpoints(em_model *m) {
    static const em_transform ord = {EM_TRANSFORM_ORDERED, 0, 0};
    em_var raw = em_sample(m, "c_raw", em_normal(m, em_data(m, CUT_LOC, NCUT), em_data(m, CUT_SD, NCUT)));
    return em_transform_forward(EM_T(m), &ord, raw, NULL);
}

static void ordered(em_model *m, int probit) {
    em_var b = em_sample(m, "b", em_normal(m, 0.0, 1.0));
    em_var eta = em_mul(m, b, em_data(m, D.x, N));
    em_var c = cutpoints(m);
    em_observe(m, "y", probit ? em_ordered_probit(m, eta, c) : em_ordered_logistic(m, eta, c), D.zeros, N);
}
static void m_ordered_logistic(em_model *m, const void *arg) { (void)arg; ordered(m, 0); }
static void m_ordered_probit(em_model *m, const void *arg) { (void)arg; ordered(m, 1); }

static void m_ordered_logistic_glm(em_model *m, const void *arg) {
    (void)arg;
    em_var b = em_sample(m, "b", em_normal(m, em_data(m, D.zeros, 2), 1.0));
    em_var c = cutpoints(m);
    em_observe(m, "y", em_ordered_logistic_glm(m, em_data_matrix(m, D.X, N, 2), b, c, NULL), D.zeros, N);
}

static void m_zip(em_model *m, const void *arg) {
    (void)arg;
    em_var rate = em_exp(m, linear(m, 1.0, 0.5, 0.5, N));
    em_var zi = em_sample(m, "zi", em_beta(m, 2.0, 6.0));
    em_observe(m, "y", em_zero_inflated_poisson(m, rate, zi), D.zeros, N);
}

static void m_zinb(em_model *m, const void *arg) {
    (void)arg;
    em_var mu = em_exp(m, linear(m, 1.0, 0.5, 0.5, N));
    em_var phi = em_sample(m, "phi", em_lognormal(m, 1.0, 0.5));
    em_var zi = em_sample(m, "zi", em_beta(m, 2.0, 6.0));
    em_observe(m, "y", em_zero_inflated_neg_binomial2(m, mu, phi, zi), D.zeros, N);
}

static void m_hurdle_poisson(em_model *m, const void *arg) {
    (void)arg;
    em_var rate = em_exp(m, linear(m, 1.0, 0.5, 0.5, N));
    em_var hu = em_sample(m, "hu", em_beta(m, 3.0, 4.0));
    em_observe(m, "y", em_hurdle_poisson(m, rate, hu), D.zeros, N);
}

static void m_hurdle_nb(em_model *m, const void *arg) {
    (void)arg;
    em_var mu = em_exp(m, linear(m, 1.0, 0.5, 0.5, N));
    em_var phi = em_sample(m, "phi", em_lognormal(m, 1.0, 0.5));
    em_var hu = em_sample(m, "hu", em_beta(m, 3.0, 4.0));
    em_observe(m, "y", em_hurdle_neg_binomial2(m, mu, phi, hu), D.zeros, N);
}

/* Two normal components sharing a slope and a scale, weights on the simplex. The locations are
 * ordered (brms's mixture(order = TRUE)) through the ordered transform: mu = (m_1, m_1 + e^g),
 * the prior on the free values m_1 ~ N(-1.5, 0.5) and g ~ N(log 3, 0.2). Unordered, the labels
 * are not identified: a chain that starts with the components the wrong way round stays in that
 * mirror mode (its prior weight is e^-36 of the other, yet 50 observations wall it off), which
 * cost the 90% intervals of mu 4 points of coverage over 600 replications. */
static const double MIX_CONC[2] = {4.0, 4.0}, MU_LOC[2] = {-1.5, 1.0986122886681098}, MU_SD[2] = {0.5, 0.2};
static void m_mixture(em_model *m, const void *arg) {
    (void)arg;
    static const em_transform ord = {EM_TRANSFORM_ORDERED, 0, 0};
    em_var w = em_sample(m, "w", em_dirichlet(m, em_data(m, MIX_CONC, 2)));
    em_var raw = em_sample(m, "mu_raw", em_normal(m, em_data(m, MU_LOC, 2), em_data(m, MU_SD, 2)));
    em_var mu = em_transform_forward(EM_T(m), &ord, raw, NULL);
    em_var b = em_sample(m, "b", em_normal(m, 0.0, 0.5));
    em_var sigma = em_sample(m, "sigma", em_lognormal(m, -0.5, 0.25));
    em_var bx = em_mul(m, b, em_data(m, D.x, NMIX));
    em_dist comp[2] = {em_normal(m, em_add(m, em_slice(m, mu, 0, 1), bx), sigma),
                       em_normal(m, em_add(m, em_slice(m, mu, 1, 1), bx), sigma)};
    em_observe(m, "y", em_mixture(m, w, comp, 2), D.zeros, NMIX);
}

/* A truncated observe site ([0, 3]: its prior-predictive draws stay inside) and a
 * lower-truncated prior (sigma: Normal(1, 1) cut at 0). */
static void m_truncated(em_model *m, const void *arg) {
    (void)arg;
    em_var mu = linear(m, 1.0, 0.5, 0.5, N);
    em_dist sp = em_normal(m, 1.0, 1.0);
    em_var sigma = em_sample(m, "sigma", em_truncated(m, &sp, 0.0, INFINITY));
    em_dist lik = em_normal(m, mu, sigma);
    em_observe(m, "y", em_truncated(m, &lik, 0.0, 3.0), D.halves, N);
}

/* brms's default prior on sigma: half-Student-t(3, 0, 1) */
static void m_half_student_t(em_model *m, const void *arg) {
    (void)arg;
    em_var mu = linear(m, 0.0, 1.0, 0.5, N);
    em_var sigma = em_sample(m, "sigma", em_half_student_t(m, 3.0, 1.0));
    em_observe(m, "y", em_normal(m, mu, sigma), D.zeros, N);
}

/* ---- censoring: the model simulated from (y* uncensored) and the one fitted ---------------------- */

/* The coarsened data the fitted model sees. */
typedef struct cens_data {
    double y[N], cens[N], upper[N];
} cens_data;

/* Normal regression, coarsened three ways: below the detection limit -1 left-censored, above
 * 1.5 right-censored, and every third remaining value only known to the half-unit interval it
 * fell in (interval-censored). */
static void normal_base(em_model *m, em_var *mu, em_var *sigma) {
    *mu = linear(m, 0.0, 1.0, 0.5, N);
    *sigma = em_sample(m, "sigma", em_lognormal(m, -0.3, 0.3));
}
static void m_cens_normal_sim(em_model *m, const void *arg) {
    (void)arg;
    em_var mu, sigma;
    normal_base(m, &mu, &sigma);
    em_observe(m, "y", em_normal(m, mu, sigma), D.zeros, N);
}
static void m_cens_normal_fit(em_model *m, const void *arg) {
    const cens_data *c = arg;
    em_var mu, sigma;
    normal_base(m, &mu, &sigma);
    em_dist base = em_normal(m, mu, sigma);
    em_observe(m, "y", em_censored(&base, c->cens, c->upper, N), c->y, N);
}
static void coarsen_normal(const double *ystar, cens_data *c) {
    for (size_t i = 0; i < N; i++) {
        double y = ystar[i];
        c->upper[i] = 0.0;
        if (y < -1.0) {
            c->y[i] = -1.0, c->cens[i] = -1; /* log F(-1) */
        } else if (y > 1.5) {
            c->y[i] = 1.5, c->cens[i] = 1; /* log(1 - F(1.5)) */
        } else if (i % 3 == 0) {
            double lo = 0.5 * floor(y / 0.5);
            c->y[i] = lo, c->upper[i] = lo + 0.5, c->cens[i] = 2; /* log(F(lo + 0.5) - F(lo)) */
        } else {
            c->y[i] = y, c->cens[i] = 0;
        }
    }
}

/* Weibull survival times with administrative right censoring: unit i is followed for 1, 1.5 or
 * 2 time units (by i mod 3) and a later event is known only to come after that. */
static void weibull_base(em_model *m, em_var *k, em_var *scale) {
    *scale = em_exp(m, linear(m, 0.0, 0.5, 0.5, N));
    *k = em_sample(m, "shape", em_lognormal(m, 0.3, 0.3));
}
static void m_cens_weibull_sim(em_model *m, const void *arg) {
    (void)arg;
    em_var k, scale;
    weibull_base(m, &k, &scale);
    em_observe(m, "y", em_weibull(m, k, scale), D.ones, N);
}
static void m_cens_weibull_fit(em_model *m, const void *arg) {
    const cens_data *c = arg;
    em_var k, scale;
    weibull_base(m, &k, &scale);
    em_dist base = em_weibull(m, k, scale);
    em_observe(m, "y", em_censored(&base, c->cens, NULL, N), c->y, N);
}
static void coarsen_weibull(const double *ystar, cens_data *c) {
    for (size_t i = 0; i < N; i++) {
        double follow = 1.0 + 0.5 * (double)(i % 3);
        c->upper[i] = 0.0;
        if (ystar[i] > follow) c->y[i] = follow, c->cens[i] = 1;
        else c->y[i] = ystar[i], c->cens[i] = 0;
    }
}

typedef struct cens_spec {
    em_model_fn fit;
    void (*coarsen)(const double *ystar, cens_data *c);
    const em_mcmc_config *mcmc;
} cens_spec;

/* The custom engine: coarsen the simulated y*, fit the censored model with one NUTS chain, and
 * keep ndraws draws thinned by the smallest bulk or tail ESS over the parameters (Talts et al.
 * §5.1), as the module's own NUTS engine does; a chain with too few effective draws is run once
 * more, four times as long. */
static em_status censored_engine(void *ctx, const em_sbc_dataset *ds, em_rng *rng, size_t ndraws, double *draws,
                                 em_error *err) {
    (void)rng;
    const cens_spec *cs = ctx;
    if (ds->nobs != 1 || ds->obs_lens[0] != N)
        return em_error_set(err, EM_ERR_MODEL, "censored engine: expected one observe site of %d values", N);
    cens_data c;
    cs->coarsen(ds->obs_values[0], &c);
    em_logdensity *ld = em_logdensity_from_model(cs->fit, &c, &(em_logdensity_options){.seed = ds->seed}, err);
    if (!ld) return err ? err->status : EM_ERR_MODEL;
    size_t P = ds->num_params;
    em_mcmc_config mc = *cs->mcmc;
    mc.num_chains = 1;
    mc.num_threads = 1;
    mc.seed = ds->seed;
    em_status s = em_logdensity_num_outputs(ld) == P
                      ? EM_OK
                      : em_error_set(err, EM_ERR_MODEL, "censored engine: the fitted model has %zu values, not %zu",
                                     em_logdensity_num_outputs(ld), P);
    double *all = NULL;
    for (int attempt = 0; attempt < 2 && s == EM_OK; attempt++) {
        em_mcmc_result *mr = NULL;
        s = em_mcmc_run(ld, &mc, &mr, err);
        size_t n = s == EM_OK ? em_mcmc_extract(mr, EM_MCMC_NUM_SAMPLER_COLS, NULL) : 0;
        free(all);
        all = s == EM_OK ? malloc((n ? n : 1) * P * sizeof *all) : NULL;
        if (s == EM_OK && (!all || n == 0)) s = em_error_set(err, EM_ERR_NOMEM, "censored engine: no draws or no memory");
        for (size_t j = 0; j < P && s == EM_OK; j++) em_mcmc_extract(mr, EM_MCMC_NUM_SAMPLER_COLS + j, all + j * n);
        em_mcmc_result_free(mr);
        if (s != EM_OK) break;
        double ess = (double)n;
        for (size_t j = 0; j < P; j++) {
            double b = em_ess_bulk(all + j * n, 1, n, NULL), t = em_ess_tail(all + j * n, 1, n, NULL);
            if (!(b >= 1.0)) b = 1.0; /* undefined ESS (a stuck chain) counts as 1 */
            if (!(t >= 1.0)) t = 1.0;
            ess = fmin(ess, fmin(b, t));
        }
        size_t thin = ess >= (double)n ? 1 : (size_t)ceil((double)n / ess), avail = (n + thin - 1) / thin;
        if (avail < ndraws && attempt == 0) {
            mc.num_samples *= 4;
            continue;
        }
        if (avail < ndraws) {
            s = em_error_set(err, EM_ERR_NUMERIC, "censored engine: %zu effective draws of %zu after a rerun", avail,
                             ndraws);
            break;
        }
        for (size_t l = 0; l < ndraws; l++) {
            size_t i = (size_t)((double)l * (double)avail / (double)ndraws) * thin;
            for (size_t j = 0; j < P; j++) draws[l * P + j] = all[j * n + i];
        }
        break;
    }
    free(all);
    em_logdensity_destroy(ld);
    return s;
}

/* ---- the table ---------------------------------------------------------------------------------- */

typedef struct family {
    const char *name;
    em_model_fn model;
    em_model_fn cens_fit; /* censored families: the model fitted to the coarsened data */
    void (*coarsen)(const double *ystar, cens_data *c);
} family;

static const family FAMILIES[] = {
    {"weibull", m_weibull, NULL, NULL},
    {"skew_normal", m_skew_normal, NULL, NULL},
    {"beta_binomial", m_beta_binomial, NULL, NULL},
    {"beta_proportion", m_beta_proportion, NULL, NULL},
    {"gamma", m_gamma, NULL, NULL},
    {"gamma_mean", m_gamma_mean, NULL, NULL},
    {"gamma_log_glm", m_gamma_log_glm, NULL, NULL},
    {"lognormal", m_lognormal, NULL, NULL},
    {"neg_binomial_2_log", m_nb2_log, NULL, NULL},
    {"neg_binomial_2_log_glm", m_nb2_log_glm, NULL, NULL},
    {"ordered_logistic", m_ordered_logistic, NULL, NULL},
    {"ordered_probit", m_ordered_probit, NULL, NULL},
    {"ordered_logistic_glm", m_ordered_logistic_glm, NULL, NULL},
    {"zero_inflated_poisson", m_zip, NULL, NULL},
    {"zero_inflated_negbinomial", m_zinb, NULL, NULL},
    {"hurdle_poisson", m_hurdle_poisson, NULL, NULL},
    {"hurdle_negbinomial", m_hurdle_nb, NULL, NULL},
    {"mixture", m_mixture, NULL, NULL},
    {"censored_normal", m_cens_normal_sim, m_cens_normal_fit, coarsen_normal},
    {"censored_weibull", m_cens_weibull_sim, m_cens_weibull_fit, coarsen_weibull},
    {"truncated", m_truncated, NULL, NULL},
    {"half_student_t", m_half_student_t, NULL, NULL},
};
enum { NFAM = sizeof FAMILIES / sizeof *FAMILIES };

static const double P_MIN = 0.001, COV_LO = 0.86, COV_HI = 0.94;

static void usage(void) {
    fprintf(stderr, "usage: sbc_families [--sbc R] [--family NAME] [--threads N] [--seed S] [--warmup N] "
                    "[--samples N] [--list]\n");
}

static int parse_size(const char *s, size_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || end == s || s[0] == '-') return -1;
    *out = (size_t)v;
    return 0;
}

/* Runs one family; prints its rows; returns 1 when it passes (or nothing is checked). */
static int run_family(const family *f, const em_sbc_config *base, int check, int *error) {
    em_sbc_config c = *base;
    cens_spec cs = {f->cens_fit, f->coarsen, &base->mcmc};
    if (f->cens_fit) {
        c.engine = EM_SBC_ENGINE_CUSTOM;
        c.custom = censored_engine;
        c.custom_ctx = &cs;
    }
    em_sbc_result *r = NULL;
    em_error err = {0};
    if (em_sbc_run(f->model, NULL, &c, &r, &err) != EM_OK) {
        fprintf(stderr, "%-26s ERROR %s\n", f->name, err.msg);
        *error = 1;
        return 0;
    }
    size_t P = em_sbc_num_params(r), failed = em_sbc_num_failed(r);
    double cov_sum = 0.0, min_p = 1.0;
    int p_ok = 1;
    for (size_t j = 0; j < P; j++) {
        em_sbc_param_stats st;
        em_sbc_param(r, j, &st, NULL);
        cov_sum += st.coverage[2];
        min_p = fmin(min_p, st.chi2_p);
        p_ok &= st.chi2_p > P_MIN;
        fprintf(stderr, "%-26s %-10s %5zu %9.4f %6s %7.3f %6.3f %s\n", j ? "" : f->name, st.name, st.n, st.chi2_p,
                st.ecdf_outside ? "out" : "in", st.coverage[2], st.coverage_se[2], st.chi2_p > P_MIN ? "" : "p <= 0.001");
    }
    double cov = cov_sum / (double)P;
    int ok = p_ok && failed == 0 && cov >= COV_LO && cov <= COV_HI;
    fprintf(stderr, "%-26s %-10s %5zu %9.4f %6s %7.3f %6s %s  (%zu failed, %zu divergent in %zu replications, %.1f s)\n",
            "", "(family)", em_sbc_num_used(r), min_p, "", cov, "", !check ? "-" : ok ? "PASS" : "FAIL", failed,
            em_sbc_num_divergent(r), em_sbc_num_divergent_replications(r), em_sbc_seconds(r));
    if (failed) fprintf(stderr, "%-26s first failure: %s\n", "", em_sbc_first_failure(r));
    printf("{\"bench\":\"sbc_families\",\"family\":\"%s\",\"R\":%zu,\"params\":%zu,\"min_chi2_p\":%.4g,"
           "\"cov90_mean\":%.4f,\"failed\":%zu,\"divergent\":%zu,\"seconds\":%.2f,\"pass\":%d}\n",
           f->name, c.num_replications, P, min_p, cov, failed, em_sbc_num_divergent(r), em_sbc_seconds(r), ok);
    fflush(stdout);
    em_sbc_free(r);
    return !check || ok;
}

int main(int argc, char **argv) {
    em_sbc_config c = em_sbc_config_default();
    c.num_replications = 20;
    c.seed = 16;
    c.skip_failed = 1; /* a failed replication is reported (and fails the family), not fatal */
    c.mcmc.num_warmup = 300;
    c.mcmc.num_samples = 300;
    const char *only = NULL;
    int check = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        size_t x = 0;
        int bad = 0;
        if (strcmp(a, "--list") == 0) {
            for (size_t k = 0; k < NFAM; k++) printf("%s\n", FAMILIES[k].name);
            return 0;
        }
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (strcmp(a, "--sbc") == 0) bad = parse_size(v, &c.num_replications) || ((check = 1), 0);
        else if (strcmp(a, "--family") == 0) only = v;
        else if (strcmp(a, "--threads") == 0) bad = parse_size(v, &x) || x > 64 || ((c.num_threads = (int)x), 0);
        else if (strcmp(a, "--seed") == 0) bad = parse_size(v, &x) || ((c.seed = x), 0);
        else if (strcmp(a, "--warmup") == 0) bad = parse_size(v, &x) || x > 100000 || ((c.mcmc.num_warmup = (int)x), 0);
        else if (strcmp(a, "--samples") == 0) bad = parse_size(v, &x) || x > 100000 || ((c.mcmc.num_samples = (int)x), 0);
        else bad = 1;
        if (bad) {
            fprintf(stderr, "sbc_families: bad option %s %s\n", a, v);
            usage();
            return 2;
        }
    }
    int found = 0;
    for (size_t k = 0; k < NFAM && only; k++) found |= strcmp(FAMILIES[k].name, only) == 0;
    if (only && !found) {
        fprintf(stderr, "sbc_families: no family '%s' (--list shows them)\n", only);
        return 2;
    }
    data_init();
    fprintf(stderr, "SBC of NUTS, R = %zu replications, L = %zu draws, %d warmup + %d samples, seed %llu\n",
            c.num_replications, c.num_draws, c.mcmc.num_warmup, c.mcmc.num_samples, (unsigned long long)c.seed);
    fprintf(stderr,
            "acceptance: chi-square p > %g for every parameter, family mean 90%% coverage in [%.2f, %.2f], "
            "no failed replication\n\n",
            P_MIN, COV_LO, COV_HI);
    fprintf(stderr, "%-26s %-10s %5s %9s %6s %7s %6s\n", "family", "param", "n", "chi2_p", "ECDF", "cov90", "se");
    double t0 = bench_now();
    size_t npass = 0, nrun = 0;
    int error = 0;
    for (size_t k = 0; k < NFAM; k++) {
        if (only && strcmp(FAMILIES[k].name, only) != 0) continue;
        nrun++;
        npass += (size_t)run_family(&FAMILIES[k], &c, check, &error);
    }
    fprintf(stderr, "\n%zu of %zu families %s in %.1f s\n", npass, nrun, check ? "pass" : "run (nothing checked)",
            bench_now() - t0);
    return error || npass != nrun ? 1 : 0;
}
