/* svi.c — the cost of an SVI step.
 *
 * 1. The rugged regression (170 rows, 5 latents) with AutoDiagonalNormal and Adam: steps per
 *    second over a 5000-step fit, and the time of one SVI step against one log-density gradient
 *    (em_logdensity_eval) of the same model in the same run. A step runs the guide and the model
 *    under handlers, so it costs a small multiple of a gradient; the target is ≤ 3.
 * 2. A linear regression with n = 100000 rows and d = 20 predictors, the likelihood inside a
 *    plate subsampled to 1000 rows per step (scaled by n/1000): steps per second, and the ratio
 *    against one log-density gradient of the same model on a 1000-row data set.
 *
 * One JSON object per case on stdout; nothing asserts a time.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "ember.h"
#include "rugged_model.h"

#define RUGGED_CSV "examples/bayesian_regression/data/rugged_data.csv"

/* CPU time of the process, reported beside wall-clock rates: on a loaded machine the wall
 * clock also counts the time the process waits for a core. */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct ld_ctx {
    em_logdensity *ld;
    double theta[64], grad[64];
} ld_ctx;

static void run_grad(void *p) {
    ld_ctx *c = p;
    double lp;
    em_logdensity_eval(c->ld, c->theta, &lp, c->grad, NULL);
}

static void run_step(void *p) {
    double loss;
    em_svi_step((em_svi *)p, &loss, NULL);
}

static int rugged_case(void) {
    rugged_data d;
    em_error e = {0};
    if (rugged_data_load(RUGGED_CSV, &d, &e) != EM_OK) {
        fprintf(stderr, "bench svi: %s (run from the repository root)\n", e.msg);
        return 1;
    }
    em_autoguide *g = em_autoguide_create(EM_AUTO_DIAGONAL_NORMAL, rugged_model, &d, &(em_autoguide_options){.seed = 1}, &e);
    em_optim_config oc = em_optim_defaults(EM_OPTIM_ADAM, 0.03);
    em_svi *s = g ? em_svi_create(rugged_model, &d, em_autoguide_fn, g, &oc, &(em_svi_options){.seed = 1}, &e) : NULL;
    if (!s) {
        fprintf(stderr, "bench svi: %s\n", e.msg);
        return 1;
    }
    double t0 = bench_now(), c0 = cpu_now();
    if (em_svi_run(s, 5000, NULL, &e) != EM_OK) {
        fprintf(stderr, "bench svi: %s\n", e.msg);
        return 1;
    }
    double fit_s = bench_now() - t0, fit_cpu = cpu_now() - c0;
    size_t n;
    const double *h = em_svi_loss_history(s, &n);
    double tail = 0.0;
    for (size_t i = n - 100; i < n; i++) tail += h[i];
    tail /= 100.0;

    ld_ctx c;
    memset(&c, 0, sizeof c);
    c.ld = em_logdensity_from_model(rugged_model, &d, NULL, &e);
    if (!c.ld) {
        fprintf(stderr, "bench svi: %s\n", e.msg);
        return 1;
    }
    double med[5];
    em_autoguide_median(g, em_svi_params(s), med, &e);
    const double u0[5] = {med[0], med[1], med[2], med[3], log(med[4] / (10.0 - med[4]))};
    memcpy(c.theta, u0, sizeof u0);
    double grad_us, step_us, ratio;
    bench_pair(run_grad, &c, run_step, s, &grad_us, &step_us, &ratio);
    printf("{\"bench\":\"svi_rugged\",\"guide\":\"AutoDiagonalNormal\",\"n\":%zu,\"steps\":5000,"
           "\"steps_per_s\":%.0f,\"steps_per_cpu_s\":%.0f,\"step_us\":%.3f,\"grad_us\":%.3f,"
           "\"ratio_step_over_grad\":%.3f,\"final_loss_avg100\":%.3f}\n",
           d.n, 5000.0 / fit_s, 5000.0 / fit_cpu, step_us, grad_us, ratio, tail);
    em_logdensity_destroy(c.ld);
    em_svi_destroy(s);
    em_autoguide_destroy(g);
    rugged_data_free(&d);
    return 0;
}

typedef struct lin_data {
    size_t n, d, subsample;
    const double *X, *y;
} lin_data;

