/* logdensity.c — the log density and gradient of whole models through the model language and
 * its handlers (em_logdensity_eval), against the same density written by hand in C, same run.
 *
 * Cases: the rugged model (170 rows, 5 parameters: per-site overhead shows) and a linear
 * regression with n = 100000, d = 20 written with the fused normal_id_glm likelihood (the
 * arithmetic dominates). Targets: ratio <= 2.5 and <= 1.2. One JSON object per case.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "bench.h"
#include "ember.h"
#include "rugged_model.h"

static volatile double sink;

typedef struct {
    em_logdensity *ld;
    const double *theta;
    double *grad;
} ld_job;

static void run_ld(void *ctx) {
    ld_job *j = ctx;
    double lp;
    em_error err = {0};
    if (em_logdensity_eval(j->ld, j->theta, &lp, j->grad, &err) != EM_OK) {
        fprintf(stderr, "logdensity bench: %s\n", err.msg);
        exit(1);
    }
    sink = lp;
}

static void check_agree(const char *name, double lp1, const double *g1, double lp2, const double *g2, size_t n) {
    double worst = fabs(lp1 - lp2) / fmax(1.0, fabs(lp1));
    for (size_t j = 0; j < n; j++) worst = fmax(worst, fabs(g1[j] - g2[j]) / fmax(1.0, fabs(g1[j])));
    if (!(worst < 1e-9)) {
        fprintf(stderr, "logdensity bench %s: model and hand-written density disagree (relative %g)\n", name, worst);
        exit(1);
    }
}

/* ---- rugged ------------------------------------------------------------------------------- */

typedef struct {
    const rugged_data *d;
    const double *theta;
    double *grad;
} rugged_job;

static void run_rugged_hand(void *ctx) {
    rugged_job *j = ctx;
    sink = rugged_logdensity_by_hand(j->d, j->theta, j->grad);
}

static void bench_rugged(const char *csv) {
    rugged_data d;
    em_error err = {0};
    if (rugged_data_load(csv, &d, &err) != EM_OK) {
        fprintf(stderr, "logdensity bench: %s\n", err.msg);
        exit(1);
    }
    em_logdensity *ld = em_logdensity_from_model(rugged_model, &d, NULL, &err);
    if (!ld) {
        fprintf(stderr, "logdensity bench: %s\n", err.msg);
        exit(1);
    }
    double theta[5] = {9.18, -1.84, -0.18, 0.35, -2.25}, g1[5], g2[5];
    ld_job je = {ld, theta, g1};
    rugged_job jb = {&d, theta, g2};
    run_ld(&je);
    run_rugged_hand(&jb);
    check_agree("rugged", rugged_logdensity_by_hand(&d, theta, g2), g2, (run_ld(&je), sink), g1, 5);
    double tb, te, ratio;
    bench_pair(run_rugged_hand, &jb, run_ld, &je, &tb, &te, &ratio);
    printf("{\"bench\":\"logdensity\",\"model\":\"rugged\",\"n\":%zu,\"ember_us\":%.3f,\"baseline_us\":%.3f,"
           "\"ratio\":%.3f}\n",
           d.n, te, tb, ratio);
    fflush(stdout);
    em_logdensity_destroy(ld);
    rugged_data_free(&d);
}

/* ---- large linear regression ------------------------------------------------------------- */

typedef struct {
    size_t n, d;
    double *X, *y, *resid;
} linreg_data;

/* alpha ~ N(0, 10), beta ~ N(0, 1), sigma ~ HalfNormal(1), y ~ Normal(alpha + X beta, sigma) */
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

typedef struct {
    const linreg_data *D;
    const double *theta;
    double *grad;
} linreg_job;

