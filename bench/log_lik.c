/* log_lik.c — the cost of the pointwise log-likelihood per draw (em_predictive_log_lik, what
 * em_posterior_log_lik runs), against the plain log density and gradient at the same draw
 * (em_logdensity_eval, what one NUTS leapfrog step costs), measured in the same run.
 *
 * Cases: the rugged model (170 rows: the per-draw overhead of running the model under its
 * handlers shows) and the linear regression of linreg_model.h with the fused normal_id_glm at
 * n = 10^4 and 10^5 (d = 20; the passes over X dominate). Target: ratio <= 1.5 where the data
 * dominate. One JSON object per case; nothing asserts a time.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "ember.h"
#include "linreg_model.h"
#include "rugged_model.h"

static volatile double sink;

typedef struct {
    em_model_fn model;
    const void *data;
    const char *const *names;
    const size_t *lens;
    size_t nsites;
    const double *draws; /* ndraws rows of constrained latent values */
    size_t ndraws;
} ll_job;

static void run_log_lik(void *ctx) {
    ll_job *j = ctx;
    em_predictive *p = NULL;
    em_error err = {0};
    if (em_predictive_log_lik(j->model, j->data, j->names, j->lens, j->nsites, j->draws, j->ndraws, NULL, &p, &err) !=
        EM_OK) {
        fprintf(stderr, "log_lik bench: %s\n", err.msg);
        exit(1);
    }
    sink = p->sites[0].draws[0];
    em_predictive_free(p);
}

typedef struct {
    em_logdensity *ld;
    const double *theta; /* ndraws rows of unconstrained values */
    size_t dim, ndraws;
    double *grad;
} ld_job;

static void run_ld(void *ctx) {
    ld_job *j = ctx;
    double lp = 0.0;
    em_error err = {0};
    for (size_t d = 0; d < j->ndraws; d++)
        if (em_logdensity_eval(j->ld, j->theta + d * j->dim, &lp, j->grad, &err) != EM_OK) {
            fprintf(stderr, "log_lik bench: %s\n", err.msg);
            exit(1);
        }
    sink = lp;
}

/* ndraws draws near theta0 (unconstrained), and their constrained values through the model's
 * layout, site by site. */
static void make_draws(em_logdensity *ld, const double *theta0, size_t ndraws, double **theta, double **cons) {
    size_t dim = em_logdensity_dim(ld), nout = em_logdensity_num_outputs(ld);
    *theta = malloc(ndraws * dim * sizeof(double));
    *cons = malloc(ndraws * nout * sizeof(double));
    em_rng *rng = em_rng_create(5, 0);
    em_error err = {0};
    for (size_t d = 0; d < ndraws; d++) {
        for (size_t k = 0; k < dim; k++) (*theta)[d * dim + k] = theta0[k] + 0.01 * em_rng_normal(rng);
        if (em_logdensity_constrain(ld, *theta + d * dim, *cons + d * nout, &err) != EM_OK) exit(1);
    }
    em_rng_destroy(rng);
}

static void report(const char *model, size_t n, size_t ndraws, double ld_us, double ll_us, double ratio) {
    printf("{\"bench\":\"log_lik\",\"model\":\"%s\",\"n\":%zu,\"log_lik_us_per_draw\":%.3f,"
           "\"logdensity_grad_us_per_draw\":%.3f,\"ratio\":%.3f}\n",
           model, n, ll_us / (double)ndraws, ld_us / (double)ndraws, ratio);
    fflush(stdout);
}

static void bench_case(const char *name, em_model_fn model, const void *data, size_t n, const double *theta0,
                       size_t ndraws) {
    em_error err = {0};
    em_logdensity *ld = em_logdensity_from_model(model, data, NULL, &err);
    if (!ld) {
        fprintf(stderr, "log_lik bench: %s\n", err.msg);
        exit(1);
    }
    size_t nl = em_logdensity_num_latents(ld), dim = em_logdensity_dim(ld);
    const char *names[8];
    size_t lens[8];
    for (size_t k = 0; k < nl && k < 8; k++) {
        names[k] = em_logdensity_latent(ld, k)->name;
        lens[k] = em_logdensity_latent(ld, k)->len;
    }
    double *theta, *cons, *grad = malloc(dim * sizeof(double));
    make_draws(ld, theta0, ndraws, &theta, &cons);
    ll_job lj = {model, data, names, lens, nl, cons, ndraws};
    ld_job dj = {ld, theta, dim, ndraws, grad};
    double tb, ts, ratio;
    bench_pair(run_ld, &dj, run_log_lik, &lj, &tb, &ts, &ratio);
    report(name, n, ndraws, tb, ts, ratio);
    free(theta);
    free(cons);
    free(grad);
    em_logdensity_destroy(ld);
}

int main(int argc, char **argv) {
    const char *csv = argc > 1 ? argv[1] : "examples/bayesian_regression/data/rugged_data.csv";
    rugged_data rd;
    em_error err = {0};
    if (rugged_data_load(csv, &rd, &err) != EM_OK) {
        fprintf(stderr, "log_lik bench: %s\n", err.msg);
        return 1;
    }
    const double rt[5] = {9.18, -1.84, -0.18, 0.35, -2.25};
    bench_case("rugged", rugged_model, &rd, rd.n, rt, 200);
    rugged_data_free(&rd);
    const size_t ns[2] = {10000, 100000};
    for (int c = 0; c < 2; c++) {
        linreg_data D;
        size_t d = 20;
        if (linreg_data_make(&D, ns[c], d, 3) != 0) return 1;
        double th[22];
        for (size_t k = 0; k < d + 2; k++) th[k] = 0.1 * (double)k - 0.5;
        bench_case("linreg_glm", linreg_model, &D, ns[c], th, ns[c] >= 100000 ? 10 : 50);
        linreg_data_free(&D);
    }
    return 0;
}
