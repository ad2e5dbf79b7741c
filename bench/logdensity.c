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
#include "linreg_model.h"
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

/* ---- large linear regression (model and data: linreg_model.h) ------------------------------ */

typedef struct {
    const linreg_data *D;
    const double *theta;
    double *grad;
    double *resid; /* scratch for the baseline, allocated once like a user would */
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
    double *r = j->resid;
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
    linreg_data D;
    double *theta = malloc((d + 2) * sizeof(double)), *g1 = malloc((d + 2) * sizeof(double)),
           *g2 = malloc((d + 2) * sizeof(double)), *resid = malloc(n * sizeof(double));
    if (linreg_data_make(&D, n, d, 3) != 0 || !theta || !g1 || !g2 || !resid) exit(1);
    for (size_t k = 0; k < d + 2; k++) theta[k] = 0.1 * (double)k - 0.5; /* away from the truth */
    em_error err = {0};
    em_logdensity *ld = em_logdensity_from_model(linreg_model, &D, NULL, &err);
    if (!ld) {
        fprintf(stderr, "logdensity bench: %s\n", err.msg);
        exit(1);
    }
    ld_job je = {ld, theta, g1};
    linreg_job jb = {&D, theta, g2, resid};
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
    linreg_data_free(&D);
    free(resid);
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