static void lin_model(em_model *m, const void *arg) {
    const lin_data *D = arg;
    em_tape *t = em_model_tape(m);
    em_var alpha = em_sample(m, "alpha", em_normal(m, 0.0, 10.0));
    em_var beta = em_sample(m, "beta", em_expand(em_normal(m, 0.0, 1.0), D->d));
    em_var sigma = em_sample(m, "sigma", em_half_normal(m, 1.0));
    EM_PLATE(m, p, "data", D->n, D->subsample) {
        size_t k = em_plate_size(p);
        const double *Xs = em_plate_select_rows(m, p, D->X, D->d);
        const double *ys = em_plate_select(m, p, D->y);
        em_observe(m, "y", em_dist_normal_id_glm(t, em_const_matrix(t, Xs, k, D->d), alpha, beta, sigma), ys, k);
    }
}

static int linreg_case(void) {
    const size_t n = 100000, d = 20, sub = 1000;
    double *X = malloc(n * d * sizeof *X), *y = malloc(n * sizeof *y), beta[20];
    if (!X || !y) return 1;
    em_rng *r = em_rng_create(42, 0);
    for (size_t j = 0; j < d; j++) beta[j] = em_rng_normal(r) * 0.5;
    for (size_t i = 0; i < n; i++) {
        double mu = 1.0;
        for (size_t j = 0; j < d; j++) {
            X[i * d + j] = em_rng_normal(r);
            mu += X[i * d + j] * beta[j];
        }
        y[i] = mu + 0.7 * em_rng_normal(r);
    }
    em_rng_destroy(r);
    lin_data D = {n, d, sub, X, y};
    em_error e = {0};
    em_autoguide *g = em_autoguide_create(EM_AUTO_DIAGONAL_NORMAL, lin_model, &D, &(em_autoguide_options){.seed = 1}, &e);
    em_optim_config oc = em_optim_defaults(EM_OPTIM_ADAM, 0.01);
    em_svi *s = g ? em_svi_create(lin_model, &D, em_autoguide_fn, g, &oc, &(em_svi_options){.seed = 1}, &e) : NULL;
    if (!s) {
        fprintf(stderr, "bench svi linreg: %s\n", e.msg);
        return 1;
    }
    const size_t steps = 3000;
    double t0 = bench_now(), c0 = cpu_now();
    if (em_svi_run(s, steps, NULL, &e) != EM_OK) {
        fprintf(stderr, "bench svi linreg: %s\n", e.msg);
        return 1;
    }
    double fit_s = bench_now() - t0, fit_cpu = cpu_now() - c0;
    double med[22];
    em_autoguide_median(g, em_svi_params(s), med, &e);
    double err_beta = 0.0;
    for (size_t j = 0; j < d; j++) err_beta = fmax(err_beta, fabs(med[1 + j] - beta[j]));

    /* baseline: the gradient of the same model on a data set of the subsample's size */
    lin_data small = {sub, d, 0, X, y};
    ld_ctx c;
    memset(&c, 0, sizeof c);
    c.ld = em_logdensity_from_model(lin_model, &small, NULL, &e);
    if (!c.ld) {
        fprintf(stderr, "bench svi linreg: %s\n", e.msg);
        return 1;
    }
    for (size_t j = 0; j < d + 2; j++) c.theta[j] = 0.1;
    double grad_us, step_us, ratio;
    bench_pair(run_grad, &c, run_step, s, &grad_us, &step_us, &ratio);
    printf("{\"bench\":\"svi_linreg_subsample\",\"guide\":\"AutoDiagonalNormal\",\"n\":%zu,\"d\":%zu,"
           "\"subsample\":%zu,\"steps\":%zu,\"steps_per_s\":%.0f,\"steps_per_cpu_s\":%.0f,\"step_us\":%.3f,"
           "\"grad_%zu_rows_us\":%.3f,\"ratio_step_over_grad\":%.3f,\"max_abs_beta_error\":%.4f}\n",
           n, d, sub, steps, (double)steps / fit_s, (double)steps / fit_cpu, step_us, sub, grad_us, ratio, err_beta);
    em_logdensity_destroy(c.ld);
    em_svi_destroy(s);
    em_autoguide_destroy(g);
    free(X);
    free(y);
    return 0;
}

int main(void) {
    int rc = rugged_case();
    if (rc == 0) rc = linreg_case();
    return rc;
}