/* θ = (alpha, beta[d], log sigma): the same density by hand, with two dgemv calls. */
static void run_linreg_hand(void *ctx) {
    linreg_job *j = ctx;
    const linreg_data *D = j->D;
    size_t n = D->n, d = D->d;
    const double *th = j->theta;
    double *g = j->grad;
    const double l2pi = 0.91893853320467274178;
    double alpha = th[0], ls = th[d + 1], sigma = exp(ls), inv_s2 = 1.0 / (sigma * sigma);
    double *r = D->resid;
    for (size_t i = 0; i < n; i++) r[i] = D->y[i] - alpha;
    cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)d, -1.0, D->X, (int)d, th + 1, 1, 1.0, r, 1);
    double ss = 0.0, sr = 0.0;
    for (size_t i = 0; i < n; i++) {
        ss += r[i] * r[i];
        sr += r[i];
    }
    cblas_dgemv(CblasRowMajor, CblasTrans, (int)n, (int)d, inv_s2, D->X, (int)d, r, 1, 0.0, g + 1, 1);
    double lp = -0.5 * (alpha / 10.0) * (alpha / 10.0) - log(10.0) - l2pi;
    double bb = 0.0;
    for (size_t k = 0; k < d; k++) {
        bb += th[1 + k] * th[1 + k];
        g[1 + k] -= th[1 + k];
    }
    lp += -0.5 * bb - (double)d * l2pi;
    lp += log(2.0) - 0.5 * sigma * sigma - l2pi + ls; /* half-normal(1) and the Jacobian of exp */
    lp += -0.5 * ss * inv_s2 - (double)n * ls - (double)n * l2pi;
    g[0] = sr * inv_s2 - alpha / 100.0;
    g[d + 1] = ss * inv_s2 - (double)n - sigma * sigma + 1.0;
    sink = lp;
}

static void bench_linreg(size_t n, size_t d) {
    linreg_data D = {n, d, malloc(n * d * sizeof(double)), malloc(n * sizeof(double)), malloc(n * sizeof(double))};
    double *theta = malloc((d + 2) * sizeof(double)), *g1 = malloc((d + 2) * sizeof(double)),
           *g2 = malloc((d + 2) * sizeof(double));
    if (!D.X || !D.y || !D.resid || !theta || !g1 || !g2) exit(1);
    em_rng *rng = em_rng_create(3, 0);
    for (size_t k = 0; k < d + 2; k++) theta[k] = 0.5 * em_rng_normal(rng);
    for (size_t i = 0; i < n; i++) {
        double mu = theta[0];
        for (size_t k = 0; k < d; k++) {
            D.X[i * d + k] = em_rng_normal(rng);
            mu += D.X[i * d + k] * theta[1 + k];
        }
        D.y[i] = mu + exp(theta[d + 1]) * em_rng_normal(rng);
    }
    em_rng_destroy(rng);
    em_error err = {0};
    em_logdensity *ld = em_logdensity_from_model(linreg_model, &D, NULL, &err);
    if (!ld) {
        fprintf(stderr, "logdensity bench: %s\n", err.msg);
        exit(1);
    }
    ld_job je = {ld, theta, g1};
    linreg_job jb = {&D, theta, g2};
    run_ld(&je);
    double lp_model = sink;
    run_linreg_hand(&jb);
    check_agree("linreg", sink, g2, lp_model, g1, d + 2);
    double tb, te, ratio;
    bench_pair(run_linreg_hand, &jb, run_ld, &je, &tb, &te, &ratio);
    printf("{\"bench\":\"logdensity\",\"model\":\"linreg_glm\",\"n\":%zu,\"d\":%zu,\"ember_us\":%.3f,"
           "\"baseline_us\":%.3f,\"ratio\":%.3f}\n",
           n, d, te, tb, ratio);
    fflush(stdout);
    em_logdensity_destroy(ld);
    free(D.X);
    free(D.y);
    free(D.resid);
    free(theta);
    free(g1);
    free(g2);
}

int main(void) {
    if (!getenv("OPENBLAS_NUM_THREADS")) openblas_set_num_threads(1);
    bench_rugged("examples/bayesian_regression/data/rugged_data.csv");
    bench_linreg(100000, 20);
    return 0;
}
